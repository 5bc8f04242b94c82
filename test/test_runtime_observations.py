"""Camera images → policy RGB and joint states by name (unit conversion: test_joint_units.py)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from act_policy.core.errors import ObservationError
from act_policy.runtime.observations import (
    ObservationCache,
    RawImage,
    decode_image,
    resize_bilinear,
    to_policy_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)


def raw(encoding: str, pixels: np.ndarray, pad: int = 0) -> RawImage:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return RawImage(encoding, bytearray(rows.tobytes()), h, w, rows.shape[1])


def test_rgb8_and_bgr8_with_unpadded_rows_are_zero_copy_views():
    msg = raw("rgb8", RGB)
    out = decode_image(msg, "/cam")
    assert np.array_equal(out, RGB) and np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    msg = raw("bgr8", RGB[..., ::-1])
    out = decode_image(msg, "/cam")
    assert np.array_equal(out, RGB) and np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


def test_mono8_rgba8_bgra8_and_padded_rows():
    gray = RGB[..., 0]
    assert np.array_equal(decode_image(raw("mono8", gray[..., None]), "/c"), np.repeat(gray[..., None], 3, axis=2))
    rgba = np.concatenate([RGB, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(decode_image(raw("rgba8", rgba), "/c"), RGB)
    assert np.array_equal(decode_image(raw("bgra8", rgba[..., [2, 1, 0, 3]]), "/c"), RGB)
    padded = raw("rgb8", RGB, pad=3)
    assert padded.step == 5 * 3 + 3
    assert np.array_equal(decode_image(padded, "/c"), RGB)


def test_inconsistent_or_unsupported_images_name_the_topic():
    msg = raw("rgb8", RGB)
    short = RawImage("rgb8", msg.data[:-1], 4, 5, 15)
    with pytest.raises(ObservationError, match="/front/image_raw: inconsistent image: 5x4 rgb8"):
        decode_image(short, "/front/image_raw")
    with pytest.raises(ObservationError, match="/front: unsupported image encoding '16UC1'"):
        decode_image(RawImage("16UC1", b"\0" * 40, 4, 5, 10), "/front")


def test_8uc1_is_read_as_mono():
    gray = RGB[..., 1]
    assert np.array_equal(decode_image(raw("8UC1", gray[..., None]), "/c"), np.repeat(gray[..., None], 3, axis=2))


def test_encodings_needing_a_codec_fail_clearly_without_one(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(ObservationError, match="/cam: encoding 'yuv422_yuy2' needs OpenCV"):
        decode_image(RawImage("yuv422_yuy2", b"\0" * 40, 4, 5, 10), "/cam")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ObservationError, match=r"/cam/compressed: compressed image format 'jpeg' needs OpenCV .* or "
                                               r"PyAV"):
        decode_image(RawImage("jpeg", b"\xff\xd8", compressed=True), "/cam/compressed")


def test_compressed_images_decode_with_pyav_when_opencv_is_missing(monkeypatch):
    pytest.importorskip("av")
    from dataset_layout import encode_png

    monkeypatch.setitem(sys.modules, "cv2", None)
    assert np.array_equal(decode_image(RawImage("png", encode_png(RGB), compressed=True), "/cam/compressed"), RGB)
    with pytest.raises(ObservationError, match=r"/cam/compressed: compressed image \(format 'tiff'\) is neither "
                                               r"PNG nor JPEG"):
        decode_image(RawImage("tiff", b"II*\0" + bytes(20), compressed=True), "/cam/compressed")
    with pytest.raises(ObservationError, match="/cam/compressed: could not decode compressed image"):
        decode_image(RawImage("jpeg", b"\xff\xd8" + bytes(20), compressed=True), "/cam/compressed")


def test_wrong_resolution_is_refused_unless_resizing_is_allowed():
    msg = raw("rgb8", RGB)
    with pytest.raises(ObservationError, match=r"/cam: image is 5x4 but the policy was trained on 10x8"):
        to_policy_image(msg, (8, 10), allow_resize=False, source="/cam")
    out = to_policy_image(msg, (8, 10), allow_resize=True, source="/cam")
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8


def test_bilinear_resize_uses_half_pixel_centres():
    ramp = np.repeat((np.arange(8, dtype=np.uint8) * 10)[None, :, None], 3, axis=2).repeat(2, axis=0)
    half = resize_bilinear(ramp, 2, 4)
    assert half[0, :, 0].tolist() == [5, 25, 45, 65]  # source positions 0.5, 2.5, 4.5, 6.5
    flat = np.full((6, 6, 3), 77, np.uint8)
    assert np.all(resize_bilinear(flat, 11, 3) == 77)
    assert resize_bilinear(ramp, 2, 8) is ramp


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def cache(clock: Clock) -> ObservationCache:
    return ObservationCache({"observation.images.front": "/cam"}, {"observation.images.front": (4, 5)},
                            ["a", "b", "gripper"], "/joint_states", clock=clock)


def test_joint_states_are_matched_by_name_and_may_come_in_parts():
    c = cache(Clock())
    c.update_joints(["gripper", "extra", "b"], [3.0, 9.0, 2.0])
    assert c.missing_joints() == ["a"]
    assert c.joint_positions() is None
    with pytest.raises(ObservationError, match="/joint_states: no position received yet for joint\\(s\\) a"):
        c.capture()
    c.update_joints(["a"], [1.0])
    assert c.joint_positions().tolist() == [1.0, 2.0, 3.0]


def test_bad_joint_messages_are_rejected_whole_and_reported():
    c = cache(Clock())
    c.update_joints(["a", "b", "gripper"], [1.0, 2.0, 3.0])
    with pytest.raises(ObservationError, match="non-finite position for joint\\(s\\) b"):
        c.update_joints(["a", "b"], [5.0, float("nan")])
    with pytest.raises(ObservationError, match="3 names but 2 positions"):
        c.update_joints(["a", "b", "gripper"], [5.0, 6.0])
    assert c.joint_positions().tolist() == [1.0, 2.0, 3.0]
    assert "/joint_states" in c.errors
    c.update_joints(["a"], [4.0])
    assert "/joint_states" not in c.errors


def test_ages_use_the_injected_steady_clock_and_the_oldest_joint():
    clock = Clock()
    c = cache(clock)
    assert c.ages_ms() == {"observation.images.front": math.inf, "joint_states": math.inf}
    c.update_joints(["a", "b", "gripper"], [0.0, 0.0, 0.0])
    clock.t += 0.2
    c.update_joints(["a"], [0.0])
    c.update_image("observation.images.front", raw("rgb8", RGB))
    clock.t += 0.05
    ages = c.ages_ms()
    assert ages["observation.images.front"] == pytest.approx(50.0)
    assert ages["joint_states"] == pytest.approx(250.0)


def test_capture_is_cheap_and_convert_names_the_topic_of_a_bad_image():
    c = cache(Clock())
    c.update_joints(["a", "b", "gripper"], [0.0, 0.0, 0.0])
    with pytest.raises(ObservationError, match="/cam: no image received yet"):
        c.capture()
    c.update_image("observation.images.front", raw("rgb8", np.zeros((3, 5, 3), np.uint8)))
    capture = c.capture()
    assert capture.images["observation.images.front"].height == 3  # not converted yet
    with pytest.raises(ObservationError, match="/cam: image is 5x3"):
        c.convert(capture)
    assert "/cam" in c.errors
    c.update_image("observation.images.front", raw("rgb8", RGB))
    assert np.array_equal(c.convert(c.capture())["observation.images.front"], RGB)
    assert "/cam" not in c.errors

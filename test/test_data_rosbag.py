"""rosbag2 reader: latest-before alignment at a fixed rate, joints by name and in policy units, images, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("av")

from conftest import tiny_spec
from dataset_layout import BagMessage, JazzyMessages, flat_color_frames, frame_index_of, write_bag

from act_policy.data import BagOptions, DatasetError, read_episode

FRONT = "observation.images.front"
JOINTS = [f"j{i}" for i in range(6)]
BASE_NS = 1_700_000_000 * 10**9
CAMERA_FRAMES = 20


def ns(seconds: float) -> int:
    return BASE_NS + round(seconds * 1e9)


def state_stamps() -> np.ndarray:
    """~100 Hz with jitter, as a real driver publishes."""
    rng = np.random.default_rng(5)
    return np.round(np.arange(0.0, 1.0, 0.01) + rng.uniform(0, 0.004, 100), 4)


CAMERA_STAMPS = 0.02 + 0.05 * np.arange(CAMERA_FRAMES)  # 20 Hz, last at 0.97 s
ACTION_STAMPS = 0.005 + 0.02 * np.arange(50)  # 50 Hz, last at 0.985 s


def joint_values(t: float) -> np.ndarray:
    """Joint i holds 100·i + t: the value says both which joint and which message it came from."""
    return 100.0 * np.arange(6) + t


def build_bag(tmp_path: Path, storage: str = "sqlite3", camera_delay: float = 0.0, action_type: str = "array",
              image_kind: str = "rgb8", size: tuple[int, int] = (64, 80), state_stamps_s=None) -> Path:
    m = JazzyMessages()
    frames = flat_color_frames(CAMERA_FRAMES, *size)
    shuffled = ["j3", "j0", "j5", "j1", "j4", "j2", "gripper_aux"]  # message order is not the policy's order
    messages = []
    for t in state_stamps() if state_stamps_s is None else state_stamps_s:
        values = {n: v for n, v in zip(JOINTS, joint_values(t), strict=True)} | {"gripper_aux": -1.0}
        messages.append(BagMessage("/joint_states", ns(t), m.joint_state(ns(t), shuffled,
                                                                          [values[n] for n in shuffled])))
    for k, t in enumerate(CAMERA_STAMPS):  # header = capture time, received camera_delay later
        if image_kind == "png":
            msg = m.compressed_png(ns(t), frames[k])
        else:
            msg = m.image(ns(t), frames[k], encoding=image_kind, pad=4)
        messages.append(BagMessage("/cam/image_raw", ns(t + camera_delay), msg))
    for t in ACTION_STAMPS:
        msg = m.float64_array(joint_values(t) + 0.5) if action_type == "array" else \
            m.joint_state(ns(t), JOINTS, joint_values(t) + 0.5)
        messages.append(BagMessage("/leader/commands", ns(t), msg))
    return write_bag(tmp_path / f"bag_{storage}", storage, messages)


def options(**overrides) -> BagOptions:
    base = dict(state_topic="/joint_states", camera_topics={FRONT: "/cam/image_raw"},
                action_topic="/leader/commands", joint_names=JOINTS, rate_hz=10.0)
    return BagOptions(**(base | overrides))


def latest_before(stamps: np.ndarray, t: float) -> float:
    return max(s for s in stamps if s <= t + 1e-9)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_each_step_gets_the_latest_message_of_every_topic_at_or_before_it(tmp_path: Path, storage: str) -> None:
    ep = read_episode(build_bag(tmp_path, storage), 0, tiny_spec(), options())
    # starts when the last topic (camera, 0.02 s) has spoken; ends at the first topic end (camera, 0.97 s)
    steps = np.round(0.02 + np.arange(10) / 10, 6)
    assert len(ep) == 10 and ep.fps == 10.0
    np.testing.assert_allclose(ep.timestamps, np.arange(10) / 10, atol=1e-9)
    expected_state = np.stack([joint_values(latest_before(state_stamps(), t)) for t in steps])
    np.testing.assert_allclose(ep.vectors["observation.state"], expected_state, atol=1e-4)
    expected_action = np.stack([joint_values(latest_before(ACTION_STAMPS, t)) + 0.5 for t in steps])
    np.testing.assert_allclose(ep.actions, expected_action, atol=1e-4)
    frames = [obs[FRONT] for obs in ep.observations()]
    expected_frames = [int(np.flatnonzero(np.isclose(CAMERA_STAMPS, latest_before(CAMERA_STAMPS, t)))[0])
                       for t in steps]
    assert [frame_index_of(f, CAMERA_FRAMES) for f in frames] == expected_frames
    np.testing.assert_array_equal(frames[3], flat_color_frames(CAMERA_FRAMES, 64, 80)[expected_frames[3]])
    assert ep.joint_names == tuple(JOINTS)


def test_header_stamps_align_on_capture_time_instead_of_arrival(tmp_path: Path) -> None:
    bag = build_bag(tmp_path, camera_delay=0.03)  # frames arrive 30 ms after capture
    by_arrival = read_episode(bag, 0, tiny_spec(), options())
    by_capture = read_episode(bag, 0, tiny_spec(), options(use_header_stamps=True))
    steps_arrival = 0.05 + np.arange(len(by_arrival)) / 10  # first frame arrives at 0.05 s
    steps_capture = 0.02 + np.arange(len(by_capture)) / 10
    arrival_frames = [frame_index_of(o[FRONT], CAMERA_FRAMES) for o in by_arrival.observations()]
    capture_frames = [frame_index_of(o[FRONT], CAMERA_FRAMES) for o in by_capture.observations()]
    assert arrival_frames == [round((latest_before(CAMERA_STAMPS + 0.03, t) - 0.05) / 0.05)
                              for t in steps_arrival]
    assert capture_frames == [round((latest_before(CAMERA_STAMPS, t) - 0.02) / 0.05) for t in steps_capture]


@pytest.mark.parametrize("image_kind", ["bgr8", "png"])
def test_bgr_with_row_padding_and_compressed_png_decode_to_the_same_rgb(tmp_path: Path, image_kind: str) -> None:
    ep = read_episode(build_bag(tmp_path, image_kind=image_kind, action_type="joint_state"), 0, tiny_spec(),
                      options())
    first = next(ep.observations())[FRONT]
    np.testing.assert_array_equal(first, flat_color_frames(CAMERA_FRAMES, 64, 80)[0])
    assert ep.actions.shape == (len(ep), 6)


def test_without_a_policy_or_action_topic_everything_mapped_is_read(tmp_path: Path) -> None:
    ep = read_episode(build_bag(tmp_path), 0, None, options(action_topic=None, joint_names=None))
    assert ep.actions is None
    assert ep.joint_names == ("j3", "j0", "j5", "j1", "j4", "j2", "gripper_aux")  # first message's order
    assert ep.vectors["observation.state"].shape == (len(ep), 7)


def test_missing_topic_lists_the_topics_in_the_bag(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"camera 'observation\.images\.front' topic '/camera' is not in the bag; "
                                           r"topics: /cam/image_raw \(sensor_msgs/msg/Image\)"):
        read_episode(build_bag(tmp_path), 0, tiny_spec(), options(camera_topics={FRONT: "/camera"}))


def test_policy_camera_without_a_topic_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no camera topic given for \['observation\.images\.front'\]"):
        read_episode(build_bag(tmp_path), 0, tiny_spec(), options(camera_topics={}))


def test_missing_joint_is_named_with_the_joints_the_message_has(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"/joint_states message 0 lacks position\(s\) for \['elbow'\]"
                                           r".*'gripper_aux'"):
        read_episode(build_bag(tmp_path), 0, None, options(joint_names=[*JOINTS[:5], "elbow"]))


def test_camera_resolution_mismatch_says_expected_and_recorded(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"resolution mismatch .*expects 64x80.*\(48, 64, 3\)"):
        read_episode(build_bag(tmp_path, size=(48, 64)), 0, tiny_spec(), options())


def test_a_recording_gap_longer_than_max_age_is_an_error(tmp_path: Path) -> None:
    stamps = np.concatenate([np.arange(0.0, 0.4, 0.01), np.arange(0.8, 1.0, 0.01)])  # joint states stop for 0.4 s
    bag = build_bag(tmp_path, state_stamps_s=stamps)
    with pytest.raises(DatasetError, match=r"/joint_states has no message in the 0\.2 s before t=0\.600 s \(step 6"):
        read_episode(bag, 0, tiny_spec(), options(max_age_s=0.2))
    assert len(read_episode(bag, 0, tiny_spec(), options(max_age_s=0.5))) == 10


def test_unsupported_image_encoding_names_topic_and_encoding(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"/cam/image_raw message 0: unsupported image encoding '16UC1'"):
        read_episode(build_bag(tmp_path, image_kind="16UC1"), 0, tiny_spec(), options())


RAD_TO_DEG = 57.29578


@pytest.mark.parametrize("action_type", ["array", "joint_state"])
def test_joint_scale_turns_the_recorded_radians_of_state_and_actions_into_policy_degrees(
        tmp_path: Path, action_type: str) -> None:
    bag = build_bag(tmp_path, action_type=action_type)
    radians = read_episode(bag, 0, tiny_spec(), options())
    degrees = read_episode(bag, 0, tiny_spec(), options(joint_scale=[RAD_TO_DEG]))
    np.testing.assert_allclose(degrees.vectors["observation.state"], radians.vectors["observation.state"] * RAD_TO_DEG,
                               rtol=1e-6)
    np.testing.assert_allclose(degrees.actions, radians.actions * RAD_TO_DEG, rtol=1e-6)
    assert degrees.vectors["observation.state"].dtype == degrees.actions.dtype == np.float32
    assert f"joint units: policy = ros * {[RAD_TO_DEG] * 6}" in " ".join(degrees.notes)


def test_joint_offsets_are_added_per_joint_in_policy_units_after_scaling(tmp_path: Path) -> None:
    bag = build_bag(tmp_path)
    scale, offset = np.array([1, 2, 1, 1, 1, 100 / 1.75]), np.array([0, 0, 0, 0, 90, -5])
    raw = read_episode(bag, 0, tiny_spec(), options())
    ep = read_episode(bag, 0, tiny_spec(), options(joint_scale=scale.tolist(), joint_offset=offset.tolist()))
    np.testing.assert_allclose(ep.vectors["observation.state"], raw.vectors["observation.state"] * scale + offset,
                               rtol=1e-6)
    np.testing.assert_allclose(ep.actions, raw.actions * scale + offset, rtol=1e-6)


def test_one_scale_value_applies_to_every_joint_of_the_first_state_message(tmp_path: Path) -> None:
    bag = build_bag(tmp_path)
    raw = read_episode(bag, 0, None, options(action_topic=None, joint_names=None))
    ep = read_episode(bag, 0, None, options(action_topic=None, joint_names=None, joint_scale=[2.0]))
    assert ep.vectors["observation.state"].shape[1] == 7
    np.testing.assert_allclose(ep.vectors["observation.state"], raw.vectors["observation.state"] * 2, rtol=1e-6)


def test_a_unit_mapping_for_another_number_of_joints_is_an_error_naming_the_joints(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"joint_scale: expected 1 or 7 values \(one per joint\), got 6; the state "
                                           r"joints \(the first state message's order\): j3, j0, j5, j1, j4, j2, "
                                           r"gripper_aux"):
        read_episode(build_bag(tmp_path), 0, None, options(action_topic=None, joint_names=None,
                                                           joint_scale=[RAD_TO_DEG] * 6))


def test_actions_without_joint_names_must_have_one_value_per_state_joint_to_be_converted(tmp_path: Path) -> None:
    bag = build_bag(tmp_path)  # Float64MultiArray commands of 6 joints
    with pytest.raises(DatasetError, match=r"/leader/commands has 6 values per message but the joint unit mapping is "
                                           r"for the 5 state joints"):
        read_episode(bag, 0, None, options(joint_names=JOINTS[:5], joint_scale=[RAD_TO_DEG]))
    assert read_episode(bag, 0, None, options(joint_names=JOINTS[:5])).actions.shape[1] == 6  # as recorded: fine

"""Compressed pixels → uint8 RGB: LeRobot videos with PyAV (FFmpeg), still images via the shared converter.

PyAV ships wheels with FFmpeg (h264, AV1 via dav1d, PNG, JPEG) for x86_64 and aarch64, so
LeRobot videos decode the same way on a workstation and on a Raspberry Pi, without torchcodec
or OpenCV. Still images — ROS ``Image`` / ``CompressedImage`` messages in a rosbag and PNG
cells of LeRobot image columns — go through :mod:`act_policy.core.image_messages`, the
converter the live node uses, so recorded and live pixels are the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from act_policy.core.dependencies import require
from act_policy.core.errors import ObservationError
from act_policy.core.image_messages import RawImage, decode_image
from act_policy.data.episode import DatasetError


def _av():
    return require("av", "decoding recorded images")


def recorded_image(raw: RawImage, source: str) -> np.ndarray:
    """A recorded image message → uint8 HxWx3 RGB; conversion errors become :class:`DatasetError`."""
    try:
        return decode_image(raw, source)
    except ObservationError as exc:
        raise DatasetError(str(exc)) from exc


def decode_image_bytes(data: bytes, source: str) -> np.ndarray:
    """One PNG or JPEG image (as stored in LeRobot image columns) → uint8 HxWx3 RGB."""
    return recorded_image(RawImage("png/jpeg", data, compressed=True), source)


def video_frames(path: Path, timestamps: np.ndarray, tolerance_s: float, source: str) -> Iterator[np.ndarray]:
    """Yield the frame shown at each of ``timestamps`` (seconds in the file, ascending).

    As in LeRobot's ``decode_video_frames`` (src/lerobot/datasets/video_utils.py), a frame's
    time is ``pts * time_base`` and a query is answered by the frame within ``tolerance_s``
    of it; anything farther is an error rather than a silently shifted frame. Decoding
    starts from the keyframe before the first query and runs forward once.
    """
    if not path.is_file():
        raise DatasetError(f"{source}: video file {path} does not exist")
    av = _av()
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise DatasetError(f"{source}: cannot open video {path}: {exc}") from exc
    with container:
        stream = container.streams.video[0]
        if len(timestamps) and timestamps[0] > 0:
            container.seek(int(timestamps[0] / stream.time_base), backward=True, any_frame=False, stream=stream)
        decoded = (f for f in container.decode(stream) if f.pts is not None)
        current, current_rgb = next(decoded, None), None
        for step, query in enumerate(timestamps):
            # Frames come in presentation order and tolerance < half a frame period, so the
            # first frame not earlier than query - tolerance is the only candidate.
            while current is not None and float(current.pts * stream.time_base) < query - tolerance_s:
                current, current_rgb = next(decoded, None), None
            found = None if current is None else float(current.pts * stream.time_base)
            if found is None or abs(found - query) > tolerance_s:
                where = "the video ends before it" if found is None else f"the nearest frame is at {found:.4f} s"
                raise DatasetError(f"{source}: no frame of {path} within {tolerance_s} s of t={query:.4f} s "
                                   f"(step {step}); {where}")
            if current_rgb is None:
                current_rgb = current.to_ndarray(format="rgb24")
            yield current_rgb

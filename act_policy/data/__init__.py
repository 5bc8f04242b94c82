"""Recorded data → :class:`Episode`: LeRobot datasets (v2.x, v3.0) and rosbag2 (sqlite3, mcap).

Shared by offline replay and INT8 calibration. pyarrow, PyAV and rosbags are imported only
when a reader needs them, so the core installs and imports without them.
"""

from __future__ import annotations

from pathlib import Path

from act_policy.core.config import PolicySpec
from act_policy.data.episode import CameraStream, DatasetError, Episode
from act_policy.data.rosbag import BagOptions

LEROBOT_DATASET = "LeRobot dataset"
ROSBAG2 = "rosbag2"


def recording_kind(path: str | Path) -> str | None:
    """:data:`LEROBOT_DATASET` (meta/info.json), :data:`ROSBAG2` (a bag folder or storage file) or None."""
    path = Path(path)
    if (path / "meta" / "info.json").is_file():
        return LEROBOT_DATASET
    if (path / "metadata.yaml").is_file() or (path.is_file() and (path.parent / "metadata.yaml").is_file()):
        return ROSBAG2
    return None


def read_episode(path: str | Path, index: int = 0, spec: PolicySpec | None = None,
                 bag_options: BagOptions | None = None) -> Episode:
    """Episode ``index`` of a LeRobot dataset folder, or the rosbag2 at ``path`` (``bag_options`` required)."""
    path = Path(path)
    kind = recording_kind(path)
    if kind == LEROBOT_DATASET:
        from act_policy.data.lerobot_dataset import read_lerobot_episode

        return read_lerobot_episode(path, index, spec)
    if kind == ROSBAG2:
        if bag_options is None:
            raise DatasetError(f"{path} is a rosbag2: give its topics (state topic, camera mapping)")
        if index != 0:
            raise DatasetError(f"{path}: a rosbag2 holds one episode (index 0), got episode {index}")
        from act_policy.data.rosbag import read_rosbag_episode

        return read_rosbag_episode(path, bag_options, spec)
    raise DatasetError(f"{path}: neither a LeRobot dataset (meta/info.json) nor a rosbag2 (metadata.yaml)")


__all__ = ["LEROBOT_DATASET", "ROSBAG2", "BagOptions", "CameraStream", "DatasetError", "Episode", "read_episode",
           "recording_kind"]

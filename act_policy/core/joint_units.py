"""ROS joint values ↔ the units a policy was trained in, shared by the ROS node and the readers of recorded data.

In core so that the node (:mod:`act_policy.runtime`) and the rosbag2 reader (:mod:`act_policy.data`)
convert with the same code: a calibration or replay on a bag must feed the policy exactly the state
the node would have fed it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from act_policy.core.errors import SettingError


def per_joint(values: Sequence[float], n: int, fill: float, name: str) -> tuple[float, ...]:
    """An optional per-joint array read like the node's parameters: empty → ``fill``, one value → every joint.

    SettingError (starting with ``name``) for any other length than 0, 1 or ``n``.
    """
    if len(values) not in (0, 1, n):
        raise SettingError(f"{name}: expected 1 or {n} values (one per joint), got {len(values)}")
    if not values:
        return (fill,) * n
    return tuple(values) * n if len(values) == 1 else tuple(values)


class JointUnits:
    """ROS joint values ↔ the units the policy was trained in: ``policy = ros * scale + offset``.

    LeRobot arms record degrees or ±100 ranges while ROS uses radians; a wrong factor freezes
    or saturates the arm, so both directions use the same two per-joint arrays.
    """

    def __init__(self, scale: Sequence[float], offset: Sequence[float]) -> None:
        self.scale = np.asarray(scale, np.float64)
        self.offset = np.asarray(offset, np.float64)
        if self.scale.shape != self.offset.shape or np.any(self.scale == 0):
            raise SettingError(f"joint scale {self.scale} and offset {self.offset} must match in length, scale != 0")

    @classmethod
    def from_parameters(cls, scale: Sequence[float], offset: Sequence[float], n: int) -> JointUnits:
        """The mapping for ``n`` joints from the node's ``joint_scale`` / ``joint_offset`` (see :func:`per_joint`)."""
        return cls(per_joint(scale, n, 1.0, "joint_scale"), per_joint(offset, n, 0.0, "joint_offset"))

    def to_policy(self, ros_values: np.ndarray) -> np.ndarray:
        return (np.asarray(ros_values, np.float64) * self.scale + self.offset).astype(np.float32)

    def to_ros(self, policy_values: np.ndarray) -> np.ndarray:
        return (np.asarray(policy_values, np.float64) - self.offset) / self.scale

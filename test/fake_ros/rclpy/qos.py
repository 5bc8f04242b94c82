"""Fake rclpy.qos (rclpy/rclpy/qos.py, jazzy): QoSProfile and the sensor-data preset (best effort, depth 5)."""

from __future__ import annotations

from enum import IntEnum


class ReliabilityPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2


class HistoryPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2


class DurabilityPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    TRANSIENT_LOCAL = 1
    VOLATILE = 2


class QoSProfile:
    def __init__(self, *, depth: int | None = None, history: HistoryPolicy = HistoryPolicy.KEEP_LAST,
                 reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE,
                 durability: DurabilityPolicy = DurabilityPolicy.VOLATILE) -> None:
        if history is HistoryPolicy.KEEP_LAST and depth is None:
            raise ValueError("History policy is KEEP_LAST but no depth was given")  # real: InvalidQoSProfileException
        self.depth, self.history, self.reliability, self.durability = depth, history, reliability, durability


qos_profile_sensor_data = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
qos_profile_system_default = QoSProfile(depth=10)

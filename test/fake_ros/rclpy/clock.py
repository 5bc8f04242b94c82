"""Fake rclpy.clock (rclpy/rclpy/clock.py + clock_type.py, jazzy): Clock(clock_type=...), ClockType."""

from __future__ import annotations

import time as _time
from enum import IntEnum

from rclpy.time import Time


class ClockType(IntEnum):
    UNINITIALIZED = 0
    ROS_TIME = 1
    SYSTEM_TIME = 2
    STEADY_TIME = 3


class Clock:
    def __init__(self, *, clock_type: ClockType = ClockType.SYSTEM_TIME) -> None:
        if not isinstance(clock_type, ClockType):
            raise TypeError("Clock type must be a ClockType enum")
        self.clock_type = clock_type

    def now(self) -> Time:
        ns = _time.monotonic_ns() if self.clock_type is ClockType.STEADY_TIME else _time.time_ns()
        return Time(nanoseconds=ns, clock_type=self.clock_type)

"""Fake rclpy.time.Time (rclpy/rclpy/time.py, jazzy): nanoseconds and to_msg()."""

from __future__ import annotations

from builtin_interfaces.msg import Time as TimeMsg


class Time:
    def __init__(self, *, seconds: float = 0, nanoseconds: int = 0, clock_type=None) -> None:
        self._ns = int(seconds * 1e9) + int(nanoseconds)
        self.clock_type = clock_type

    @property
    def nanoseconds(self) -> int:
        return self._ns

    def to_msg(self) -> TimeMsg:
        return TimeMsg(sec=self._ns // 10**9, nanosec=self._ns % 10**9)

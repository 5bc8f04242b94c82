"""Fake rclpy.executors (rclpy/rclpy/executors.py, jazzy): the names main() uses.

The fake does not spin: tests fire timers and deliver messages themselves.
"""

from __future__ import annotations

from typing import Any


class ExternalShutdownException(Exception):
    pass


class MultiThreadedExecutor:
    def __init__(self, num_threads: int | None = None, *, context: Any = None) -> None:
        self.num_threads = num_threads
        self.nodes: list[Any] = []
        self.spun = False

    def add_node(self, node: Any) -> bool:
        self.nodes.append(node)
        return True

    def spin(self) -> None:
        self.spun = True

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        return True

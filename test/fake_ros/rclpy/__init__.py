"""Fake rclpy: init/shutdown/ok as in rclpy/rclpy/__init__.py and utilities.py (jazzy)."""

from __future__ import annotations

from typing import Any

_initialized = False


def init(*, args: list[str] | None = None, context: Any = None, domain_id: int | None = None,
         signal_handler_options: Any = None) -> None:
    global _initialized
    _initialized = True


def ok(*, context: Any = None) -> bool:
    return _initialized


def shutdown(*, context: Any = None, uninstall_handlers: bool | None = None) -> None:
    global _initialized
    if not _initialized:
        raise RuntimeError("rcl_shutdown already called")  # real: RCLError when not initialized
    _initialized = False


def try_shutdown(*, context: Any = None, uninstall_handlers: bool | None = None) -> None:
    global _initialized
    _initialized = False

"""Fake launch.launch_description_sources (jazzy)."""

from __future__ import annotations

from typing import Any


class AnyLaunchDescriptionSource:
    def __init__(self, launch_file_path: Any) -> None:
        self.location = launch_file_path


class PythonLaunchDescriptionSource(AnyLaunchDescriptionSource):
    pass

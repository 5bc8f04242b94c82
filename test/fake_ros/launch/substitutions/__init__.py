"""Fake launch.substitutions (jazzy): PathJoinSubstitution keeps its parts for inspection."""

from __future__ import annotations

from typing import Any


class PathJoinSubstitution:
    def __init__(self, substitutions: list[Any]) -> None:
        self.substitutions = list(substitutions)


class LaunchConfiguration:
    def __init__(self, variable_name: str, *, default: Any = None) -> None:
        self.variable_name, self.default = variable_name, default

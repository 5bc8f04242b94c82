"""Fake ``launch`` (ros2/launch, jazzy): LaunchDescription and LaunchContext, recording what they get.

Subpackages mirror the real import paths used by act_policy's launch files:
launch.actions (DeclareLaunchArgument, EmitEvent, IncludeLaunchDescription, OpaqueFunction,
RegisterEventHandler), launch.events.matches_action,
launch.launch_description_sources.AnyLaunchDescriptionSource, launch.substitutions.PathJoinSubstitution.
Signatures follow launch/launch/actions/*.py at the jazzy branch (keyword-only where real ones are).
"""

from __future__ import annotations

from typing import Any


class LaunchDescription:
    def __init__(self, initial_entities: list[Any] | None = None, *, deprecated_reason: str | None = None) -> None:
        self.entities = list(initial_entities or [])


class LaunchContext:
    def __init__(self, *, argv: list[str] | None = None, noninteractive: bool = False) -> None:
        self.launch_configurations: dict[str, str] = {}

"""Fake launch.actions (launch/launch/actions/*.py, jazzy)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class Action:
    pass


class DeclareLaunchArgument(Action):
    def __init__(self, name: str, *, default_value: Any = None, description: str | None = None,
                 choices: list[str] | None = None, **kwargs: Any) -> None:
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class OpaqueFunction(Action):
    def __init__(self, *, function: Callable, args: Iterable[Any] | None = None,
                 kwargs: dict[str, Any] | None = None, **left_over_kwargs: Any) -> None:
        self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})

    def execute(self, context: Any) -> list[Any]:
        return self.function(context, *self.args, **self.kwargs)


class EmitEvent(Action):
    def __init__(self, *, event: Any, **kwargs: Any) -> None:
        self.event = event


class RegisterEventHandler(Action):
    def __init__(self, event_handler: Any, **kwargs: Any) -> None:
        self.event_handler = event_handler


class IncludeLaunchDescription(Action):
    def __init__(self, launch_description_source: Any, *, launch_arguments: Iterable[tuple[Any, Any]] | None = None,
                 **kwargs: Any) -> None:
        self.launch_description_source = launch_description_source
        self.launch_arguments = list(launch_arguments or [])

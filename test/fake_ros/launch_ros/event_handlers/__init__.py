"""Fake launch_ros.event_handlers.OnStateTransition (event_handlers/on_state_transition.py, jazzy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OnStateTransition:
    def __init__(self, *, entities: Any, target_lifecycle_node: Any = None, transition: str | None = None,
                 start_state: str | None = None, goal_state: str | None = None,
                 matcher: Callable | None = None, **kwargs: Any) -> None:
        self.entities = entities
        self.target_lifecycle_node, self.transition = target_lifecycle_node, transition
        self.start_state, self.goal_state, self.matcher = start_state, goal_state, matcher

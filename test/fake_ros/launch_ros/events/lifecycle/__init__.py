"""Fake launch_ros.events.lifecycle.ChangeState (events/lifecycle/change_state.py, jazzy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ChangeState:
    def __init__(self, *, lifecycle_node_matcher: Callable[[Any], bool], transition_id: int) -> None:
        self.lifecycle_node_matcher, self.transition_id = lifecycle_node_matcher, transition_id

"""Fake launch.events.matches_action (launch/launch/events/matchers.py, jazzy)."""

from __future__ import annotations

from typing import Any


def matches_action(target_action: Any):
    def matcher(action: Any) -> bool:
        return action is target_action
    matcher.target = target_action
    return matcher

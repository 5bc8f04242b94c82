"""The last line before the robot: limits, step size, finiteness, and when to hold instead.

Everything is in ROS units (the units of the command topic). Holding means re-sending the
last command that passed these checks (or nothing if none was ever sent): position
controllers then keep the arm where it is, and drivers that time out on silence stay fed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Hold(str, Enum):
    """Why a tick did not send a new policy action."""

    INACTIVE = "node not active"
    DISABLED = "disabled"
    STALE = "observation too old"
    WAITING = "waiting for the first observations"
    STARVED = "no action ready (inference behind)"
    BACKEND_ERROR = "backend failed"
    OBSERVATION_ERROR = "observation rejected"
    NON_FINITE = "policy produced NaN/Inf"

    @property
    def requested(self) -> bool:
        """A hold the operator asked for (lifecycle inactive, ``enabled`` false): normal operation, not a fault."""
        return self in (Hold.INACTIVE, Hold.DISABLED)


@dataclass(frozen=True)
class Limits:
    """Per-joint command limits (None = off); arrays have one value per joint."""

    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    max_step: np.ndarray | None = None

    @classmethod
    def from_lists(cls, n: int, lower: Sequence[float], upper: Sequence[float], max_step: Sequence[float]) -> Limits:
        def arr(values: Sequence[float]) -> np.ndarray | None:
            if not values:
                return None
            return np.full(n, values[0]) if len(values) == 1 else np.asarray(values, np.float64)

        return cls(arr(lower), arr(upper), arr(max_step))


def stale_sources(ages_ms: Mapping[str, float], max_image_age_ms: float, max_joint_age_ms: float) -> list[str]:
    """Human-readable list of inputs older than allowed, e.g. ``["joint_states 812 ms > 200 ms"]``."""
    stale = []
    for source, age in ages_ms.items():
        limit = max_joint_age_ms if source == "joint_states" else max_image_age_ms
        if not age <= limit:
            shown = "never received" if math.isinf(age) else f"{age:.0f} ms > {limit:.0f} ms"
            stale.append(f"{source} {shown}")
    return stale


class CommandGuard:
    """Clamps policy targets into limits and step size, refuses non-finite ones, remembers the last command."""

    def __init__(self, n_joints: int, limits: Limits | None = None) -> None:
        self.n_joints = n_joints
        self.limits = limits or Limits()
        self.last_command: np.ndarray | None = None
        self.clamp_count = 0  # ticks in which at least one joint was clamped
        self.clamped_joints = np.zeros(n_joints, np.int64)
        self.rejected_count = 0

    def reset(self) -> None:
        """Forget the last command (e.g. after deactivation): the next step is bounded from the measured position."""
        self.last_command = None

    def filter(self, target: np.ndarray, measured: np.ndarray | None) -> np.ndarray | None:
        """Safe command for ``target`` or None when it must not be sent (non-finite)."""
        target = np.asarray(target, np.float64)
        if target.shape != (self.n_joints,) or not np.all(np.isfinite(target)):
            self.rejected_count += 1
            return None
        command = target.copy()
        lim = self.limits
        reference = self.last_command if self.last_command is not None else measured
        if lim.max_step is not None and reference is not None:
            command = np.clip(command, reference - lim.max_step, reference + lim.max_step)
        if lim.lower is not None:
            command = np.maximum(command, lim.lower)
        if lim.upper is not None:
            command = np.minimum(command, lim.upper)
        clamped = command != target
        if clamped.any():
            self.clamp_count += 1
            self.clamped_joints += clamped
        self.last_command = command
        return command.copy()

    def hold(self) -> np.ndarray | None:
        return None if self.last_command is None else self.last_command.copy()

"""How smooth and how responsive a command stream is: the numbers that compare chunk aggregations.

Two measurements, shared by the node's ``/diagnostics`` (rolling windows) and ``replay``
(whole episodes):

* **Command discontinuity** — ``|Δcommand|`` between consecutive control steps, per joint, in the
  units of the command (ROS units in the node), split into steps at which a new chunk started
  to act (*switch* steps) and all other steps (*within* a chunk). A switch step whose ``Δ`` is
  much larger than the within-chunk ones is the jump that chunk aggregation is meant to remove.
* **Influence lag** — how many steps after its observation a chunk takes over the command,
  as the delay of an instant switch that would lose as much of its influence::

      lag = (arrival - observation step) + Σ_t (1 - w_new(t))

  summed over the steps at which the chunk is the newest, ``w_new`` its weight in the command
  (:meth:`~act_policy.core.scheduling.ChunkAggregator.weights`). With ``latest`` it is the
  arrival delay (the inference latency in steps); ``blend`` over ``B`` steps adds ``B / 2``;
  ``average`` and ``weighted`` add about half of the steps the older chunk still covers. For a
  new chunk that differs from the old one by a constant ``d``, ``d`` times the added lag is the
  summed command error that the aggregation costs compared with switching at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from act_policy.core.diagnostics import Summary, summarize
from act_policy.core.scheduling import ScheduledChunk


@dataclass(frozen=True)
class JointSteps:
    """Per-joint max and 95th percentile of |Δcommand| over a set of steps (NaN when there were none)."""

    count: int
    max: np.ndarray  # (J,)
    p95: np.ndarray  # (J,)

    @classmethod
    def of(cls, deltas: Sequence[np.ndarray], joints: int) -> JointSteps:
        if not deltas:
            nan = np.full(joints, np.nan)
            return cls(0, nan, nan.copy())
        d = np.stack(deltas)
        return cls(len(d), d.max(0), np.percentile(d, 95, axis=0))

    def as_dict(self, names: Sequence[str]) -> dict:
        return {"steps": self.count,
                "per_joint": {n: {"max": float(a), "p95": float(b)} for n, a, b in zip(names, self.max, self.p95,
                                                                                        strict=True)}}

    def worst(self) -> tuple[float, float]:
        """(p95, max) of the joint where each is largest; NaN when there were no steps."""
        if not self.count:
            return math.nan, math.nan
        return float(np.max(self.p95)), float(np.max(self.max))

    def text(self) -> str:
        """``p95/max`` per joint, for a diagnostic value."""
        if not self.count:
            return "n/a"
        return " ".join(f"{a:.4g}/{b:.4g}" for a, b in zip(self.p95, self.max, strict=True))


class CommandSmoothness:
    """|Δcommand| between consecutive steps, kept apart for switch steps and within-chunk steps.

    ``window`` bounds how many recent steps of each kind are kept (None: all, for replay).
    """

    def __init__(self, window: int | None = None) -> None:
        self.switch: deque[np.ndarray] = deque(maxlen=window)
        self.within: deque[np.ndarray] = deque(maxlen=window)
        self._last: tuple[int, np.ndarray] | None = None

    def add(self, step: int, command: np.ndarray, switch: bool) -> None:
        """The command (J,) sent at ``step``; ``switch`` when a newly arrived chunk acted for the first time."""
        command = np.asarray(command, np.float64)
        if self._last is not None and self._last[0] == step - 1:
            (self.switch if switch else self.within).append(np.abs(command - self._last[1]))
        self._last = (step, command)

    def summary(self) -> tuple[JointSteps, JointSteps]:
        """(switch steps, within-chunk steps)."""
        joints = len(self._last[1]) if self._last is not None else 0
        return JointSteps.of(list(self.switch), joints), JointSteps.of(list(self.within), joints)


class InfluenceLag:
    """Influence lag per chunk, in steps (see the module docstring), and the arrival delay it starts from."""

    def __init__(self, window: int | None = 200) -> None:
        self.lags: deque[float] = deque(maxlen=window)
        self.arrivals: deque[int] = deque(maxlen=window)
        self._newest: ScheduledChunk | None = None
        self._lag = 0.0  # the newest chunk's lag so far

    def observe(self, step: int, weights: Sequence[tuple[ScheduledChunk, float]]) -> None:
        """The chunks and weights that set the command of ``step`` (ChunkAggregator.last_weights, newest last)."""
        if not weights:
            return
        newest, weight = weights[-1]
        if newest is not self._newest:
            self.finish()
            self._newest, self._lag = newest, float(newest.arrival - newest.start)
            self.arrivals.append(newest.arrival - newest.start)
        self._lag += 1.0 - weight

    def finish(self) -> None:
        """Record the newest chunk's lag as it stands (it was superseded, or the run ended)."""
        if self._newest is not None:
            self.lags.append(self._lag)
        self._newest = None

    def drop_pending(self) -> None:
        """The schedule was cleared: the newest chunk was dropped, not superseded; its lag is not counted."""
        self._newest = None

    def summary(self) -> Summary:
        return summarize(list(self.lags))

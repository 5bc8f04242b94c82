"""Turning predicted action chunks into one action per control step (LeRobot semantics).

Kept apart from the network so the ROS node, the offline replay and the Python API all
schedule actions identically. All arrays are in action units (unnormalized): every
aggregate here is a weighted average with weights summing to one, so it commutes with
LeRobot's affine unnormalization and the result matches LeRobot, which averages
normalized actions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from act_policy.core.errors import SettingError

AGGREGATIONS = ("latest", "average", "weighted", "blend")


@dataclass(frozen=True)
class ScheduledChunk:
    """One predicted chunk on the step axis: row ``i`` is the action for step ``start + i``.

    ``arrival`` is the first step at which the chunk is known (rows before it are history);
    ``start`` is the step of the observation it was predicted from.
    """

    rows: np.ndarray  # (chunk_size, A) action units
    start: int
    arrival: int

    @property
    def end(self) -> int:
        """First step the chunk no longer covers."""
        return self.start + len(self.rows)


class ChunkAggregator:
    """The action for each step from the chunks that cover it, merged by ``mode``.

    A chunk is added when it arrives; it then *runs* (sets how far ahead actions are
    available) until ``until`` — LeRobot's ``n_action_steps`` after the observation, or after
    the arrival when late rows were skipped — but older chunks that still cover a step keep
    contributing to that step's action in every mode except ``latest``. With ``p_0 … p_{m-1}``
    the predictions for step ``t`` of the ``m`` chunks that have arrived and cover ``t``,
    oldest first, the action is ``Σ w_i p_i`` with weights:

    * ``latest`` — ``w_{m-1} = 1``: the newest chunk replaces the others (LeRobot's
      ``select_action`` queue; LeRobot's async client calls it ``latest_only``).
    * ``average`` — ``w_i = 1 / m``.
    * ``weighted`` — ACT's temporal-ensembling weights ``w_i = exp(-coeff · i) / Σ_j exp(-coeff · j)``,
      ``i = 0`` the oldest prediction (Zhao et al. 2023, arXiv 2304.13705, Algorithm 2; LeRobot
      ``policies/act/modeling_act.py``, ``ACTTemporalEnsembler``: "wᵢ = exp(-temporal_ensemble_coeff
      * i) where w₀ is the oldest action"). ``i`` counts the predictions available for ``t``, as in
      ACT where a chunk arrives every step; here only the chunks that were actually inferred count
      (the skipped ones are simply absent, as in "temporal ensemble with dropped actions"). With a
      chunk added every step this equals :class:`TemporalEnsembler`. ``coeff > 0`` favours older
      predictions (smoother, slower to follow a new observation), ``< 0`` newer ones.
    * ``blend`` — cross-fade from what was commanded to each newer chunk over ``blend_steps``
      steps: for every chunk ``k`` after the oldest, ``v ← (1 - α_k) v + α_k p_k`` with
      ``α_k = min(1, (t - arrival_k + 1) / (blend_steps + 1))``; ``blend_steps = 0`` is ``latest``.
      Where the older chunks no longer cover ``t`` the newest is used alone.
    """

    def __init__(self, mode: str = "latest", coeff: float = 0.01, blend_steps: int = 0) -> None:
        if mode not in AGGREGATIONS:
            raise SettingError(f"chunk_aggregation: expected one of {', '.join(AGGREGATIONS)}, got {mode!r}")
        if blend_steps < 0:
            raise SettingError(f"blend_steps: expected >= 0, got {blend_steps}")
        self.mode = mode
        self.coeff = float(coeff)
        self.blend_steps = blend_steps
        self.reset()

    def reset(self) -> None:
        self._chunks: list[ScheduledChunk] = []  # oldest first
        self._until = 0
        self.last_weights: list[tuple[ScheduledChunk, float]] = []  # what set the last action()

    @property
    def newest(self) -> ScheduledChunk | None:
        return self._chunks[-1] if self._chunks else None

    def remaining(self, step: int) -> int:
        """How many steps from ``step`` on have an action (the running chunk's queue depth)."""
        return max(0, self._until - step) if self._chunks else 0

    def add(self, rows: np.ndarray, start: int, arrival: int, until: int) -> None:
        """A chunk predicted from the observation of ``start`` arrives at ``arrival`` and runs until ``until``."""
        chunk = ScheduledChunk(np.asarray(rows, np.float32), start, arrival)
        if not start <= arrival < chunk.end:
            raise ValueError(f"a chunk covering steps [{start}, {chunk.end}) cannot arrive at step {arrival}")
        self._chunks = [c for c in self._chunks if c.end > arrival]
        self._chunks.append(chunk)
        self._until = min(until, chunk.end)

    def weights(self, step: int) -> list[tuple[ScheduledChunk, float]]:
        """The chunks that set ``step``'s action and their weights (summing to 1), oldest first."""
        if step >= self._until:
            return []
        covering = [c for c in self._chunks if c.start <= step < c.end and c.arrival <= step]
        m = len(covering)
        if self.mode == "latest":
            w = [0.0] * (m - 1) + [1.0]
        elif self.mode == "average":
            w = [1.0 / m] * m
        elif self.mode == "weighted":
            e = np.exp(-self.coeff * np.arange(m, dtype=np.float64))
            w = (e / e.sum()).tolist()
        else:
            w = [1.0]
            for c in covering[1:]:
                alpha = min(1.0, (step - c.arrival + 1) / (self.blend_steps + 1))
                w = [x * (1.0 - alpha) for x in w] + [alpha]
        return list(zip(covering, w, strict=True))

    def action(self, step: int) -> np.ndarray | None:
        """The aggregated action (A,) for ``step``, or None when no running chunk covers it."""
        weighted = self.last_weights = self.weights(step)
        if not weighted:
            return None
        self._chunks = [c for c in self._chunks if c.end > step]  # what ended can no longer contribute
        total = np.zeros(weighted[0][0].rows.shape[1], np.float64)
        for chunk, w in weighted:
            if w:
                total += w * chunk.rows[step - chunk.start]
        return total.astype(np.float32)


class TemporalEnsembler:
    """ACT's temporal ensembling (Zhao et al. 2023) with LeRobot's online weighting.

    A new chunk is predicted every step. The action executed at step t averages every
    prediction made for t, weighted ``w_i = exp(-coeff · i)`` with ``i = 0`` the oldest
    prediction. The average is kept online: per future step, the running mean and how
    many predictions it holds; a new prediction at count n enters with weight ``w_n``
    against the cumulative ``W_{n-1} = w_0 + … + w_{n-1}``.
    """

    def __init__(self, coeff: float, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.weights = np.exp(-coeff * np.arange(chunk_size, dtype=np.float32)).astype(np.float32)
        self.cumulative = np.cumsum(self.weights, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._mean: np.ndarray | None = None  # (k, A) running means for the next k steps
        self._count: np.ndarray | None = None  # (k,) how many predictions each mean holds

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """Fold in a chunk predicted now (chunk_size, A); return the action to execute now."""
        chunk = np.asarray(chunk, np.float32)
        if self._mean is None:
            mean, count = chunk.copy(), np.ones(self.chunk_size, np.int64)
        else:
            n = self._count
            old_total = self.cumulative[n - 1][:, None]
            new_weight = self.weights[np.minimum(n, self.chunk_size - 1)][:, None]
            overlap = (self._mean * old_total + chunk[:-1] * new_weight) / self.cumulative[
                np.minimum(n, self.chunk_size - 1)][:, None]
            mean = np.concatenate([overlap, chunk[-1:]])
            count = np.concatenate([np.minimum(n + 1, self.chunk_size), [1]])
        self._mean, self._count = mean[1:], count[1:]
        return mean[0]

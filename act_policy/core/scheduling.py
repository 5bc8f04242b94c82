"""Turning predicted action chunks into one action per control step (LeRobot semantics).

Kept apart from the network so the ROS node, the offline replay and the Python API all
schedule actions identically. All arrays are in action units (unnormalized): the
ensembler's weighted average has weights summing to one, so it commutes with LeRobot's
affine unnormalization and the result matches LeRobot, which averages normalized actions.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from act_policy.core.errors import SettingError


class ChunkQueue:
    """LeRobot's default: execute the first ``n_action_steps`` of a chunk, then ask for a new one."""

    def __init__(self, n_action_steps: int) -> None:
        if n_action_steps < 1:
            raise SettingError(f"n_action_steps: expected at least 1, got {n_action_steps}")
        self.n_action_steps = n_action_steps
        self._queue: deque[np.ndarray] = deque()

    def reset(self) -> None:
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def needs_chunk(self) -> bool:
        return not self._queue

    def push_chunk(self, chunk: np.ndarray) -> None:
        """Replace the queue with the first ``n_action_steps`` rows of ``chunk`` (chunk, A)."""
        self._queue.clear()
        self._queue.extend(chunk[: self.n_action_steps])

    def pop(self) -> np.ndarray:
        if not self._queue:
            raise IndexError("action queue is empty: push a chunk first")
        return self._queue.popleft()


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

"""Action scheduling follows LeRobot: chunk queue, and temporal ensembling's weighted average."""

from __future__ import annotations

import numpy as np
import pytest

from act_policy.core.scheduling import ChunkQueue, TemporalEnsembler


def test_queue_executes_first_n_action_steps_then_asks_for_a_new_chunk() -> None:
    queue = ChunkQueue(3)
    assert queue.needs_chunk
    queue.push_chunk(np.arange(10, dtype=np.float32)[:, None])
    assert [queue.pop()[0] for _ in range(3)] == [0, 1, 2]
    assert queue.needs_chunk


def test_queue_reset_drops_pending_actions_and_pop_on_empty_fails() -> None:
    queue = ChunkQueue(4)
    queue.push_chunk(np.zeros((10, 2), np.float32))
    queue.reset()
    assert len(queue) == 0
    with pytest.raises(IndexError, match="empty"):
        queue.pop()


def brute_force_ensemble(chunks: list[np.ndarray], coeff: float) -> list[np.ndarray]:
    """ACT's definition: at step t average all predictions for t, w_i = exp(-coeff*i), i=0 oldest."""
    chunk_size = chunks[0].shape[0]
    actions = []
    for t in range(len(chunks)):
        preds = [chunks[s][t - s] for s in range(max(0, t - chunk_size + 1), t + 1)]  # oldest first
        w = np.exp(-coeff * np.arange(len(preds)))
        actions.append(np.sum([wi * p for wi, p in zip(w, preds, strict=True)], axis=0) / w.sum())
    return actions


@pytest.mark.parametrize("coeff", [0.01, 0.5, -0.1])
def test_ensembler_equals_the_weighted_average_over_all_overlapping_predictions(coeff: float) -> None:
    rng = np.random.default_rng(1)
    chunk_size, steps = 5, 12  # more steps than chunk_size: counts saturate
    chunks = [rng.normal(size=(chunk_size, 3)).astype(np.float32) for _ in range(steps)]
    ensembler = TemporalEnsembler(coeff, chunk_size)
    got = [ensembler.update(c) for c in chunks]
    np.testing.assert_allclose(got, brute_force_ensemble(chunks, coeff), rtol=1e-5, atol=1e-5)


def test_ensembler_reset_starts_a_new_episode() -> None:
    ensembler = TemporalEnsembler(0.01, 4)
    ensembler.update(np.ones((4, 2), np.float32))
    ensembler.reset()
    np.testing.assert_array_equal(ensembler.update(np.full((4, 2), 7, np.float32)), [7, 7])

"""Action scheduling: LeRobot's chunk queue, ACT's temporal ensembling, and merging overlapping chunks.

Expected values are computed by hand from each mode's definition (ChunkAggregator's docstring).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from act_policy.core.scheduling import ChunkAggregator, TemporalEnsembler


def const(value: float, rows: int = 6) -> np.ndarray:
    return np.full((rows, 1), value, np.float32)


def test_latest_runs_n_action_steps_of_a_chunk_then_asks_for_a_new_one() -> None:
    agg = ChunkAggregator("latest")
    assert agg.remaining(0) == 0 and agg.action(0) is None
    agg.add(np.arange(10, dtype=np.float32)[:, None], start=0, arrival=0, until=3)
    assert [agg.action(t)[0] for t in range(3)] == [0, 1, 2]
    assert agg.remaining(3) == 0 and agg.action(3) is None


def test_a_late_chunk_runs_from_its_arrival_and_never_past_its_last_row() -> None:
    agg = ChunkAggregator("latest")
    agg.add(np.arange(10, dtype=np.float32)[:, None], start=0, arrival=7, until=7 + 8)
    assert agg.remaining(7) == 3  # rows 7, 8, 9 are all the chunk has
    assert [agg.action(t)[0] for t in (7, 8, 9)] == [7, 8, 9]
    with pytest.raises(ValueError, match=r"covering steps \[0, 10\) cannot arrive at step 10"):
        agg.add(const(0, 10), start=0, arrival=10, until=12)


def overlapping(mode: str, **kwargs) -> ChunkAggregator:
    """Chunk A (all 0) from step 0, chunk B (all 1) from step 2 arriving at 3, chunk C (all 2) from 4 at 5."""
    agg = ChunkAggregator(mode, **kwargs)
    agg.add(const(0.0), start=0, arrival=0, until=6)
    agg.add(const(1.0), start=2, arrival=3, until=8)
    return agg


def test_latest_replaces_the_old_chunk_at_once() -> None:
    agg = overlapping("latest")
    assert agg.action(2)[0] == 0.0  # B has not arrived yet
    assert [agg.action(t)[0] for t in (3, 4, 5, 6, 7)] == [1.0] * 5


def test_average_gives_every_available_prediction_the_same_weight() -> None:
    agg = overlapping("average")
    assert agg.action(2)[0] == 0.0
    assert agg.action(3)[0] == pytest.approx(0.5)  # A and B cover step 3
    agg.add(const(2.0), start=4, arrival=5, until=10)
    assert agg.action(5)[0] == pytest.approx((0 + 1 + 2) / 3)  # A covers 0..5: all three
    assert agg.action(6)[0] == pytest.approx((1 + 2) / 2)  # A has ended
    assert agg.action(8)[0] == pytest.approx(2.0)  # B has ended


@pytest.mark.parametrize("coeff", [0.01, 0.5, -0.3])
def test_weighted_uses_acts_weights_with_i_0_the_oldest_available_prediction(coeff: float) -> None:
    agg = overlapping("weighted", coeff=coeff)
    agg.add(const(2.0), start=4, arrival=5, until=10)
    w0, w1, w2 = 1.0, math.exp(-coeff), math.exp(-2 * coeff)  # w_i = exp(-coeff * i), i = 0 the oldest
    assert agg.action(3)[0] == pytest.approx((w0 * 0 + w1 * 1) / (w0 + w1), rel=1e-6)
    assert agg.action(5)[0] == pytest.approx((w0 * 0 + w1 * 1 + w2 * 2) / (w0 + w1 + w2), rel=1e-6)
    assert agg.action(6)[0] == pytest.approx((w0 * 1 + w1 * 2) / (w0 + w1), rel=1e-6)  # B is now the oldest
    assert [round(w, 12) for _, w in agg.weights(6)] == [round(w0 / (w0 + w1), 12), round(w1 / (w0 + w1), 12)]


def test_blend_cross_fades_from_the_old_chunk_to_the_new_over_blend_steps() -> None:
    agg = overlapping("blend", blend_steps=3)  # alpha = (t - arrival + 1) / 4 for t = 3, 4, 5; then 1
    assert [agg.action(t)[0] for t in (2, 3, 4, 5, 6)] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_blend_falls_back_to_the_new_chunk_where_the_old_one_ends() -> None:
    agg = ChunkAggregator("blend", blend_steps=10)
    agg.add(const(0.0, 4), start=0, arrival=0, until=4)
    agg.add(const(1.0, 6), start=2, arrival=3, until=9)
    assert agg.action(3)[0] == pytest.approx(1 / 11)
    assert agg.action(4)[0] == 1.0  # chunk A covered steps 0..3 only


def test_blend_through_three_chunks_nests_the_fades() -> None:
    agg = overlapping("blend", blend_steps=1)  # alpha: 1/2 at the arrival step, then 1
    agg.add(const(2.0), start=4, arrival=5, until=10)
    # step 5: A=0, B=1 (alpha 1, arrived at 3), C=2 (alpha 1/2) -> (1 - 1/2) * 1 + 1/2 * 2
    assert agg.action(5)[0] == pytest.approx(1.5)
    assert [w for _, w in agg.weights(5)] == pytest.approx([0.0, 0.5, 0.5])


def test_blend_with_zero_steps_is_latest() -> None:
    rng = np.random.default_rng(3)
    chunks = [(rng.normal(size=(8, 2)).astype(np.float32), s, s + 2) for s in (0, 3, 6, 9)]
    outputs = {}
    for mode, kwargs in (("latest", {}), ("blend", {"blend_steps": 0})):
        agg = ChunkAggregator(mode, **kwargs)
        got = []
        for t in range(2, 14):  # the first chunk arrives at step 2
            for rows, start, arrival in chunks:
                if arrival == t:
                    agg.add(rows, start, arrival, arrival + 3)
            got.append(agg.action(t))
        outputs[mode] = np.stack(got)
    np.testing.assert_array_equal(outputs["blend"], outputs["latest"])


def test_unknown_modes_and_negative_blend_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="latest, average, weighted, blend, got 'median'"):
        ChunkAggregator("median")
    with pytest.raises(ValueError, match="blend_steps: expected >= 0"):
        ChunkAggregator("blend", blend_steps=-1)


def test_reset_forgets_every_chunk() -> None:
    agg = overlapping("average")
    agg.reset()
    assert agg.remaining(3) == 0 and agg.action(3) is None


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
    expected = brute_force_ensemble(chunks, coeff)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    weighted = ChunkAggregator("weighted", coeff)  # a chunk every step: weighted aggregation is ACT's ensembling
    aggregated = []
    for t, c in enumerate(chunks):
        weighted.add(c, t, t, t + 1)
        aggregated.append(weighted.action(t))
    np.testing.assert_allclose(aggregated, expected, rtol=1e-5, atol=1e-5)


def test_ensembler_reset_starts_a_new_episode() -> None:
    ensembler = TemporalEnsembler(0.01, 4)
    ensembler.update(np.ones((4, 2), np.float32))
    ensembler.reset()
    np.testing.assert_array_equal(ensembler.update(np.full((4, 2), 7, np.float32)), [7, 7])

"""The node's schedule replayed with a simulated inference latency: timing, errors, smoothness and lag by hand.

The hand-made chunks make every number computable on paper: a chunk from the observation of step
``s`` predicts ``t + s / 4`` for step ``t`` — each newer chunk disagrees with the previous one by 1
where they overlap — and the recording is ``t``. With chunk 8, n_action_steps 4, refill
threshold 2 and a 2-tick latency, chunks are requested at steps 0, 4, 8, 12 and arrive at 2, 6,
10; chunk ``s`` runs from ``s + 2`` for 4 steps and covers steps ``s .. s + 7``, so the previous
chunk still covers the first two steps of the next one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from act_policy.backends import create_backend
from act_policy.core.policy import Policy, load_artifacts
from act_policy.evaluation.schedules import ScheduleSpec, compare_schedules, delay_steps, simulate

STEPS = 14
SETTINGS = dict(rate_hz=10.0, chunk_size=8, action_dim=1, n_action_steps=4, refill_threshold=2, coeff=0.5)
RECORDED = np.arange(STEPS, dtype=np.float64)[:, None]


def chunk(obs_step: int) -> np.ndarray:
    return (obs_step + np.arange(8) + obs_step / 4)[:, None].astype(np.float32)


def run(aggregation: str, blend_steps: int = 0):
    return simulate(chunk, STEPS, ScheduleSpec(aggregation, 200.0, blend_steps), recorded=RECORDED, **SETTINGS)


def test_latency_becomes_whole_ticks_and_a_chunk_is_never_used_in_the_tick_that_requested_it():
    assert [delay_steps(ms, 30.0) for ms in (0, 100, 300, 600, 34)] == [1, 3, 9, 18, 2]
    with pytest.raises(ValueError, match="latency must be >= 0 ms"):
        delay_steps(-1, 30.0)


def test_latest_switches_with_a_jump_of_the_chunks_disagreement():
    r = run("latest")
    assert r.delay_steps == 2 and r.requests == [0, 4, 8, 12] and r.starved == 2  # nothing to send at 0 and 1
    np.testing.assert_allclose(r.commands[2:, 0], [2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15])
    assert (r.switch.count, r.switch.max[0], r.within.max[0]) == (2, 2.0, 1.0)
    assert r.vs_recorded.mean[0] == pytest.approx((0 * 4 + 1 * 4 + 2 * 4) / 12)
    assert (r.lag.count, r.lag.max) == (3, 2.0)  # the lag of latest is the latency


def test_average_halves_the_switch_jump_without_adding_lag():
    r = run("average")
    np.testing.assert_allclose(r.commands[2:, 0], [2, 3, 4, 5, 6.5, 7.5, 9, 10, 11.5, 12.5, 14, 15])
    assert (r.switch.max[0], r.within.max[0]) == (1.5, 1.5)  # the rest of the jump when the old chunk ends
    assert r.lag.max == 2 + 0.5 + 0.5  # the new chunk has half of the command for two steps


def test_weighted_follows_acts_weights_and_lags_until_the_old_chunk_ends():
    r = run("weighted")
    w_new = math.exp(-0.5) / (1 + math.exp(-0.5))  # i = 0 the old chunk, i = 1 the new one
    np.testing.assert_allclose(r.commands[6:8, 0], [6 + w_new, 7 + w_new], rtol=1e-6)
    assert r.lag.max == pytest.approx(2 + 2 * (1 - w_new))  # alone from step s + 4 on


def test_blend_cross_fades_over_its_steps():
    r = run("blend", blend_steps=1)  # alpha 1/2 at the arrival step, then 1
    np.testing.assert_allclose(r.commands[5:9, 0], [5, 6.5, 8, 9])
    assert (r.switch.max[0], r.within.max[0]) == (1.5, 1.5)
    assert r.lag.max == 2.5


def test_temporal_ensembling_starves_when_inference_takes_longer_than_a_tick():
    r = run("temporal_ensemble")
    assert r.requests == [0, 2, 4, 6, 8, 10, 12] and r.starved == 2 + 6  # every other step has no fresh chunk


def test_comparison_runs_the_network_once_per_requested_observation(tiny_artifacts) -> None:
    from test_replay import synthetic_episode

    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def infer(self, inputs):
            calls.append(1)
            return self.inner.infer(inputs)

        def close(self):
            self.inner.close()

    policy = Policy(tiny_artifacts, Counting(create_backend("cpu_fp32", tiny_artifacts)))
    episode = synthetic_episode(tiny_artifacts, steps=20)
    result = compare_schedules(policy, episode, [100, 300], blend_steps=2)
    assert [(r.spec.latency_ms, r.spec.label) for r in result.runs] == [
        (lat, label) for lat in (100.0, 300.0)
        for label in ("latest", "average", "weighted", "blend (2 steps)", "temporal_ensemble")]
    requested = {s for r in result.runs for s in r.requests}
    assert len(calls) == result.inferences == len(requested)
    observations = list(episode.observations())
    latest = next(r for r in result.runs if r.spec == ScheduleSpec("latest", 100.0))
    expected = simulate(lambda s: policy.predict_chunk(observations[s]), 20, latest.spec, rate_hz=30.0, chunk_size=10,
                        action_dim=6, n_action_steps=4, refill_threshold=2, coeff=0.01)
    np.testing.assert_allclose(latest.commands, expected.commands, rtol=1e-6)


def test_cli_writes_the_schedule_comparison(tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from dataset_layout import EpisodeData, write_v30
    from test_replay import synthetic_episode

    from act_policy.tools.cli import main

    artifacts = load_artifacts(tiny_checkpoint)
    source = synthetic_episode(artifacts, steps=12)
    frames = np.stack([o["observation.images.front"] for o in source.observations()])
    actions = np.zeros((12, 6), np.float32)
    root = write_v30(tmp_path / "ds", [EpisodeData(source.vectors["observation.state"], actions,
                                                   {"observation.images.front": frames})])
    out = tmp_path / "out"
    assert main(["replay", str(tiny_checkpoint), "--data", str(root), "--out", str(out), "--threads", "1",
                 "--latency-samples", "0", "--simulate-latency", "100,600", "--chunk-aggregation", "blend",
                 "--blend-steps", "3"]) == 0
    numbers = json.loads((out / "replay.json").read_text())["schedules"]
    assert [(r["latency_ms"], r["aggregation"]) for r in numbers["runs"]][:2] == [(100.0, "latest"),
                                                                                  (100.0, "average")]
    assert numbers["n_action_steps"] == 4 and numbers["refill_threshold"] == 2
    table = (out / "schedules.md").read_text()
    assert "| 600 (k=" in table and "blend (3 steps)" in table and (out / "schedules.png").is_file()
    with pytest.raises(SystemExit, match="--simulate-latency: expected milliseconds like 100,300,600, got 'fast'"):
        main(["replay", str(tiny_checkpoint), "--data", str(root), "--out", str(out), "--simulate-latency", "fast"])

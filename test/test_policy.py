"""The public API contract: load_policy, select_action, predict_chunk, reset, metadata, input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import act_policy
from act_policy import BackendError, ObservationError
from act_policy.core.scheduling import TemporalEnsembler
from act_policy.core.synthetic import synthetic_observations


def episode(policy, steps: int) -> list[dict]:
    return list(synthetic_observations(policy.spec, policy.artifacts.input_stats, steps))


class CountingBackend:
    """Wraps a backend and counts network calls."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def infer(self, inputs):
        self.calls += 1
        return self.inner.infer(inputs)


def test_select_action_executes_n_action_steps_of_each_chunk(tiny_checkpoint: Path) -> None:
    policy = act_policy.load_policy(tiny_checkpoint)
    policy.backend = counter = CountingBackend(policy.backend)
    obs = episode(policy, 9)
    chunks, actions = [], []
    for i, o in enumerate(obs):
        if i % 4 == 0:
            chunks.append(policy.predict_chunk(o))
        actions.append(policy.select_action(o))
    assert counter.calls == 3 + 3  # predict_chunk calls + select_action refills at steps 0, 4, 8
    expected = [chunks[i // 4][i % 4] for i in range(9)]
    np.testing.assert_allclose(actions, expected, atol=1e-6)
    assert actions[0].shape == (6,) and actions[0].dtype == np.float32


def test_chunk_aggregation_merges_a_new_chunk_with_the_tail_of_the_previous_one(tiny_checkpoint: Path) -> None:
    policy = act_policy.load_policy(tiny_checkpoint, chunk_aggregation="average")  # chunk 10, 4 steps per chunk
    obs = episode(policy, 9)
    first, second = policy.predict_chunk(obs[0]), policy.predict_chunk(obs[4])
    actions = [policy.select_action(o) for o in obs]
    np.testing.assert_allclose(actions[:4], first[:4], atol=1e-6)  # nothing overlaps yet
    np.testing.assert_allclose(actions[4:8], (first[4:8] + second[:4]) / 2, atol=1e-6)  # first covers steps 0..9
    assert policy.describe()["chunk_aggregation"] == "average"


def test_predict_chunk_has_no_queue_side_effects_and_reset_starts_over(tiny_checkpoint: Path) -> None:
    policy = act_policy.load_policy(tiny_checkpoint)
    obs = episode(policy, 3)
    first = policy.select_action(obs[0])
    chunk = policy.predict_chunk(obs[1])
    assert chunk.shape == (10, 6) and chunk.dtype == np.float32
    np.testing.assert_array_equal(policy.select_action(obs[1]), policy.predict_chunk(obs[0])[1])
    policy.reset()
    np.testing.assert_array_equal(policy.select_action(obs[0]), first)


def test_temporal_ensembling_infers_every_step_and_averages(tiny_checkpoint: Path) -> None:
    policy = act_policy.load_policy(tiny_checkpoint, temporal_ensemble_coeff=0.01)
    assert policy.n_action_steps == 1
    obs = episode(policy, 5)
    reference = TemporalEnsembler(0.01, policy.chunk_size)
    for o in obs:
        np.testing.assert_allclose(policy.select_action(o), reference.update(policy.predict_chunk(o)), atol=1e-6)
        assert policy.inferred_last_step


def test_ensembling_with_several_action_steps_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(act_policy.SettingError, match=r"n_action_steps: temporal ensembling .* must be 1"):
        act_policy.load_policy(tiny_checkpoint, temporal_ensemble_coeff=0.01, n_action_steps=4)


def test_metadata_describes_features_and_schedule(tiny_checkpoint: Path) -> None:
    policy = act_policy.load_policy(tiny_checkpoint, n_action_steps=2)
    assert policy.camera_names == ("observation.images.front",)
    assert [f.name for f in policy.input_features] == ["observation.state", "observation.images.front"]
    assert policy.action_feature.shape == (6,)
    assert (policy.chunk_size, policy.n_action_steps, policy.action_dim) == (10, 2, 6)
    assert policy.describe()["backend"] == "cpu_fp32"


def test_unknown_backend_lists_the_available_ones(tiny_checkpoint: Path) -> None:
    with pytest.raises(BackendError, match="unknown backend 'tpu'; available: cpu_fp32"):
        act_policy.load_policy(tiny_checkpoint, backend="tpu")


@pytest.mark.parametrize("key,value,message", [
    ("observation.images.front", None,
     r"missing 'observation.images.front': expected uint8 RGB image of shape \(64, 80, 3\)"),
    ("observation.images.front", np.zeros((64, 80, 3), np.float32), r"expected uint8 .* got float32 \(64, 80, 3\)"),
    ("observation.images.front", np.zeros((80, 64, 3), np.uint8), r"got uint8 \(80, 64, 3\)"),
    ("observation.state", np.zeros(5, np.float32), r"'observation.state': expected shape \(6,\), got \(5,\)"),
    ("observation.state", np.array([0, 0, np.nan, 0, 0, 0], np.float32), r"'observation.state' contains NaN"),
    ("observation.state", None, r"missing 'observation.state'"),
])
def test_bad_observations_are_refused_naming_the_key(tiny_checkpoint: Path, key, value, message) -> None:
    policy = act_policy.load_policy(tiny_checkpoint)
    obs = dict(episode(policy, 1)[0])
    if value is None:
        del obs[key]
    else:
        obs[key] = value
    with pytest.raises(ObservationError, match=message):
        policy.select_action(obs)


def _replaced(obs: dict, key: str, value: object) -> dict:
    return {k: v for k, v in {**obs, key: value}.items() if v is not None}


# name → (bad observation made from a good one, what the error says)
BAD_OBSERVATIONS = {
    "only a NaN state of the wrong shape": (lambda o: {"observation.state": np.full(5, np.nan)},
                                            r"missing 'observation.images.front'"),
    "state NaN": (lambda o: _replaced(o, "observation.state", np.array([0, 0, np.nan, 0, 0, 0], np.float32)),
                  r"'observation.state' contains NaN"),
    "state wrong shape": (lambda o: _replaced(o, "observation.state", np.zeros(5)), r"expected shape \(6,\)"),
    "state of strings": (lambda o: _replaced(o, "observation.state", list("abcdef")),
                         r"'observation.state': expected a float32 vector of shape \(6,\), got list"),
    "image float": (lambda o: _replaced(o, "observation.images.front", np.zeros((64, 80, 3), np.float32)),
                    r"'observation.images.front': expected uint8"),
    "image missing": (lambda o: _replaced(o, "observation.images.front", None),
                      r"missing 'observation.images.front'"),
}


@pytest.mark.parametrize("bad,message", BAD_OBSERVATIONS.values(), ids=BAD_OBSERVATIONS.keys())
@pytest.mark.parametrize("backend", ["cpu_fp32", "onnx_fp32"])
def test_a_bad_observation_is_refused_while_actions_are_queued_and_changes_nothing(
        tiny_bundle: Path, backend: str, bad, message: str) -> None:
    """The queue serves 3 more actions after step 0: a bad observation then still raises, and the next
    good call gets exactly the action it would have got without the bad one in between."""
    policy = act_policy.load_policy(tiny_bundle, backend)
    policy.backend = counter = CountingBackend(policy.backend)
    obs = episode(policy, 2)
    first = policy.select_action(obs[0])
    with pytest.raises(ObservationError, match=message):
        policy.select_action(bad(obs[1]))
    second = policy.select_action(obs[1])
    assert counter.calls == 1  # the queue served step 1 without inferring
    policy.reset()
    np.testing.assert_array_equal(policy.select_action(obs[0]), first)
    np.testing.assert_array_equal(policy.select_action(obs[1]), second)


def test_importing_the_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, act_policy; assert 'torch' not in sys.modules; act_policy.load_policy; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"

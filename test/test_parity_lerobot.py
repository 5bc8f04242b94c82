"""Parity with real LeRobot: same checkpoint, same observations → the same actions (≤ 1e-4).

The fixtures in ``fixtures/lerobot_parity/<case>/`` were produced by running LeRobot itself
(version in each ``weights.json``; script ``make_fixture.py``) on seeded small ACT configs.
``model.safetensors`` is not committed (ResNet18 makes it ~45 MB): it is regenerated here from
the seed with ``seeded_state_dict``, and the regeneration is proven exact by comparing a SHA-256
over every tensor with the hash LeRobot's own saved file had.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lerobot_layout import PARITY_FIXTURES, materialize_parity_case

import act_policy
from act_policy.core.checkpoint import load_lerobot_checkpoint

CASES = sorted(p.name for p in PARITY_FIXTURES.iterdir() if (p / "episode.npz").is_file())
TOLERANCE = 1e-4  # max abs error in action units


@pytest.fixture(params=CASES)
def case(request, tmp_path: Path) -> tuple[Path, dict, dict]:
    """A complete checkpoint folder for one fixture case, weights regenerated and verified."""
    folder, meta = materialize_parity_case(request.param, tmp_path / request.param)
    return folder, meta, dict(np.load(folder / "episode.npz"))


def observations(meta: dict, episode: dict) -> list[dict[str, np.ndarray]]:
    keys = meta["raw_observation_keys"]
    return [{k: episode[f"obs/{k}"][t] for k in keys} for t in range(meta["steps"])]


def test_fixture_cases_cover_both_layouts_and_ensembling() -> None:
    assert {"a", "b", "c", "a_legacy"} <= set(CASES)


def test_select_action_over_an_episode_matches_lerobot(case) -> None:
    folder, meta, episode = case
    policy = act_policy.load_policy(folder)
    actions = np.stack([policy.select_action(obs) for obs in observations(meta, episode)])
    error = np.abs(actions - episode["actions"]).max()
    assert error <= TOLERANCE, f"max abs error {error:.2e} vs LeRobot {meta['lerobot_version']}"
    if policy.temporal_ensemble_coeff is None:
        assert meta["steps"] > policy.n_action_steps, "the episode must include a queue refill"


def test_first_chunk_matches_lerobot_normalized_and_unnormalized(case) -> None:
    folder, meta, episode = case
    artifacts = load_lerobot_checkpoint(folder)
    policy = act_policy.load_policy(folder)
    obs = observations(meta, episode)[0]
    chunk = policy.predict_chunk(obs)
    normalized = policy.backend.infer(policy.preprocess(obs))
    assert np.abs(chunk - episode["chunk0"]).max() <= TOLERANCE
    assert np.abs(normalized - episode["chunk0_normalized"]).max() <= TOLERANCE
    state_name = artifacts.spec.state.name
    np.testing.assert_allclose(policy.preprocess(obs).state[0], episode["normalized0_state"], atol=1e-5,
                               err_msg=f"normalized {state_name}")

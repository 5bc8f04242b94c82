"""Parity with real LeRobot: same checkpoint, same observations → the same actions (≤ 1e-4).

The fixtures in ``fixtures/lerobot_parity/<case>/`` were produced by running LeRobot itself
(version in each ``weights.json``; script ``make_fixture.py``) on seeded small ACT configs.
``model.safetensors`` is not committed (ResNet18 makes it ~45 MB): it is regenerated here from
the seed with ``seeded_state_dict``, and the regeneration is proven exact by comparing a SHA-256
over every tensor with the hash LeRobot's own saved file had.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import act_policy
from act_policy.core.checkpoint import expected_shapes, load_lerobot_checkpoint
from act_policy.core.config import parse_lerobot_config
from act_policy.core.synthetic import seeded_state_dict, state_dict_sha256

FIXTURES = Path(__file__).parent / "fixtures" / "lerobot_parity"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "episode.npz").is_file())
TOLERANCE = 1e-4  # max abs error in action units


def regenerate_weights(case_dir: Path, meta: dict) -> dict[str, np.ndarray]:
    config_path = case_dir / "config.json"
    spec = parse_lerobot_config(json.loads(config_path.read_text()), config_path)
    return seeded_state_dict(expected_shapes(spec), meta["seed"])


@pytest.fixture(params=CASES)
def case(request, tmp_path: Path) -> tuple[Path, dict, dict]:
    """A complete checkpoint folder for one fixture case, weights regenerated and verified."""
    source = FIXTURES / request.param
    meta = json.loads((source / "weights.json").read_text())
    folder = tmp_path / request.param
    shutil.copytree(source, folder)
    weights = regenerate_weights(source, meta)
    assert state_dict_sha256(weights) == meta["sha256"], "regenerated weights differ from what LeRobot ran"
    if (folder / "legacy_stats.safetensors").is_file():  # ≤ 0.3 layout: stats live in model.safetensors
        from safetensors.torch import load_file

        stats = load_file(str(folder / "legacy_stats.safetensors"))
        (folder / "legacy_stats.safetensors").unlink()
    else:
        stats = {}
    tensors = {f"model.{k}": torch.from_numpy(v) for k, v in weights.items()}
    save_file({**tensors, **stats}, str(folder / "model.safetensors"))
    episode = dict(np.load(folder / "episode.npz"))
    return folder, meta, episode


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

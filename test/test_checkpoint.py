"""Loading LeRobot checkpoints of both layouts, and refusing bad ones with a named cause."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_spec
from lerobot_layout import PRE_STATS, write_checkpoint, write_legacy_checkpoint
from safetensors.torch import load_file, save_file

from act_policy import CheckpointError, load_policy
from act_policy.core.checkpoint import load_lerobot_checkpoint
from act_policy.core.config import NormMode
from act_policy.core.synthetic import demo_artifacts, synthetic_observations


def chunk_of(path: Path, obs: dict) -> np.ndarray:
    return load_policy(path).predict_chunk(obs)


def first_obs(artifacts) -> dict:
    return next(synthetic_observations(artifacts.spec, artifacts.input_stats, 1))


def test_current_layout_loads_weights_stats_and_modes(tiny_checkpoint: Path, tiny_artifacts) -> None:
    loaded = load_lerobot_checkpoint(tiny_checkpoint)
    assert loaded.spec.inputs == tiny_artifacts.spec.inputs
    assert loaded.spec.action == tiny_artifacts.spec.action
    assert set(loaded.weights) == set(tiny_artifacts.weights)  # VAE tensors dropped
    np.testing.assert_array_equal(loaded.action_stats["action"]["std"], tiny_artifacts.action_stats["action"]["std"])
    assert not loaded.legacy_normalization


def test_both_layouts_give_the_same_actions(tmp_path: Path, tiny_artifacts) -> None:
    obs = first_obs(tiny_artifacts)
    current = chunk_of(write_checkpoint(tiny_artifacts, tmp_path / "new"), obs)
    legacy = chunk_of(write_legacy_checkpoint(tiny_artifacts, tmp_path / "old"), obs)
    np.testing.assert_allclose(legacy, current, atol=1e-5)
    assert np.abs(current).max() > 1.0  # in action units, not normalized


def test_legacy_buffer_names_are_matched_to_features_not_unflattened(tmp_path: Path) -> None:
    spec = tiny_spec()
    cam = dataclasses.replace(spec.cameras[0], name="observation.images.cam_high")
    spec = dataclasses.replace(spec, inputs=(spec.inputs[0], cam))
    artifacts = demo_artifacts(spec)
    loaded = load_lerobot_checkpoint(write_legacy_checkpoint(artifacts, tmp_path / "ckpt"))
    assert "observation.images.cam_high" in loaded.input_stats
    assert loaded.legacy_normalization


def test_legacy_stats_for_an_unknown_feature_are_refused(tmp_path: Path, tiny_artifacts) -> None:
    folder = write_legacy_checkpoint(tiny_artifacts, tmp_path / "ckpt")
    weights = load_file(str(folder / "model.safetensors"))
    weights["normalize_inputs.buffer_observation_images_side.mean"] = torch.zeros(3, 1, 1)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"buffer_observation_images_side\.mean' matches no feature"):
        load_lerobot_checkpoint(folder)


def test_rename_map_lets_the_robot_use_its_own_camera_name(tmp_path: Path, tiny_artifacts) -> None:
    folder = write_checkpoint(tiny_artifacts, tmp_path / "ckpt",
                              rename_map={"observation.images.laptop": "observation.images.front"})
    policy = load_policy(folder)
    obs = first_obs(tiny_artifacts)
    renamed = {("observation.images.laptop" if k == "observation.images.front" else k): v for k, v in obs.items()}
    np.testing.assert_array_equal(policy.predict_chunk(renamed), policy.predict_chunk(obs))
    assert policy.rename_map == {"observation.images.laptop": "observation.images.front"}


def test_stats_files_are_found_through_state_file_not_step_numbers(tiny_checkpoint: Path) -> None:
    moved = "my_stats.safetensors"
    (tiny_checkpoint / PRE_STATS).rename(tiny_checkpoint / moved)
    pre = json.loads((tiny_checkpoint / "policy_preprocessor.json").read_text())
    pre["steps"][-1]["state_file"] = moved
    (tiny_checkpoint / "policy_preprocessor.json").write_text(json.dumps(pre))
    assert load_lerobot_checkpoint(tiny_checkpoint).input_stats["observation.state"]["mean"].shape == (6,)


def test_normalizer_norm_map_decides_the_mode(tiny_checkpoint: Path) -> None:
    pre = json.loads((tiny_checkpoint / "policy_preprocessor.json").read_text())
    pre["steps"][-1]["config"]["norm_map"]["STATE"] = "MIN_MAX"
    (tiny_checkpoint / "policy_preprocessor.json").write_text(json.dumps(pre))
    loaded = load_lerobot_checkpoint(tiny_checkpoint)
    assert loaded.spec.state.norm_mode is NormMode.MIN_MAX


def test_vae_weights_and_imagenet_backbone_name_are_ignored(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["pretrained_backbone_weights"]  # a real config names ImageNet weights; nothing is downloaded
    assert "model.vae_encoder_cls_embed.weight" in load_file(str(tiny_checkpoint / "model.safetensors"))
    load_lerobot_checkpoint(tiny_checkpoint)


def test_weights_from_a_pth_state_dict_load_without_unpickling_objects(tmp_path: Path, tiny_checkpoint) -> None:
    weights = load_file(str(tiny_checkpoint / "model.safetensors"))
    (tiny_checkpoint / "model.safetensors").unlink()
    torch.save(weights, tiny_checkpoint / "model.pth", pickle_protocol=2)
    assert load_lerobot_checkpoint(tiny_checkpoint).weights

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    (tiny_checkpoint / "model.pth").write_bytes(pickle.dumps({"model.x": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"model.pth: cannot load as a plain state dict"):
        load_lerobot_checkpoint(tiny_checkpoint)


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_weights(path: Path, fn) -> None:
    weights = load_file(str(path))
    fn(weights)
    save_file(weights, str(path))


def edit_stats(path: Path, key: str, value) -> None:
    stats = load_file(str(path))
    stats[key] = value
    save_file(stats, str(path))


BAD_CHECKPOINTS = {
    "missing config": (lambda p: (p / "config.json").unlink(), r"neither a LeRobot pretrained_model folder \(no "
                       r"config.json\) nor an act_policy deploy bundle \(no policy.json\)"),
    "not json": (lambda p: (p / "config.json").write_text("{"), r"config.json: not valid JSON"),
    "wrong policy type": (lambda p: edit_json(p / "config.json", type="diffusion"),
                          r"'type' is 'diffusion'; act_policy runs only 'act'"),
    "unknown norm mode": (lambda p: edit_json(p / "config.json", normalization_mapping={"STATE": "ZSCORE"}),
                          r"unknown normalization mode 'ZSCORE'"),
    "missing weights": (lambda p: (p / "model.safetensors").unlink(), r"no model.safetensors"),
    "truncated weights": (lambda p: (p / "model.safetensors").write_bytes(
        (p / "model.safetensors").read_bytes()[:1000]), r"model.safetensors: unreadable safetensors"),
    "shape mismatch": (lambda p: edit_weights(p / "model.safetensors", lambda w: w.update(
        {"model.action_head.weight": torch.zeros(7, 32)})), r"'action_head.weight' has shape \(7, 32\)"),
    "missing tensor": (lambda p: edit_weights(p / "model.safetensors", lambda w: w.pop("model.action_head.bias")),
                       r"missing 1 tensors .*action_head.bias"),
    "unknown tensor": (lambda p: edit_weights(p / "model.safetensors", lambda w: w.update(
        {"model.extra_head.weight": torch.zeros(2)})), r"not used by an ACT with this config.*extra_head"),
    "NaN weight": (lambda p: edit_weights(p / "model.safetensors", lambda w: w.update(
        {"model.action_head.bias": torch.full((6,), float("nan"))})), r"'action_head.bias' contains NaN"),
    "NaN stats": (lambda p: edit_stats(p / PRE_STATS, "observation.state.std", torch.full((6,), float("nan"))),
                  r"observation.state.std: statistics contain NaN"),
    "stats of wrong shape": (lambda p: edit_stats(p / PRE_STATS, "observation.state.mean", torch.zeros(4)),
                             r"observation.state.mean: statistics have shape \(4,\), expected \(6,\)"),
    "missing stats file": (lambda p: (p / PRE_STATS).unlink(), PRE_STATS + r": file not found"),
    "feature shape unknown": (lambda p: edit_json(p / "config.json", output_features={
        "action": {"type": "ACTION", "shape": [6, 2]}}), r"exactly one 1-D 'action' output"),
    "rename to nowhere": (lambda p: edit_json(p / "policy_preprocessor.json", steps=[
        {"registry_name": "rename_observations_processor", "config": {"rename_map": {"a": "observation.images.b"}}}]),
        r"rename_map maps 'a' to 'observation.images.b', which is not an input feature"),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_bad_checkpoint_is_refused_naming_file_and_key(case: str, tiny_checkpoint: Path) -> None:
    corrupt, message = BAD_CHECKPOINTS[case]
    corrupt(tiny_checkpoint)
    with pytest.raises(CheckpointError, match=message):
        load_policy(tiny_checkpoint)


def test_a_file_instead_of_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file; expected a LeRobot pretrained_model folder"):
        load_lerobot_checkpoint(tmp_path / "model.safetensors")

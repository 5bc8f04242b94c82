"""Write checkpoint folders in LeRobot's on-disk layouts, for loader tests.

The ≥ 0.4 layout mirrors what ``save_pretrained`` of LeRobot 0.4+ writes; the real files in
``test/fixtures/lerobot_parity/`` (produced by LeRobot itself) are the reference, and
``test_parity_lerobot.py`` checks the two agree on file names and JSON structure.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.config import FeatureType, PolicySpec

PARITY_FIXTURES = Path(__file__).parent / "fixtures" / "lerobot_parity"
PRE_STATS = "policy_preprocessor_step_3_normalizer_processor.safetensors"
POST_STATS = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"


def config_dict(spec: PolicySpec) -> dict:
    c = spec.config
    modes = {f.type.value: f.norm_mode.value for f in (*spec.inputs, spec.action)}
    return {
        "type": "act",
        "n_obs_steps": 1,
        "input_features": {f.name: {"type": f.type.value, "shape": list(f.shape)} for f in spec.inputs},
        "output_features": {spec.action.name: {"type": "ACTION", "shape": list(spec.action.shape)}},
        "device": "cpu",
        "normalization_mapping": modes,
        **c.__dict__,
        "pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1",
        "dropout": 0.1,
        "kl_weight": 10.0,
        "n_vae_encoder_layers": 4,
    }


def legacy_config_dict(spec: PolicySpec) -> dict:
    raw = config_dict(spec)
    for key in ("input_features", "output_features", "normalization_mapping", "type"):
        raw.pop(key)
    raw["input_shapes"] = {f.name: list(f.shape) for f in spec.inputs}
    raw["output_shapes"] = {spec.action.name: list(spec.action.shape)}
    raw["input_normalization_modes"] = {f.name: f.norm_mode.value.lower() for f in spec.inputs}
    raw["output_normalization_modes"] = {spec.action.name: spec.action.norm_mode.value.lower()}
    return raw


def _flat(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"{name}.{stat}": np.ascontiguousarray(v, np.float32) for name, d in stats.items() for stat, v in d.items()}


def _weights(artifacts: PolicyArtifacts, with_vae: bool) -> dict[str, torch.Tensor]:
    weights = {f"model.{k}": v.contiguous() for k, v in artifacts.weights.items()}
    if with_vae:  # training-only tensors a real checkpoint carries; the loader must ignore them
        d = artifacts.spec.config.dim_model
        weights["model.vae_encoder_cls_embed.weight"] = torch.randn(1, d)
        weights["model.vae_encoder.layers.0.linear1.weight"] = torch.randn(8, d)
    return weights


def write_checkpoint(artifacts: PolicyArtifacts, folder: Path, rename_map: dict[str, str] | None = None,
                     with_vae: bool = True) -> Path:
    """LeRobot ≥ 0.4 layout: config, weights, processor JSONs with their stats files."""
    spec = artifacts.spec
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_dict(spec), indent=2))
    save_torch(_weights(artifacts, with_vae), str(folder / "model.safetensors"))
    features = {f.name: {"type": f.type.value, "shape": list(f.shape)} for f in (*spec.inputs, spec.action)}
    norm_map = {f.type.value: f.norm_mode.value for f in (*spec.inputs, spec.action)}
    pre = {"name": "policy_preprocessor", "steps": [
        {"registry_name": "rename_observations_processor", "config": {"rename_map": rename_map or {}}},
        {"registry_name": "to_batch_processor", "config": {}},
        {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}},
        {"registry_name": "normalizer_processor", "config": {"eps": 1e-8, "features": features, "norm_map": norm_map},
         "state_file": PRE_STATS},
    ]}
    post = {"name": "policy_postprocessor", "steps": [
        {"registry_name": "unnormalizer_processor", "config": {"eps": 1e-8, "features": features,
                                                               "norm_map": norm_map}, "state_file": POST_STATS},
        {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}},
    ]}
    (folder / "policy_preprocessor.json").write_text(json.dumps(pre, indent=2))
    (folder / "policy_postprocessor.json").write_text(json.dumps(post, indent=2))
    all_stats = {**artifacts.input_stats, **artifacts.action_stats}
    save_numpy(_flat(all_stats), str(folder / PRE_STATS))
    save_numpy(_flat(all_stats), str(folder / POST_STATS))
    return folder


def write_legacy_checkpoint(artifacts: PolicyArtifacts, folder: Path) -> Path:
    """LeRobot ≤ 0.3 layout: pre-2025 config keys, stats as buffers inside model.safetensors."""
    spec = artifacts.spec
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(legacy_config_dict(spec), indent=2))
    weights = _weights(artifacts, with_vae=True)

    def buffers(prefix: str, stats: dict[str, dict[str, np.ndarray]]) -> None:
        for name, d in stats.items():
            feature = spec.feature(name)
            for stat in ("min", "max") if feature.norm_mode.value == "MIN_MAX" else ("mean", "std"):
                value = np.asarray(d[stat], np.float32)
                if feature.type is FeatureType.VISUAL:
                    value = value.reshape(3, 1, 1)
                weights[f"{prefix}.buffer_{name.replace('.', '_')}.{stat}"] = torch.from_numpy(value.copy())

    buffers("normalize_inputs", artifacts.input_stats)
    buffers("normalize_targets", artifacts.action_stats)
    buffers("unnormalize_outputs", artifacts.action_stats)
    save_torch(weights, str(folder / "model.safetensors"))
    return folder


def materialize_parity_case(name: str, folder: Path) -> tuple[Path, dict]:
    """Copy LeRobot's own files of parity case ``name`` into ``folder`` and regenerate ``model.safetensors``.

    The weights are rebuilt from the case's seed and proven to be the ones LeRobot saved (sha256 in
    ``weights.json``); a legacy case's normalization buffers go back into ``model.safetensors``.
    Returns ``(folder, weights.json content)``: a ``pretrained_model`` folder as LeRobot wrote it.
    """
    from safetensors.torch import load_file

    from act_policy.core.checkpoint import expected_shapes
    from act_policy.core.config import parse_lerobot_config
    from act_policy.core.synthetic import seeded_state_dict, state_dict_sha256

    source = PARITY_FIXTURES / name
    meta = json.loads((source / "weights.json").read_text())
    shutil.copytree(source, folder)
    config_path = folder / "config.json"
    spec = parse_lerobot_config(json.loads(config_path.read_text()), config_path)
    weights = seeded_state_dict(expected_shapes(spec), meta["seed"])
    assert state_dict_sha256(weights) == meta["sha256"], "regenerated weights differ from what LeRobot ran"
    stats = {}
    if (folder / "legacy_stats.safetensors").is_file():  # <= 0.3 layout: stats live in model.safetensors
        stats = load_file(str(folder / "legacy_stats.safetensors"))
        (folder / "legacy_stats.safetensors").unlink()
    tensors = {f"model.{k}": torch.from_numpy(v) for k, v in weights.items()}
    save_torch({**tensors, **stats}, str(folder / "model.safetensors"))
    return folder, meta

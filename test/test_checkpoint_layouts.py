"""A checkpoint is read with its training-time normalization, or refused: never silently without it.

Inputs are LeRobot's own files (``fixtures/lerobot_parity``: case ``a`` saved by LeRobot 0.4.4,
``a_v03`` by 0.3.3), damaged the way deployment reports described: a ≥ 0.4 folder that lost
``policy_preprocessor.json`` (LeRobot 0.4.4 refuses it), and stats files without a feature that
the config normalizes (LeRobot passes it through with a warning; deployment tools refuse).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from lerobot_layout import POST_STATS, PRE_STATS, materialize_parity_case
from safetensors.numpy import load_file, save_file

import act_policy
from act_policy.core.checkpoint import load_lerobot_checkpoint
from act_policy.core.config import NormMode
from act_policy.core.errors import CheckpointError
from act_policy.tools.cli import main


@pytest.fixture(scope="module")
def lerobot_04(tmp_path_factory) -> Path:
    """Case a as LeRobot 0.4.4 saved it (read-only: copy before damaging)."""
    return materialize_parity_case("a", tmp_path_factory.mktemp("lerobot") / "a")[0]


@pytest.fixture
def damaged(lerobot_04: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(lerobot_04, tmp_path / "pretrained_model"))


def observation(folder: Path) -> dict[str, np.ndarray]:
    episode = np.load(folder / "episode.npz")
    return {"observation.state": episode["obs/observation.state"][0],
            "observation.images.front": episode["obs/observation.images.front"][0]}


def drop_stats(path: Path, feature: str) -> None:
    kept = {k: v for k, v in load_file(str(path)).items() if not k.startswith(feature + ".")}
    save_file(kept, str(path))


# --------------------------------------------------------------------------- A1: layout detection
def test_a_lerobot_04_folder_without_its_preprocessor_is_refused_naming_the_file(damaged: Path, capsys) -> None:
    (damaged / "policy_preprocessor.json").unlink()
    with pytest.raises(CheckpointError, match=r"policy_preprocessor.json: file not found.*normalizes .*action"):
        act_policy.load_policy(damaged)
    # `info` used to print MEAN_STD for this folder and the API ran it unnormalized (|a| ~ 0.4, not ~ 46)
    assert main(["info", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert "policy_preprocessor.json: file not found" in err and "policy_postprocessor.json" in err


def test_a_lerobot_04_folder_with_only_config_and_weights_is_refused(damaged: Path) -> None:
    for name in ("policy_preprocessor.json", "policy_postprocessor.json", PRE_STATS, POST_STATS):
        (damaged / name).unlink()
    with pytest.raises(CheckpointError, match=r"policy_preprocessor.json: file not found.*neither in "
                                              r"policy_preprocessor.json .* nor as normalize_inputs"):
        load_lerobot_checkpoint(damaged)


def test_a_real_lerobot_03_folder_still_loads_from_its_buffers(tmp_path: Path) -> None:
    folder, _ = materialize_parity_case("a_v03", tmp_path / "a_v03")
    artifacts = load_lerobot_checkpoint(folder)
    assert artifacts.legacy_normalization and not artifacts.missing_stats
    assert set(artifacts.input_stats) == {"observation.state", "observation.images.front"}


def test_a_lerobot_03_folder_missing_one_features_buffers_is_refused(tmp_path: Path) -> None:
    folder, _ = materialize_parity_case("a_v03", tmp_path / "a_v03")
    drop_stats(folder / "model.safetensors", "normalize_inputs.buffer_observation_state")
    with pytest.raises(CheckpointError, match=r"model.safetensors: LeRobot <= 0.3 checkpoint without "
                                              r"normalization buffers for \['observation.state'\]"):
        load_lerobot_checkpoint(folder)


# --------------------------------------------------------------------------- A3: stats missing
def test_the_api_passes_a_feature_without_stats_through_with_a_warning_as_lerobot(damaged: Path, caplog) -> None:
    drop_stats(damaged / POST_STATS, "action")
    with caplog.at_level(logging.WARNING):
        policy = act_policy.load_policy(damaged)
    assert "MEAN_STD normalization configured for 'action'" in caplog.text
    assert policy.artifacts.missing_stats == {"action": "MEAN_STD"}
    assert policy.action_feature.norm_mode is NormMode.IDENTITY
    obs = observation(damaged)
    np.testing.assert_array_equal(policy.predict_chunk(obs), policy.backend.infer(policy.preprocess(obs)))


def test_info_says_which_feature_has_no_stats(damaged: Path, capsys) -> None:
    drop_stats(damaged / POST_STATS, "action")
    assert main(["info", str(damaged)]) == 0
    assert "IDENTITY (MEAN_STD configured, no stats)" in capsys.readouterr().out


def test_export_refuses_a_feature_without_stats_unless_allowed(damaged: Path, tmp_path: Path, capsys) -> None:
    drop_stats(damaged / POST_STATS, "action")
    bundle = tmp_path / "bundle"
    assert main(["export", str(damaged), "--out", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert "normalization configured for 'action' (MEAN_STD)" in err and "--allow-missing-stats" in err
    assert not bundle.exists()
    assert main(["export", str(damaged), "--out", str(bundle), "--allow-missing-stats"]) == 0
    # the bundle remembers, so every later tool refuses it again unless allowed
    assert act_policy.load_artifacts(bundle).missing_stats == {"action": "MEAN_STD"}
    assert main(["quantize", str(bundle), "--samples", "2"]) == 2
    assert "--allow-missing-stats" in capsys.readouterr().err


def test_the_node_runtime_refuses_a_feature_without_stats_unless_the_parameter_allows(damaged: Path) -> None:
    from act_policy.runtime.parameters import validate
    from act_policy.runtime.session import build_runtime, load_node_policy

    drop_stats(damaged / PRE_STATS, "observation.state")
    params = {"model_path": str(damaged), "joint_names": [f"j{i}" for i in range(6)],
              "camera_topics": ["front=/cam/image_raw"]}
    policy = load_node_policy(validate(params))  # as the node's on_configure does
    with pytest.raises(CheckpointError, match=r"'observation.state' \(MEAN_STD\).*allow_missing_stats:=true"):
        build_runtime(params, policy)
    runtime = build_runtime({**params, "allow_missing_stats": True}, policy)
    runtime.close()


# --------------------------------------------------------------------------- A5: own error classes
def test_unsupported_architecture_settings_are_checkpoint_errors_naming_config_json(damaged: Path) -> None:
    import json

    config = damaged / "config.json"
    raw = json.loads(config.read_text())
    config.write_text(json.dumps({**raw, "replace_final_stride_with_dilation": True}))
    with pytest.raises(CheckpointError, match=r"config.json: replace_final_stride_with_dilation=true is not "
                                              "supported"):
        load_lerobot_checkpoint(damaged)
    config.write_text(json.dumps({**raw, "vision_backbone": "resnet9"}))
    with pytest.raises(CheckpointError, match=r"config.json: vision_backbone='resnet9'; expected one of resnet18"):
        load_lerobot_checkpoint(damaged)


def test_supported_backbones_are_the_ones_the_model_builds() -> None:
    from act_policy.core.backbone import RESNETS
    from act_policy.core.config import SUPPORTED_BACKBONES

    assert set(SUPPORTED_BACKBONES) == set(RESNETS)

"""The Hailo compile kit: what ``act-policy hailo-prepare`` writes and how ``hailo_compile.sh`` behaves.

The compile script is run for real (bash) with a fake ``hailo`` command on PATH
(``test/fake_hailo_platform/fake_dfc.py``), so argument plumbing, output collection and the
error paths are tested; the real DFC's parsing and quantization are not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import hailo_testing
import numpy as np
import onnx
import pytest
from dataset_layout import EpisodeData, flat_color_frames, write_v21

from act_policy.core.errors import CheckpointError
from act_policy.export import load_bundle
from act_policy.hailo.kit import hailo_ready_onnx, write_kit
from act_policy.hailo.layout import backbone_groups
from act_policy.tools.cli import main

hailo_bundle = hailo_testing.hailo_bundle  # session fixture, bound here so pytest finds it


@pytest.fixture
def kit(hailo_bundle: Path, tmp_path: Path) -> Path:
    artifacts = load_bundle(hailo_bundle)
    write_kit(artifacts, tmp_path / "kit", "hailo8l", hailo_testing.calibration(artifacts, 3), calib_size=4)
    return tmp_path / "kit"


def test_kit_holds_graphs_raw_pixel_calibration_and_the_matching_model_script(hailo_bundle: Path, kit: Path) -> None:
    artifacts = load_bundle(hailo_bundle)
    manifest = json.loads((kit / "kit.json").read_text())
    assert manifest["arch"] == "hailo8l"
    assert [(m["name"], m["cameras"], m["calib_frames"]) for m in manifest["models"]] == [
        ("backbone_64x80", ["observation.images.front", "observation.images.side"], 4),
        ("backbone_48x64", ["observation.images.wrist"], 3)]
    observations = hailo_testing.calibration(artifacts, 3)
    calib = np.load(kit / "models/backbone_64x80/calib.npy")
    assert calib.dtype == np.float32 and calib.shape == (4, 64, 80, 3)
    # raw pixels in observation order (front, side of scene 0, front, side of scene 1), not normalized
    np.testing.assert_array_equal(calib[1], observations[0]["observation.images.side"])
    np.testing.assert_array_equal(calib[2], observations[1]["observation.images.front"])
    script = (kit / "models/backbone_64x80/model.alls").read_text()
    assert "normalization1 = normalization([123.675" in script and "[58.395" in script
    # 16-bit output layer, as hailo_model_zoo v2.18 cfg/alls/generic/detr_resnet_v1_18_bn.alls line 15
    assert "quantization_param({output_layer*}, precision_mode=a16_w16)" in script
    # 4 frames < 1024: level 0, the level the DFC's level-2 fine-tuning could not use anyway
    assert "model_optimization_flavor(optimization_level=0, compression_level=0)" in script
    assert [m["optimization_level"] for m in manifest["models"]] == [0, 0]
    graph = onnx.load(str(kit / "models/backbone_48x64/backbone_48x64.onnx"))
    assert graph.ir_version <= 8
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 48, 64]


def test_compile_script_produces_hefs_and_sidecars_with_the_compiler_release(kit: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DFC_VERSION", "3.31.0")
    result = hailo_testing.run_compile(kit, hailo_testing.fake_dfc_path(tmp_path / "bin"), tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "backbone_48x64.hef", "backbone_48x64.hef.json", "backbone_64x80.hef", "backbone_64x80.hef.json"]
    sidecar = json.loads((tmp_path / "out/backbone_64x80.hef.json").read_text())
    assert sidecar["arch"] == "hailo8l" and len(sidecar["source_onnx_sha256"]) == 64
    assert sidecar["dfc_version"] == "3.31.0" and sidecar["dfc_hailort_version"] == "Not Installed"
    assert [sidecar[k] for k in ("optimization_level", "optimization_level_ran", "calibration_frames")] == [0, 0, 4]
    assert "[backbone_48x64] hailo compiler" in result.stdout


def test_the_level_that_ran_is_recorded_when_the_dfc_lowers_it_without_a_gpu(hailo_bundle: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    artifacts = load_bundle(hailo_bundle)
    write_kit(artifacts, tmp_path / "kit", "hailo8l", hailo_testing.calibration(artifacts, 2), calib_size=2,
              optimization_level=2)
    dfc = hailo_testing.fake_dfc_path(tmp_path / "bin")
    result = hailo_testing.run_compile(tmp_path / "kit", dfc, tmp_path / "cpu")
    assert result.returncode == 0, result.stderr
    assert "lowered optimization level 2 to 0 (because there's no available GPU)" in result.stderr
    sidecar = json.loads((tmp_path / "cpu/backbone_48x64.hef.json").read_text())
    assert (sidecar["optimization_level"], sidecar["optimization_level_ran"]) == (2, 0)
    monkeypatch.setenv("FAKE_DFC_GPU", "1")
    assert hailo_testing.run_compile(tmp_path / "kit", dfc, tmp_path / "gpu").returncode == 0
    assert json.loads((tmp_path / "gpu/backbone_48x64.hef.json").read_text())["optimization_level_ran"] == 2


def test_default_level_is_2_only_with_a_full_calibration_set(hailo_bundle: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from act_policy.hailo import kit as kit_module

    assert kit_module.DEFAULT_CALIB_SIZE == kit_module.FULL_DATASET == 1024
    monkeypatch.setattr(kit_module, "FULL_DATASET", 4)  # the rule, at a size a test can afford
    artifacts = load_bundle(hailo_bundle)
    notes: list[str] = []
    manifest = write_kit(artifacts, tmp_path / "kit", "hailo8l", hailo_testing.calibration(artifacts, 3), calib_size=4,
                         full=True, progress=notes.append)
    # backbone_64x80 gets 2 frames per scene (two cameras): 4 frames; backbone_48x64 only 3; act_full follows
    # the Model Zoo's DETR recipe, level 0.
    assert {m.name: (m.calib_frames, m.optimization_level) for m in manifest.models} == {
        "backbone_64x80": (4, 2), "backbone_48x64": (3, 0), "act_full": (3, 0)}
    assert any(n.startswith("backbone_48x64: 3 calibration frames (< 4): optimization level 0") for n in notes), notes
    notes.clear()
    write_kit(artifacts, tmp_path / "kit2", "hailo8l", hailo_testing.calibration(artifacts, 1), calib_size=4,
              optimization_level=2, progress=notes.append)
    assert any("optimization level 2 with only 1 calibration frames" in n for n in notes)


def test_compile_script_without_the_dfc_says_what_to_install(kit: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    result = hailo_testing.run_compile(kit, f"{empty}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert result.returncode != 0
    assert "Hailo Dataflow Compiler is not on PATH" in result.stderr and "x86_64" in result.stderr


def test_a_failing_step_names_the_step_the_model_and_its_log(kit: Path, tmp_path: Path) -> None:
    np.save(kit / "models/backbone_48x64/calib.npy", np.zeros((2, 64, 48, 3), np.float32))  # H and W swapped
    result = hailo_testing.run_compile(kit, hailo_testing.fake_dfc_path(tmp_path / "bin"))
    assert result.returncode != 0
    assert "step 'hailo optimize' failed for backbone_48x64" in result.stderr
    assert "raw RGB 0-255" in result.stderr  # the hint for this step
    assert "expected float32 (N, 48, 64, 3)" in (kit / "logs/backbone_48x64.optimize.log").read_text()


def test_full_model_kit_calibrates_every_input_under_the_dfc_layer_names(hailo_bundle: Path, tmp_path: Path) -> None:
    artifacts = load_bundle(hailo_bundle)
    write_kit(artifacts, tmp_path / "kit", "hailo8", hailo_testing.calibration(artifacts, 2), full=True)
    calib = np.load(tmp_path / "kit/models/act_full/calib.npz")
    assert {k: calib[k].shape for k in calib.files} == {
        "act_full/input_layer1": (2, 64, 80, 3), "act_full/input_layer2": (2, 64, 80, 3),
        "act_full/input_layer3": (2, 48, 64, 3), "act_full/input_layer4": (2, 6)}
    script = (tmp_path / "kit/models/act_full/model.alls").read_text()
    assert "norm_layer3 = normalization([123.675" in script and "input_layer3)" in script
    assert "input_layer4" not in script  # the state is calibrated normalized: no on-chip normalization
    # hailo_model_zoo v2.18 cfg/alls/generic/detr_resnet_v1_18_bn.alls (ResNet-18 + transformer on hailo8l)
    for line in ("pre_quantization_optimization(equalization, policy=enabled)",
                 "post_quantization_optimization(bias_correction, policy=disabled)",
                 "model_optimization_config(calibration, batch_size=8, calibset_size=2)",
                 "quantization_param({output_layer*}, precision_mode=a16_w16)",
                 "model_optimization_flavor(optimization_level=0, compression_level=0)"):
        assert line in script.splitlines(), line


def test_graphs_with_ir_version_10_are_lowered_for_the_dfc(tmp_path: Path) -> None:
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    info = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 3]) for n in "xy"]
    graph = onnx.helper.make_graph([node], "g", info[:1], info[1:])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=10),
              str(tmp_path / "ir10.onnx"))
    hailo_ready_onnx(tmp_path / "ir10.onnx", tmp_path / "out.onnx")
    assert onnx.load(str(tmp_path / "out.onnx")).ir_version == 8
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)], ir_version=10),
              str(tmp_path / "opset21.onnx"))
    with pytest.raises(CheckpointError, match="opset 21"):
        hailo_ready_onnx(tmp_path / "opset21.onnx", tmp_path / "out.onnx")


def test_cameras_with_different_normalization_get_separate_hefs(hailo_bundle: Path) -> None:
    artifacts = load_bundle(hailo_bundle)
    stats = {k: dict(v) for k, v in artifacts.input_stats.items()}
    stats["observation.images.side"]["mean"] = np.full((3, 1, 1), 0.5, np.float32)
    groups = backbone_groups(dataclasses.replace(artifacts, input_stats=stats))
    assert [(g.name, g.cameras) for g in groups] == [
        ("backbone_64x80", ("observation.images.front",)), ("backbone_64x80_2", ("observation.images.side",)),
        ("backbone_48x64", ("observation.images.wrist",))]


def test_cli_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path, capsys) -> None:
    code = main(["hailo-prepare", str(tmp_path), "--calib", "synthetic", "--arch", "hailo8l", "--out",
                 str(tmp_path / "kit")])
    assert code == 2
    assert "not a deploy bundle" in capsys.readouterr().err


def test_cli_writes_a_kit_from_synthetic_calibration(hailo_bundle: Path, tmp_path: Path, capsys) -> None:
    code = main(["hailo-prepare", str(hailo_bundle), "--calib", "synthetic", "--arch", "hailo8", "--out",
                 str(tmp_path / "kit"), "--calib-size", "2", "--optimization-level", "0"])
    assert code == 0
    assert "bash " in capsys.readouterr().out
    assert "optimization_level=0" in (tmp_path / "kit/models/backbone_48x64/model.alls").read_text()
    assert 'ARCH="hailo8"' in (tmp_path / "kit/hailo_compile.sh").read_text()


def test_cli_calibrates_on_recorded_npz_observations(hailo_bundle: Path, tmp_path: Path) -> None:
    artifacts = load_bundle(hailo_bundle)
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    observations = hailo_testing.calibration(artifacts, 2, seed=9)
    for i, obs in enumerate(observations):
        np.savez(recorded / f"obs_{i}.npz", **obs)
    code = main(["hailo-prepare", str(hailo_bundle), "--calib", str(recorded), "--arch", "hailo8l", "--out",
                 str(tmp_path / "kit"), "--calib-size", "2"])
    assert code == 0
    calib = np.load(tmp_path / "kit/models/backbone_48x64/calib.npy")
    np.testing.assert_array_equal(calib, np.stack([o["observation.images.wrist"] for o in observations]))


def test_cli_keeps_an_existing_kit_when_the_calibration_source_cannot_be_decoded(
        hailo_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A LeRobot dataset's videos decode lazily (PyAV): its first frame is read before --force replaces the kit
    folder, so a missing decoder costs nothing and says what to install."""
    kit = tmp_path / "kit"
    args = ["hailo-prepare", str(hailo_bundle), "--arch", "hailo8l", "--out", str(kit), "--calib-size", "2"]
    assert main([*args, "--calib", "synthetic"]) == 0
    before = {p.relative_to(kit): p.stat().st_mtime_ns for p in kit.rglob("*")}
    spec = load_bundle(hailo_bundle).spec
    steps = 3
    dataset = write_v21(tmp_path / "dataset", [EpisodeData(
        np.zeros((steps, *spec.state.shape), np.float32), np.zeros((steps, spec.action_dim), np.float32),
        {f.name: flat_color_frames(steps, f.shape[1], f.shape[2]) for f in spec.cameras})])
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    assert main([*args, "--calib", str(dataset), "--force"]) == 2
    assert "needs the Python module 'av'" in capsys.readouterr().err
    assert {p.relative_to(kit): p.stat().st_mtime_ns for p in kit.rglob("*")} == before

"""A new user's first hour: bundles are whole or absent, `demo` works everywhere and is built once,
errors say what is wrong and what to do, reports say how busy the machine was."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import tiny_policy_artifacts
from conftest import tiny_spec

import act_policy
from act_policy.core.errors import BackendError, CheckpointError, SettingError
from act_policy.core.synthetic import demo_artifacts, synthetic_observations
from act_policy.export import export_bundle
from act_policy.export.bundle import HEAD_INT8_GRAPH, INT8_GRAPH, POLICY_FILE
from act_policy.export.onnx_export import check_parity
from act_policy.tools.cli import main

REPO = Path(__file__).resolve().parents[1]
QUIET = {"progress": lambda _: None}


# --------------------------------------------------------------------------- B2: atomic bundles
def failing_head_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the export fail at its last graph, after the weights and two graphs are on disk."""
    import act_policy.export.onnx_export as onnx_export

    real = onnx_export.check_parity

    def check(path, *args, **kwargs):
        if path.name == "head.onnx":
            raise BackendError(f"{path}: ONNX output differs from torch (injected)")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "check_parity", check)


def test_a_failed_export_leaves_nothing_behind_and_a_failed_forced_one_keeps_the_old_bundle(
        tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "bundle"
    failing_head_check(monkeypatch)
    with pytest.raises(BackendError, match="injected"):
        export_bundle(tiny_policy_artifacts(), out, **QUIET)
    assert list(tmp_path.iterdir()) == []  # no half bundle, no temporary folder
    monkeypatch.undo()
    export_bundle(tiny_policy_artifacts(), out, **QUIET)  # a retry needs no --force
    before = (out / POLICY_FILE).read_text()

    failing_head_check(monkeypatch)
    with pytest.raises(BackendError, match="injected"):
        export_bundle(demo_artifacts(tiny_spec(), seed=9), out, overwrite=True, **QUIET)
    assert (out / POLICY_FILE).read_text() == before and [p.name for p in tmp_path.iterdir()] == ["bundle"]
    monkeypatch.undo()
    (out / "stale.onnx").write_bytes(b"old")
    export_bundle(demo_artifacts(tiny_spec(), seed=9), out, overwrite=True, **QUIET)
    assert not (out / "stale.onnx").exists()
    weights = act_policy.load_artifacts(out).weights
    assert not torch.equal(weights["action_head.bias"], tiny_policy_artifacts().weights["action_head.bias"])


# --------------------------------------------------------------------------- A6: parity tolerance
class Scaled(torch.nn.Module):
    """What a graph carrying large values looks like to the check: torch differs from ONNX by ``rel``."""

    def __init__(self, rel: float) -> None:
        super().__init__()
        self.rel = rel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() * (1 + self.rel)).float()


@pytest.fixture(scope="module")
def identity_graph(tmp_path_factory) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path_factory.mktemp("parity") / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_parity_tolerance_scales_with_the_magnitude_of_the_outputs(identity_graph: Path) -> None:
    large = [[np.array([[1.8e4, -1.2e4, 3.0e3, 5.0]], np.float32)]]
    parity = check_parity(identity_graph, Scaled(7e-7), large, ["x"])  # was refused: 0.0126 > 1e-4 absolute
    assert parity.max_abs == pytest.approx(1.8e4 * 7e-7, rel=0.1)
    assert parity.max_rel == pytest.approx(7e-7, rel=0.1) and parity.scale == pytest.approx(1.8e4)
    with pytest.raises(BackendError, match=r"differs from torch by 18 absolute, 0.000999 relative to the largest "
                                           r"output 1.8e\+04 \(allowed 0.0001 \+ 1e-05 x 1.8e\+04"):
        check_parity(identity_graph, Scaled(1e-3), large, ["x"])
    small = [[np.array([[0.5, -1.0, 0.25, 2.0]], np.float32)]]
    with pytest.raises(BackendError, match="differs from torch"):  # near 1, still the tight absolute bar
        check_parity(identity_graph, Scaled(1e-4), small, ["x"])


def test_policy_json_records_absolute_and_relative_parity_per_graph(tiny_bundle: Path) -> None:
    graphs = json.loads((tiny_bundle / POLICY_FILE).read_text())["graphs"]
    assert set(graphs["parity_max_abs"]) == set(graphs["parity_max_rel"]) == {
        "act_fp32.onnx", "backbone_64x80.onnx", "head.onnx"}
    assert all(0 <= v < 1e-4 for v in graphs["parity_max_rel"].values())


# --------------------------------------------------------------------------- B3: demo everywhere, built once
@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`demo` stands for the tiny policy, cached under a private XDG_CACHE_HOME."""
    import act_policy.core.synthetic as synthetic
    import act_policy.export.demo_bundle as demo_bundle

    def tiny(spec=None, seed: int = 0):
        return demo_artifacts(spec or tiny_spec(), seed)

    monkeypatch.setattr(synthetic, "demo_artifacts", tiny)
    monkeypatch.setattr(demo_bundle, "demo_artifacts", tiny)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "act_policy" / "demo"


def test_demo_is_a_checkpoint_name_for_info_and_export(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    assert main(["info", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cameras"] == ["observation.images.front"]
    assert main(["export", "demo", "--out", str(tmp_path / "bundle")]) == 0
    assert act_policy.load_artifacts(tmp_path / "bundle").spec == tiny_spec()


def test_the_demo_bundle_is_calibrated_once_and_reused(tiny_demo: Path, capsys) -> None:
    from act_policy.export.demo_bundle import cache_key, demo_bundle

    messages: list[str] = []
    first = demo_bundle(["cpu_int8"], samples=2, progress=messages.append)
    assert first == tiny_demo / cache_key(0, 2) and first.name.startswith("seed0-calib2-")
    assert any("exporting" in m for m in messages) and any("calibrating" in m for m in messages)
    files = json.loads((first / POLICY_FILE).read_text())["files"]
    assert INT8_GRAPH in files and HEAD_INT8_GRAPH not in files  # the head is calibrated only when needed
    messages.clear()
    assert demo_bundle(["cpu_int8", "onnx_fp32"], samples=2, progress=messages.append) == first
    assert messages == [f"using the cached demo bundle {first}"]
    demo_bundle(["hailo"], samples=2, progress=messages.append)  # the hybrid path needs the int8 head
    assert HEAD_INT8_GRAPH in json.loads((first / POLICY_FILE).read_text())["files"]
    assert cache_key(0, 3) != cache_key(0, 2) != cache_key(1, 2)
    # `quantize demo` works on the cached bundle, on synthetic scenes only
    assert main(["quantize", "demo", "--samples", "2"]) == 0
    assert f"wrote {first}/act_int8.onnx" in capsys.readouterr().out
    assert main(["quantize", "demo", "--calib", "recordings/"]) == 2
    assert "export demo --out BUNDLE" in capsys.readouterr().err


def test_quantize_head_flag_adds_the_hailo_head_without_preprocessing_advice(
        tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    with caplog.at_level(logging.WARNING):
        assert main(["quantize", str(bundle), "--samples", "2", "--head"]) == 0
    assert HEAD_INT8_GRAPH in json.loads((bundle / POLICY_FILE).read_text())["files"]
    # ONNX Runtime's "consider pre-processing" advice does not apply to onnxslim-ed graphs: not shown
    assert "SYNTHETIC scenes" in caplog.text and "pre-processing" not in caplog.text


# --------------------------------------------------------------------------- B5: errors that say what to do
def test_errors_name_the_real_problem(tiny_bundle: Path, tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: does not exist" in capsys.readouterr().err
    half = Path(shutil.copytree(tiny_bundle, tmp_path / "half"))
    (half / POLICY_FILE).unlink()
    assert main(["info", str(half)]) == 2
    assert "has ONNX graphs but no policy.json" in capsys.readouterr().err
    assert main(["quantize", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "is a LeRobot checkpoint, not a deploy bundle" in err and "act-policy export" in err
    assert main(["quantize", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: does not exist" in capsys.readouterr().err


def test_a_mistyped_log_level_is_a_usage_error_not_a_traceback(tiny_checkpoint: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--log-level", "DEBUGG", "info", str(tiny_checkpoint)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'DEBUGG'" in capsys.readouterr().err
    assert main(["--log-level", "debug", "info", str(tiny_checkpoint)]) == 0  # case does not matter


def test_one_npz_file_is_a_calibration_source(tiny_bundle: Path, tmp_path: Path) -> None:
    from act_policy.export.calibration import npz_observations

    spec = tiny_policy_artifacts().spec
    frames = list(synthetic_observations(spec, tiny_policy_artifacts().input_stats, 3))
    episode = tmp_path / "episode.npz"
    np.savez(episode, **{k: np.stack([f[k] for f in frames]) for k in frames[0]})
    assert len(list(npz_observations(episode, spec, 3))) == 3
    with pytest.raises(CheckpointError, match=r"missing\.npz: does not exist"):
        list(npz_observations(tmp_path / "missing.npz", spec, 3))


def test_settings_errors_are_act_policys_own(tiny_checkpoint: Path) -> None:
    with pytest.raises(BackendError, match="num_threads: expected a positive number of threads"):
        act_policy.load_policy(tiny_checkpoint, num_threads=-1)
    with pytest.raises(SettingError, match=r"n_action_steps: expected 1 to chunk_size=10, got 11"):
        act_policy.load_policy(tiny_checkpoint, n_action_steps=11)
    with pytest.raises(SettingError, match=r"temporal ensembling .* must be 1"):
        act_policy.load_policy(tiny_checkpoint, n_action_steps=3, temporal_ensemble_coeff=0.01)
    assert issubclass(act_policy.SettingError, act_policy.ActPolicyError)


def test_python_started_beside_a_checkout_named_act_policy_imports_the_package(tmp_path: Path) -> None:
    """An editable install must not lose to the namespace package Python makes of the checkout folder."""
    (tmp_path / "act_policy").symlink_to(REPO, target_is_directory=True)
    code = "import act_policy; print(act_policy.__file__); print(act_policy.load_policy.__name__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(REPO / "act_policy" / "__init__.py"), "load_policy"]


# --------------------------------------------------------------------------- B6: a busy machine is reported
def test_benchmark_records_load_and_threads_and_warns_when_busy(tiny_bundle: Path, monkeypatch) -> None:
    import act_policy.tools.benchmark as benchmark

    cores = os.cpu_count()
    monkeypatch.setattr(benchmark, "load_average", iter([0.3, cores + 1.5]).__next__)
    report = benchmark.run_benchmark(tiny_bundle, ["cpu_fp32"], runs=2, warmup=0, threads=1, held_out=1)
    machine = report["machine"]
    assert machine["load_average_1min_before"] == 0.3 and machine["load_average_1min_after"] == cores + 1.5
    assert machine["torch_threads"] == 1 and report["backends"]["cpu_fp32"]["threads"] == 1
    assert f"up to {cores + 1.5:.2f} on {cores} cores" in report["busy_warning"]
    assert "WARNING: the machine was busy while timing" in benchmark.summary(report)
    assert benchmark.busy_warning([0.2, float(cores)], cores) is None

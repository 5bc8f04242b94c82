"""A robot install without torch runs a deploy bundle end to end.

A fresh venv (``python -m venv``, no system site packages) gets numpy, safetensors, onnxruntime and
pyyaml from PyPI — pinned to the versions of the environment running this test, so both compute with
the same kernels — plus the ``replay`` extra's packages, and act_policy installed with ``--no-deps``:
no torch anywhere. This environment (with torch) exports and quantizes a tiny bundle; the torch-free
venv loads it with ``cpu_int8`` and ``onnx_fp32``, runs ``select_action``, and the CLI's ``demo``,
``benchmark``, ``replay`` and ``info`` on it; its actions (and info's counts) must equal the ones computed
here.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dataset_layout import EpisodeData, write_v21

from act_policy import load_policy
from act_policy.backends.torch_fp32 import build_prepared_model
from act_policy.core.macs import count_macs
from act_policy.core.synthetic import synthetic_observations
from act_policy.export import load_bundle
from act_policy.export.bundle import MACS_FIELD, POLICY_FILE

ROOT = Path(__file__).resolve().parents[1]
# Distributions pinned to this environment's versions; the replay extra's float code is not compared.
PINNED = ("numpy", "onnxruntime", "safetensors", "pyyaml")
REPLAY = ("pyarrow", "av", "matplotlib", "rosbags")
BACKENDS = ("cpu_int8", "onnx_fp32")
STEPS = 6


def _run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, **kwargs)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a venv with act_policy and its robot-side dependencies, without torch."""
    root = tmp_path_factory.mktemp("torch_free")
    _run([sys.executable, "-m", "venv", root / "venv"])
    python = root / "venv" / "bin" / "python"
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins, *REPLAY])
    source = root / "src"  # a copy, so the build writes nothing into the checkout
    shutil.copytree(ROOT / "act_policy", source / "act_policy", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", source])
    return python.parent


@pytest.fixture
def bundle(tiny_quantized_bundle: Path) -> Path:
    return tiny_quantized_bundle


def test_the_venv_has_no_torch(venv: Path) -> None:
    done = subprocess.run([venv / "python", "-c", "import torch"], capture_output=True, text=True)
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


def test_a_bundle_runs_without_torch_with_the_same_actions(venv: Path, bundle: Path) -> None:
    code = f"""
import json
import act_policy
from act_policy.core.synthetic import synthetic_observations
out = {{}}
for backend in {BACKENDS!r}:
    policy = act_policy.load_policy({str(bundle)!r}, backend=backend, num_threads=1)
    scenes = synthetic_observations(policy.spec, policy.artifacts.input_stats, {STEPS}, seed=5)
    out[backend] = [policy.select_action(obs).tolist() for obs in scenes]
print(json.dumps(out))
"""
    torch_free = json.loads(_run([venv / "python", "-c", code]).stdout)
    for backend in BACKENDS:
        policy = load_policy(bundle, backend=backend, num_threads=1)
        scenes = synthetic_observations(policy.spec, policy.artifacts.input_stats, STEPS, seed=5)
        here = np.array([policy.select_action(obs) for obs in scenes])
        np.testing.assert_allclose(np.array(torch_free[backend], np.float32), here, rtol=0, atol=1e-5,
                                   err_msg=backend)


def test_torch_backends_say_what_to_install_instead_of_a_traceback(venv: Path, bundle: Path) -> None:
    done = subprocess.run([venv / "act-policy", "demo", "--checkpoint", bundle, "--backend", "cpu_fp32"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "backend 'cpu_fp32' needs the Python module 'torch'" in done.stderr
    assert "--index-url https://download.pytorch.org/whl/cpu" in done.stderr


def test_info_describes_a_bundle_without_torch(venv: Path, bundle: Path) -> None:
    info = json.loads(_run([venv / "act-policy", "info", bundle, "--json"]).stdout)
    here = load_bundle(bundle)
    assert info["parameters"] == sum(t.numel() for t in here.weights.values())
    assert info["macs_per_inference"] == count_macs(build_prepared_model(here))
    assert info["macs_source"] == "recorded in policy.json at export"


def test_info_on_a_bundle_exported_before_macs_were_recorded_says_they_are_unknown(
        venv: Path, bundle: Path, tmp_path: Path) -> None:
    older = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    document = json.loads((older / POLICY_FILE).read_text())
    del document[MACS_FIELD]
    (older / POLICY_FILE).write_text(json.dumps(document))
    info = _run([venv / "act-policy", "info", older])
    assert "Traceback" not in info.stderr
    assert ("MACs per inference: unknown: this bundle was exported before act_policy recorded MACs in "
            "policy.json, and counting them needs torch; export the bundle again to record them") in info.stdout
    assert re.search(r"^parameters \(inference\): [\d.]+ M$", info.stdout, re.M)


def test_cli_demo_benchmark_and_replay_run_a_bundle_without_torch(venv: Path, bundle: Path,
                                                                  tmp_path: Path) -> None:
    demo = _run([venv / "act-policy", "demo", "--checkpoint", bundle, "--backend", "cpu_int8", "--duration", "0.5",
                 "--threads", "1"])
    assert "control:" in demo.stdout

    report = tmp_path / "bench.json"
    benchmark = _run([venv / "act-policy", "benchmark", bundle, "--runs", "2", "--warmup", "1", "--held-out", "2",
                      "--threads", "1", "--json", report])
    # the MACs recorded at export, where torch counted them
    recorded = json.loads((bundle / POLICY_FILE).read_text())[MACS_FIELD]
    assert "GMAC per inference (recorded in policy.json at export)" in benchmark.stdout
    bench = json.loads(report.read_text())
    assert bench["baseline"] == "onnx_fp32" and list(bench["backends"]) == ["onnx_fp32", "cpu_int8"]
    assert bench["machine"]["torch"] is None and bench["backends"]["cpu_int8"]["macs"] == recorded
    assert 0 < bench["backends"]["cpu_int8"]["fidelity"]["rel_l2"] < 0.2  # quantized: close, not equal

    policy = load_policy(bundle, backend="onnx_fp32")
    scenes = list(synthetic_observations(policy.spec, policy.artifacts.input_stats, 8))
    actions = np.array([policy.select_action(obs) for obs in scenes])
    camera = policy.camera_names[0]
    dataset = write_v21(tmp_path / "dataset", [EpisodeData(
        state=np.stack([obs["observation.state"] for obs in scenes]), action=actions,
        frames={camera: np.stack([obs[camera] for obs in scenes])})], camera_dtype="image")
    _run([venv / "act-policy", "replay", bundle, "--data", dataset, "--episode", "0", "--backends", "cpu_int8",
          "--out", tmp_path / "replay", "--latency-samples", "2", "--threads", "1"])
    replayed = json.loads((tmp_path / "replay" / "replay.json").read_text())
    assert list(replayed["backends"]) == ["onnx_fp32", "cpu_int8"]
    # The episode's actions are onnx_fp32's own on lossless PNG frames: the torch-free replay reproduces them.
    assert replayed["backends"]["onnx_fp32"]["error_vs_recorded"]["max"] < 1e-4
    assert 0 < replayed["backends"]["cpu_int8"]["error_vs_onnx_fp32"]["max"] < 0.2 * np.abs(actions).max()

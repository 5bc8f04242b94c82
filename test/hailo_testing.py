"""Helpers for the Hailo tests: the fake ``hailo_platform`` on the import path, a fake DFC on PATH, kits.

The fake lives in ``test/fake_hailo_platform`` and is importable as ``hailo_platform`` only while
the ``hailort`` fixture is active, so nothing outside the tests can pick it up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.synthetic import synthetic_observations

FAKE_ROOT = Path(__file__).parent / "fake_hailo_platform"


@pytest.fixture
def hailort(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The fake HailoRT as ``hailo_platform``; yields its ``SYSTEM`` (devices, version, fault injection)."""
    for name in [m for m in sys.modules if m == "hailo_platform" or m.startswith("hailo_platform.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(FAKE_ROOT))
    import hailo_platform.pyhailort.pyhailort as fake

    fake.SYSTEM.reset()
    yield fake.SYSTEM
    for name in [m for m in sys.modules if m == "hailo_platform" or m.startswith("hailo_platform.")]:
        del sys.modules[name]


def fake_dfc_path(folder: Path) -> str:
    """A PATH whose ``hailo`` is the fake Dataflow Compiler (run with this interpreter)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "hailo"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ROOT / "fake_dfc.py"}" "$@"\n')
    exe.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def run_compile(kit: Path, path: str, out: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = ["bash", str(kit / "hailo_compile.sh"), *([str(out)] if out else [])]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PATH": path}, check=False)


def calibration(artifacts: PolicyArtifacts, n: int, seed: int = 3) -> list[dict]:
    return list(synthetic_observations(artifacts.spec, artifacts.input_stats, n, seed=seed))


def multi_camera_spec():
    """Tiny ACT with two 64x80 cameras (one shared backbone HEF) and a 48x64 wrist camera (a second HEF)."""
    import dataclasses

    from conftest import tiny_spec

    from act_policy.core.config import Feature, FeatureType, NormMode

    spec = tiny_spec()
    cameras = (("observation.images.front", 64, 80), ("observation.images.side", 64, 80),
               ("observation.images.wrist", 48, 64))
    inputs = (spec.state, *(Feature(n, FeatureType.VISUAL, (3, h, w), NormMode.MEAN_STD) for n, h, w in cameras))
    return dataclasses.replace(spec, inputs=inputs)


_SESSION: dict[str, Path] = {}  # one bundle per test session, although each test module binds the fixture


@pytest.fixture(scope="session")
def hailo_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-camera deploy bundle with backbone and full HEFs compiled by the fake DFC into ``hailo/``."""
    if "bundle" not in _SESSION:
        _SESSION["bundle"] = _compiled_bundle(tmp_path_factory.mktemp("hailo"))
    return _SESSION["bundle"]


@pytest.fixture(scope="session")
def quantized_hailo_bundle(hailo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``hailo_bundle`` (same HEFs) after ``act-policy quantize``: it also has ``head_int8.onnx``."""
    if "quantized" not in _SESSION:
        import shutil

        from act_policy.export.quantize import quantize_bundle

        bundle = Path(shutil.copytree(hailo_bundle, tmp_path_factory.mktemp("hailo_int8") / "bundle"))
        quantize_bundle(bundle, None, 8, progress=lambda _: None, head=True)
        _SESSION["quantized"] = bundle
    return _SESSION["quantized"]


def _compiled_bundle(root: Path) -> Path:
    import shutil

    from act_policy.core.synthetic import demo_artifacts
    from act_policy.export import export_bundle, load_bundle
    from act_policy.hailo.kit import write_kit

    bundle = export_bundle(demo_artifacts(multi_camera_spec(), seed=5), root / "bundle", progress=lambda _: None)
    artifacts = load_bundle(bundle)
    write_kit(artifacts, root / "kit", "hailo8l", calibration(artifacts, 16), full=True, calib_size=16)
    result = run_compile(root / "kit", fake_dfc_path(root / "bin"))
    assert result.returncode == 0, result.stderr
    shutil.copytree(root / "kit" / "hef", bundle / "hailo")
    return bundle

"""Shared fixtures: tiny ACT policies (ResNet18 at 64x80, d=32) that run in milliseconds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from act_policy.backends.base import Backend
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.config import ACTConfig, PolicySpec
from act_policy.core.synthetic import demo_artifacts, demo_spec

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (lerobot_layout, fakes) import by name

TINY_CONFIG = ACTConfig(dim_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=2, n_decoder_layers=1,
                        chunk_size=10, n_action_steps=4)


def tiny_spec(**config_overrides) -> PolicySpec:
    import dataclasses

    return demo_spec(64, 80, config=dataclasses.replace(TINY_CONFIG, **config_overrides))


@pytest.fixture
def tiny_artifacts() -> PolicyArtifacts:
    return demo_artifacts(tiny_spec(), seed=7)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_artifacts: PolicyArtifacts) -> Path:
    from lerobot_layout import write_checkpoint

    return write_checkpoint(tiny_artifacts, tmp_path / "pretrained_model")


@pytest.fixture(scope="session", autouse=True)
def demo_cache(tmp_path_factory: pytest.TempPathFactory):
    """$XDG_CACHE_HOME for the whole run: the cached demo bundle is built at most once per session,
    and never in the user's own ~/.cache."""
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("xdg_cache")
    patch.setenv("XDG_CACHE_HOME", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny policy exported once per session; read-only (copy it before changing anything)."""
    from bundle_helpers import make_bundle

    return make_bundle(tmp_path_factory.mktemp("tiny_bundle") / "bundle")


@pytest.fixture(scope="session")
def tiny_quantized_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_bundle`` plus act_int8.onnx and head_int8.onnx (8 synthetic scenes); read-only."""
    from bundle_helpers import quantized_copy

    return quantized_copy(tiny_bundle, tmp_path_factory.mktemp("tiny_int8") / "bundle", head=True)


@pytest.fixture(scope="module")
def tiny_torch_backend():
    """(artifacts, cpu_fp32 backend) built once per module: the backend is stateless between calls."""
    from act_policy.backends import create_backend

    artifacts = demo_artifacts(tiny_spec(), seed=7)
    return artifacts, create_backend("cpu_fp32", artifacts)


class FallenBackBackend:
    """A policy backend that, like the hailo backend without an NPU, hands the work to cpu_fp32."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = "hailo"

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "backend": "hailo", "npu": False, "fallback_backend": "cpu_fp32",
                "fallback_reason": "no Hailo device found"}

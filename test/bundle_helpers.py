"""Small deploy bundles for export/backend/benchmark tests (tiny ACT at 64x80, seconds to build)."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_spec

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.synthetic import demo_artifacts
from act_policy.export import export_bundle

CALIBRATION_SAMPLES = 8


def tiny_policy_artifacts() -> PolicyArtifacts:
    return demo_artifacts(tiny_spec(), seed=3)


def make_bundle(folder: Path) -> Path:
    """Export the tiny policy to ``folder`` (conftest's session fixtures share one such bundle)."""
    return export_bundle(tiny_policy_artifacts(), folder, progress=lambda _: None)

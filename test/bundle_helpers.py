"""Small deploy bundles for export/backend/benchmark tests (tiny ACT at 64x80, seconds to build)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from conftest import tiny_spec

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.synthetic import demo_artifacts
from act_policy.export import export_bundle

if TYPE_CHECKING:  # quantize imports onnx and onnxruntime: only the tests that quantize need them
    from act_policy.export.quantize import Recipe

CALIBRATION_SAMPLES = 8


def tiny_policy_artifacts() -> PolicyArtifacts:
    return demo_artifacts(tiny_spec(), seed=3)


def make_bundle(folder: Path) -> Path:
    """Export the tiny policy to ``folder`` (conftest's session fixtures share one such bundle)."""
    return export_bundle(tiny_policy_artifacts(), folder, progress=lambda _: None)


def quantized_copy(bundle: Path, folder: Path, recipe: Recipe | None = None, head: bool = False) -> Path:
    """A copy of ``bundle`` in ``folder``, quantized by ``recipe`` (the default recipe when None) on
    CALIBRATION_SAMPLES synthetic scenes."""
    from act_policy.export.quantize import DEFAULT_RECIPE, quantize_bundle

    copy = Path(shutil.copytree(bundle, folder))
    quantize_bundle(copy, None, CALIBRATION_SAMPLES, progress=lambda _: None, recipe=recipe or DEFAULT_RECIPE,
                    head=head)
    return copy

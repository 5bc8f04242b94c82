"""Checkpoint → deploy bundle → INT8: everything that turns a trained policy into files a robot runs.

Needs torch and the ``onnx`` extra (``onnx``, ``onnxslim``, ``onnxruntime``); the robot itself
only needs ``onnxruntime`` (the ``robot`` extra) to run a bundle, and no torch.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from act_policy.backends import BackendOptions, create_backend
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import CheckpointError
from act_policy.core.policy import Policy
from act_policy.core.synthetic import demo_artifacts, synthetic_observations
from act_policy.export.bundle import (
    POLICY_FILE,
    WEIGHTS_FILE,
    checkpoint_sha256,
    is_bundle,
    load_bundle,
    policy_document,
    write_policy_document,
    write_weights,
)

if TYPE_CHECKING:  # onnx is imported only when exporting: loading a bundle must not need it
    from act_policy.export.onnx_export import Progress

PARITY_SAMPLES = 3  # observations the exported graphs are checked on (seed below, distinct from calibration)
PARITY_SEED = 11


def stderr_progress(message: str) -> None:
    print(f"[act-policy] {message}", file=sys.stderr, flush=True)


def reference_policy(artifacts: PolicyArtifacts, num_threads: int | None = None) -> Policy:
    """The torch float32 policy other representations are checked against."""
    return Policy(artifacts, create_backend("cpu_fp32", artifacts, BackendOptions(num_threads=num_threads)))


def export_bundle(artifacts: PolicyArtifacts, out: str | Path, progress: Progress = stderr_progress,
                  overwrite: bool = False) -> Path:
    """Write a deploy bundle for ``artifacts`` into ``out`` (see :mod:`act_policy.export.bundle`)."""
    from act_policy.export.onnx_export import export_graphs

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(f"{out}: output folder exists and is not empty (pass overwrite / --force)")
        if not is_bundle(out):
            raise CheckpointError(f"{out}: refusing to overwrite a folder that is not an act_policy bundle")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    source_hash = None
    if artifacts.source is not None and artifacts.source.is_dir():
        progress(f"hashing source checkpoint {artifacts.source}")
        source_hash = checkpoint_sha256(artifacts.source)
    document = policy_document(artifacts, source_hash)
    write_weights(artifacts, out)
    reference = reference_policy(artifacts)
    observations = synthetic_observations(artifacts.spec, artifacts.input_stats, PARITY_SAMPLES, seed=PARITY_SEED)
    examples = [reference.preprocess(o) for o in observations]
    document["graphs"] = export_graphs(reference.backend.model, artifacts, examples, out, progress)
    document["files"] = dict.fromkeys([WEIGHTS_FILE, *(p.name for p in out.glob("*.onnx"))], "")
    write_policy_document(out, document)
    worst = max(document["graphs"]["parity_max_abs"].values())
    progress(f"wrote {out / POLICY_FILE} and {len(document['files'])} files; "
             f"max |ONNX - torch| = {worst:.2e} over {PARITY_SAMPLES} observations")
    return out


__all__ = ["export_bundle", "is_bundle", "load_bundle", "reference_policy", "stderr_progress"]


DEMO_CALIBRATION_SAMPLES = 64


def export_demo_bundle(folder: Path, backends: list[str], samples: int = DEMO_CALIBRATION_SAMPLES,
                       progress: Progress = stderr_progress, seed: int = 0) -> Path:
    """Bundle of the seeded default-size demo policy in ``folder``, INT8-calibrated on synthetic scenes
    when a backend needs ``act_int8.onnx`` — so demo and benchmark can run every backend with no checkpoint."""
    from act_policy.export.quantize import quantize_bundle

    bundle = export_bundle(demo_artifacts(seed=seed), folder / "demo_bundle", progress)
    if "cpu_int8" in backends:
        quantize_bundle(bundle, None, samples, progress)
    return bundle

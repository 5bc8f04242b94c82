"""Checkpoint → deploy bundle → INT8: everything that turns a trained policy into files a robot runs.

Needs torch and the ``onnx`` extra (``onnx``, ``onnxslim``, ``onnxruntime``); the robot itself
only needs ``onnxruntime`` (the ``robot`` extra) to run a bundle, and no torch.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from act_policy.backends import BackendOptions, create_backend
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.dependencies import require_all
from act_policy.core.errors import CheckpointError
from act_policy.core.policy import Policy
from act_policy.core.synthetic import synthetic_observations
from act_policy.export.bundle import (
    MACS_FIELD,
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

# What writing a bundle imports (torch: the reference model and the ONNX export; onnx, onnxslim: the graphs;
# onnxruntime: their parity check), checked up front so that a missing one stops the export before it starts.
EXPORT_MODULES = ("torch", "onnx", "onnxslim", "onnxruntime")
PARITY_SAMPLES = 3  # observations the exported graphs are checked on (seed below, distinct from calibration)
PARITY_SEED = 11


def stderr_progress(message: str) -> None:
    print(f"[act-policy] {message}", file=sys.stderr, flush=True)


def reference_policy(artifacts: PolicyArtifacts, num_threads: int | None = None) -> Policy:
    """The torch float32 policy other representations are checked against."""
    return Policy(artifacts, create_backend("cpu_fp32", artifacts, BackendOptions(num_threads=num_threads)))


def export_bundle(artifacts: PolicyArtifacts, out: str | Path, progress: Progress = stderr_progress,
                  overwrite: bool = False, allow_missing_stats: bool = False) -> Path:
    """Write a deploy bundle for ``artifacts`` into ``out`` (see :mod:`act_policy.export.bundle`).

    The bundle is assembled in a temporary folder beside ``out`` and renamed into place when
    complete, so a failed export leaves no partial bundle behind (and an existing one, with
    ``overwrite``, untouched until the new one is whole). CheckpointError if ``out`` holds
    something else, or if a normalized feature has no stats and ``allow_missing_stats`` is False;
    MissingDependencyError, before anything is written, if a module of ``EXPORT_MODULES`` is not installed.
    """
    require_all(EXPORT_MODULES, "exporting a deploy bundle")
    artifacts.require_complete_stats(allow_missing_stats, "--allow-missing-stats (allow_missing_stats=True)")
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not overwrite:
            raise CheckpointError(f"{out}: output folder exists and is not empty (pass overwrite / --force)")
        if not is_bundle(out):
            raise CheckpointError(f"{out}: refusing to overwrite a folder that is not an act_policy bundle")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.partial-", dir=out.parent) as tmp:
        staging = Path(tmp) / "bundle"
        staging.mkdir()
        _write_bundle(artifacts, staging, progress)
        if out.exists():  # an empty folder, or the bundle being replaced: moved aside, deleted with tmp
            out.rename(Path(tmp) / "replaced")
        staging.rename(out)
    return out


def _write_bundle(artifacts: PolicyArtifacts, folder: Path, progress: Progress) -> None:
    from act_policy.core.macs import count_macs
    from act_policy.export.onnx_export import export_graphs

    source_hash = None
    if artifacts.source is not None and artifacts.source.is_dir():
        progress(f"hashing source checkpoint {artifacts.source}")
        source_hash = checkpoint_sha256(artifacts.source)
    document = policy_document(artifacts, source_hash)
    write_weights(artifacts, folder)
    reference = reference_policy(artifacts)
    observations = synthetic_observations(artifacts.spec, artifacts.input_stats, PARITY_SAMPLES, seed=PARITY_SEED)
    examples = [reference.preprocess(o) for o in observations]
    document[MACS_FIELD] = count_macs(reference.backend.model)  # so a robot without torch can say it
    document["graphs"] = export_graphs(reference.backend.model, artifacts, examples, folder, progress)
    document["files"] = dict.fromkeys([WEIGHTS_FILE, *(p.name for p in folder.glob("*.onnx"))], "")
    write_policy_document(folder, document)
    graphs = document["graphs"]
    worst = max(graphs["parity_max_abs"], key=graphs["parity_max_abs"].get)
    progress(f"wrote {POLICY_FILE} and {len(document['files'])} files; largest |ONNX - torch| over "
             f"{PARITY_SAMPLES} observations: {graphs['parity_max_abs'][worst]:.2e} "
             f"({graphs['parity_max_rel'][worst]:.2e} relative) in {worst}")


__all__ = ["EXPORT_MODULES", "export_bundle", "is_bundle", "load_bundle", "reference_policy", "stderr_progress"]

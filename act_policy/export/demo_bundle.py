"""The seeded demo policy as a deploy bundle, kept in the user's cache between runs.

``act-policy demo --backend cpu_int8`` and ``act-policy benchmark demo`` need the demo exported
to ONNX and calibrated to INT8: minutes of work whose result depends only on the demo's seed,
the number of calibration scenes, and the software that produced it. So the bundle is built once
into ``$XDG_CACHE_HOME/act_policy/demo/<key>/`` (``~/.cache`` when unset), ``key`` being a hash of
exactly those inputs: act_policy's own source files, the torch / onnx / onnxslim / onnxruntime
versions, the seed and the sample count. A changed input is a new key, never a stale bundle.
Bundles are written atomically (see :func:`act_policy.export.export_bundle`) and verified by
sha256 when loaded, so an interrupted or damaged cache entry is rebuilt or refused, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from act_policy.core.dependencies import installed_version
from act_policy.core.errors import CheckpointError
from act_policy.core.synthetic import DEMO_NAME, demo_artifacts
from act_policy.export import export_bundle, stderr_progress
from act_policy.export.bundle import HEAD_INT8_GRAPH, INT8_GRAPH, is_bundle, read_policy_document

if TYPE_CHECKING:  # onnx_export imports torch: a torch-free `benchmark BUNDLE` must not need it
    from act_policy.export.onnx_export import Progress

DEMO_CALIBRATION_SAMPLES = 64
TOOLCHAIN = ("torch", "onnx", "onnxslim", "onnxruntime")


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/act_policy/demo`` (XDG base directory spec; ``~/.cache`` when unset or relative)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "act_policy" / "demo"


@cache
def _source_digest() -> str:
    """sha256 over act_policy's Python sources: any code change (export, model, quantization) is a new key."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_key(seed: int, samples: int) -> str:
    """Folder name of the demo bundle for ``seed`` calibrated on ``samples`` synthetic scenes."""
    inputs = {"seed": seed, "samples": samples, "act_policy": _source_digest(),
              **{name: installed_version(name) for name in TOOLCHAIN}}
    return f"seed{seed}-calib{samples}-" + hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def demo_bundle(backends: Iterable[str], samples: int = DEMO_CALIBRATION_SAMPLES, progress: Progress = stderr_progress,
                seed: int = 0) -> Path:
    """The cached demo bundle, with what ``backends`` need added once: ``act_int8.onnx`` for cpu_int8,
    ``head_int8.onnx`` for hailo (its hybrid path's CPU head). Exports and calibrates only what is missing."""
    from act_policy.export.quantize import quantize_bundle

    folder = cache_root() / cache_key(seed, samples)
    if not is_bundle(folder):
        progress(f"exporting the demo policy into the cache {folder} (once)")
        try:
            export_bundle(demo_artifacts(seed=seed), folder, progress)
        except CheckpointError:
            if not is_bundle(folder):  # another process finishing first is fine; anything else is not
                raise
    files = read_policy_document(folder)["files"]
    backends = set(backends)
    head = "hailo" in backends and HEAD_INT8_GRAPH not in files
    if head or ("cpu_int8" in backends and INT8_GRAPH not in files):
        progress(f"calibrating the cached demo bundle to INT8 on {samples} synthetic scenes (once)")
        quantize_bundle(folder, None, samples, progress, head=head)
    else:
        progress(f"using the cached demo bundle {folder}")
    return folder


# they run exported graphs from a bundle on disk
BUNDLE_BACKENDS = frozenset({"onnx_fp32", "cpu_int8", "hailo", "openvino_fp16", "openvino_fp32"})


def resolve_demo(path: str | Path, backends: Iterable[str], samples: int = DEMO_CALIBRATION_SAMPLES,
                 need_bundle: bool = False) -> str | Path:
    """``path`` unchanged, or for the name ``demo`` (and no such folder) the cached demo bundle when
    ``backends`` run exported graphs or a tool works on bundles (``need_bundle``)."""
    if str(path) != DEMO_NAME or Path(path).exists():
        return path
    backends = list(backends)
    if not need_bundle and not BUNDLE_BACKENDS.intersection(backends):
        return path  # load_artifacts builds the demo in memory
    return demo_bundle(backends, samples)

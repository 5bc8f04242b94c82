"""Benchmark backends on one policy: latency percentiles, speedup and action fidelity vs cpu_fp32.

PATH is a checkpoint, a bundle, or `demo` (the seeded default-size model: one 480x640 camera,
6 joints; exported and calibrated on synthetic scenes into a temporary folder first).
Timed runs are interleaved round-robin across backends, so a change in background load (a
shared machine, thermal throttling on a Pi) affects every backend alike and the speedups stay
comparable. Latency is Policy.predict_chunk (preprocess + network + unnormalize) on held-out
synthetic scenes; fidelity compares each backend's chunks with cpu_fp32's on the same scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from act_policy.backends import BACKENDS, BackendOptions, create_backend
from act_policy.backends.torch_fp32 import build_prepared_model
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError
from act_policy.core.policy import Policy, load_artifacts
from act_policy.core.synthetic import demo_artifacts
from act_policy.export import export_bundle, stderr_progress
from act_policy.export.fidelity import compare, held_out_observations

BASELINE = "cpu_fp32"
DEFAULT_BACKENDS = "cpu_fp32,onnx_fp32,cpu_int8,torch_dynamic_int8"
DEMO = "demo"
DEMO_CALIBRATION_SAMPLES = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help=f"checkpoint or bundle folder, or '{DEMO}'")
    parser.add_argument("--backends", default=DEFAULT_BACKENDS,
                        help=f"comma-separated backend names (default {DEFAULT_BACKENDS}); "
                             f"{BASELINE} is always run as the baseline")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per backend (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="threads per backend (default: cores, max 4)")
    parser.add_argument("--held-out", type=int, default=8, help="observations for the fidelity check (default 8)")
    parser.add_argument("--calib-samples", type=int, default=DEMO_CALIBRATION_SAMPLES,
                        help=f"calibration observations for '{DEMO}' (default {DEMO_CALIBRATION_SAMPLES})")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")


def count_macs(artifacts: PolicyArtifacts) -> int:
    """Multiply-accumulates of one inference of the prepared network (FLOPs / 2, batch 1)."""
    model = build_prepared_model(artifacts)
    spec = artifacts.spec
    images = [torch.zeros(1, *f.shape) for f in spec.cameras]
    vectors = [None if f is None else torch.zeros(1, *f.shape) for f in (spec.state, spec.env_state)]
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(images, *vectors)
    return counter.get_total_flops() // 2


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model"):
                cpu = value.strip()
                break
    import onnxruntime

    return {"cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def time_interleaved(policies: dict[str, Policy], observations: list[dict[str, np.ndarray]], runs: int,
                     warmup: int) -> dict[str, np.ndarray]:
    """Milliseconds of ``predict_chunk`` per backend: ``runs`` rounds, each backend once per round."""
    for name, policy in policies.items():
        stderr_progress(f"{name}: {warmup} warm-up runs")
        for i in range(warmup):
            policy.predict_chunk(observations[i % len(observations)])
    times = {name: np.empty(runs) for name in policies}
    for i in range(runs):
        if i % 10 == 0:
            stderr_progress(f"timed round {i + 1}/{runs}")
        obs = observations[i % len(observations)]
        for name, policy in policies.items():
            start = time.perf_counter()
            policy.predict_chunk(obs)
            times[name][i] = (time.perf_counter() - start) * 1e3
    return times


def prepare_demo(folder: Path, backends: list[str], samples: int) -> Path:
    """Export the seeded default-size model (and calibrate it if cpu_int8 runs) into ``folder``."""
    from act_policy.export.quantize import quantize_bundle

    bundle = export_bundle(demo_artifacts(), folder / "demo_bundle")
    if "cpu_int8" in backends:
        quantize_bundle(bundle, None, samples, stderr_progress)
    return bundle


def run_benchmark(path: str | Path, backends: list[str], runs: int, warmup: int, threads: int | None,
                  held_out: int) -> dict[str, Any]:
    """Measure every backend on ``path``; returns the JSON report."""
    artifacts = load_artifacts(path)
    observations = held_out_observations(artifacts, held_out)
    stderr_progress("counting MACs")
    macs = count_macs(artifacts)
    policies = {}
    for name in backends:
        stderr_progress(f"{name}: loading")
        policies[name] = Policy(artifacts, create_backend(name, artifacts, BackendOptions(num_threads=threads)))
    times = time_interleaved(policies, observations, runs, warmup)
    chunks = {name: [p.predict_chunk(o) for o in observations] for name, p in policies.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, policy in policies.items():
        p50, p95, p99 = np.percentile(times[name], [50, 95, 99])
        results[name] = {
            **policy.describe(),
            "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(times[name].mean()),
            "runs": runs, "warmup": warmup,
            "macs": macs, "gmac_per_s": macs / (p50 * 1e-3) / 1e9,
            "fidelity": compare(chunks[BASELINE], chunks[name], artifacts),
        }
        policy.close()
    for result in results.values():
        result["speedup_vs_cpu_fp32"] = results[BASELINE]["p50_ms"] / result["p50_ms"]
    spec = artifacts.spec
    return {
        "policy": str(path), "cameras": {f.name: list(f.shape) for f in spec.cameras},
        "action_dim": spec.action_dim, "chunk_size": spec.config.chunk_size, "threads": threads,
        "machine": machine_info(), "backends": results, "bars": performance_bars(results),
    }


def performance_bars(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, evaluated where the needed backends ran (None otherwise)."""
    int8, dyn, onnx = (results.get(n) for n in ("cpu_int8", "torch_dynamic_int8", "onnx_fp32"))
    return {
        "cpu_int8_p50_over_cpu_fp32": None if int8 is None else int8["p50_ms"] / results[BASELINE]["p50_ms"],
        "cpu_int8_speedup_over_torch_dynamic_int8": None if int8 is None or dyn is None
        else dyn["p50_ms"] / int8["p50_ms"],
        "cpu_int8_rel_l2": None if int8 is None else int8["fidelity"]["rel_l2"],
        "onnx_fp32_max_abs_normalized": None if onnx is None else onnx["fidelity"]["max_abs_normalized"],
    }


def format_table(report: dict[str, Any]) -> str:
    header = ("backend", "threads", "p50 ms", "p95 ms", "p99 ms", "speedup", "GMAC/s", "max abs", "mean abs",
              "rel L2", "rel L2 norm")
    rows = [header]
    for name, r in report["backends"].items():
        f = r["fidelity"]
        rows.append((name, str(r["threads"]), f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}",
                     f"{r['speedup_vs_cpu_fp32']:.2f}x", f"{r['gmac_per_s']:.1f}", f"{f['max_abs']:.3g}",
                     f"{f['mean_abs']:.3g}", f"{f['rel_l2'] * 100:.2f} %", f"{f['rel_l2_normalized'] * 100:.2f} %"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def summary(report: dict[str, Any]) -> str:
    bars = report["bars"]
    m = report["machine"]
    any_backend = next(iter(report["backends"].values()))
    lines = [f"{m['cpu']} ({m['machine']}, {m['cores']} cores), {report['threads'] or 'default'} threads; "
             f"{any_backend['macs'] / 1e9:.2f} GMAC per inference; errors in action units vs {BASELINE} "
             f"on {any_backend['fidelity']['observations']} held-out scenes"]
    if bars["cpu_int8_p50_over_cpu_fp32"] is not None:
        lines.append(f"cpu_int8: p50 = {bars['cpu_int8_p50_over_cpu_fp32']:.3f} x cpu_fp32 (target <= 0.35), "
                     f"relative L2 {bars['cpu_int8_rel_l2'] * 100:.2f} % (target <= 2 %)")
    if bars["cpu_int8_speedup_over_torch_dynamic_int8"] is not None:
        lines.append(f"cpu_int8 is {bars['cpu_int8_speedup_over_torch_dynamic_int8']:.2f}x faster than "
                     "torch_dynamic_int8 (target >= 2)")
    if bars["onnx_fp32_max_abs_normalized"] is not None:
        lines.append(f"onnx_fp32 max abs difference {bars['onnx_fp32_max_abs_normalized']:.2e} in normalized "
                     "network output (target <= 1e-4)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise BackendError(f"unknown backend(s) {unknown}; available: {', '.join(BACKENDS)}")
    if args.runs < 1 or args.warmup < 0 or args.held_out < 1:
        raise BackendError("--runs and --held-out must be >= 1, --warmup >= 0")
    backends = [BASELINE] + [b for b in backends if b != BASELINE]
    with tempfile.TemporaryDirectory(prefix="act_policy_bench_") as tmp:
        path = Path(args.path)
        if args.path == DEMO:
            path = prepare_demo(Path(tmp), backends, args.calib_samples)
        report = run_benchmark(path, backends, args.runs, args.warmup, args.threads, args.held_out)
    if args.path == DEMO:
        report["policy"] = "demo (seeded default-size ACT, synthetic calibration)"
    print(format_table(report))
    print(summary(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0

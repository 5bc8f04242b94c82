"""Benchmark backends on one policy: latency percentiles, speedup and action fidelity vs cpu_fp32.

PATH is a checkpoint, a bundle, or `demo` (the seeded default-size model: one 480x640 camera,
6 joints; exported and calibrated on synthetic scenes once, into the user's cache).
Timed runs are interleaved round-robin across backends, so a change in background load (a
shared machine, thermal throttling on a Pi) affects every backend alike and the speedups stay
comparable. Latency is Policy.predict_chunk (preprocess + network + unnormalize) on held-out
synthetic scenes; fidelity compares each backend's chunks with cpu_fp32's on the same scenes.
Without torch (a robot install) a bundle is benchmarked against onnx_fp32 instead — its float32
graph, checked against torch at export — with ONNX Runtime backends by default, and the MAC count
recorded at export (a bundle exported before that record says its MACs are unknown).

A backend whose ``describe()`` says ``emulated`` (the hailo backend on the test fake of HailoRT)
is not timed: its latency would be that of a CPU stand-in, not of the device. Its row says
``emulated`` where numbers would be (``null`` plus ``"emulated": true`` in JSON); its fidelity
is real and reported. Backend-specific settings: ``--backend-option BACKEND.KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from act_policy.backends import BACKENDS, BackendOptions, backend_label, create_backend, reference_backend
from act_policy.core.dependencies import available, installed_version
from act_policy.core.errors import BackendError
from act_policy.core.macs import macs_per_inference
from act_policy.core.policy import Policy, load_artifacts
from act_policy.core.synthetic import DEMO_NAME
from act_policy.export import stderr_progress
from act_policy.export.demo_bundle import DEMO_CALIBRATION_SAMPLES, resolve_demo
from act_policy.export.fidelity import NORMALIZED_UNIT, compare, held_out_observations, summary_line
from act_policy.tools.options import add_backend_option_argument, parse_backend_options

BASELINE = "cpu_fp32"
DEFAULT_BACKENDS = "cpu_fp32,onnx_fp32,cpu_int8,torch_dynamic_int8"
TORCH_FREE_BACKENDS = "onnx_fp32,cpu_int8"  # the default without torch
EMULATED = "emulated"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help=f"checkpoint or bundle folder, or '{DEMO_NAME}'")
    parser.add_argument("--backends", default=None,
                        help=f"comma-separated backend names (default {DEFAULT_BACKENDS}; without torch "
                             f"{TORCH_FREE_BACKENDS}); {BASELINE} (without torch: onnx_fp32) always runs as the "
                             "baseline")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per backend (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="threads per backend (default: cores, max 4)")
    parser.add_argument("--held-out", type=int, default=8, help="observations for the fidelity check (default 8)")
    parser.add_argument("--calib-samples", type=int, default=DEMO_CALIBRATION_SAMPLES,
                        help=f"calibration observations for '{DEMO_NAME}' (default {DEMO_CALIBRATION_SAMPLES})")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    add_backend_option_argument(parser)


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
            "torch": installed_version("torch"), "onnxruntime": onnxruntime.__version__}


def load_average() -> float | None:
    """The 1-minute load average (runnable threads, ours included), or None where the OS has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def busy_warning(loads: list[float | None], cores: int | None) -> str | None:
    """A warning when the machine was oversubscribed while timing (1-min load above its core count).

    Then backends compete with other work for cores, and a thread pool that waits for all its
    threads (torch's) slows down far more than one that does not: speedups measured then do not
    reproduce on an idle machine.
    """
    known = [x for x in loads if x is not None]
    if not known or not cores or max(known) <= cores:
        return None
    return (f"the machine was busy while timing: 1-min load average up to {max(known):.2f} on {cores} cores; "
            "latencies and speedups are not those of an idle machine, re-run when it is idle")


def torch_threads() -> int | None:
    """The threads torch really runs with (a process-wide setting); None without torch."""
    if not available("torch"):
        return None
    import torch

    return torch.get_num_threads()


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


def run_benchmark(path: str | Path, backends: list[str], runs: int, warmup: int, threads: int | None,
                  held_out: int, backend_options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Measure every backend on ``path`` against ``backends[0]`` (the baseline); returns the JSON report."""
    baseline = backends[0]
    artifacts = load_artifacts(path)
    observations = held_out_observations(artifacts, held_out)
    mac_count = macs_per_inference(artifacts, stderr_progress)
    macs = mac_count.macs
    policies = {}
    for name in backends:
        stderr_progress(f"{name}: loading")
        options = BackendOptions(num_threads=threads, extra=(backend_options or {}).get(name, {}))
        policies[name] = Policy(artifacts, create_backend(name, artifacts, options))
    emulated = {name for name, p in policies.items() if p.describe().get(EMULATED)}
    for name in sorted(emulated):
        stderr_progress(f"{name}: emulated (a stand-in for the device): fidelity only, no timing")
    load_before = load_average()
    times = time_interleaved({n: p for n, p in policies.items() if n not in emulated}, observations, runs, warmup)
    timing_load = {"load_average_1min_before": load_before, "load_average_1min_after": load_average(),
                   "torch_threads": torch_threads()}  # what torch really ran with (a global setting)
    chunks = {name: [p.predict_chunk(o) for o in observations] for name, p in policies.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, policy in policies.items():
        timed = name not in emulated
        results[name] = {**policy.describe(), EMULATED: not timed, "runs": runs if timed else 0,
                         "warmup": warmup if timed else 0,
                         "macs": macs, **_timing(times.get(name), macs),
                         "fidelity": compare(chunks[baseline], chunks[name], artifacts)}
        policy.close()
    for result in results.values():
        p50 = result["p50_ms"]
        result[f"speedup_vs_{baseline}"] = None if p50 is None else results[baseline]["p50_ms"] / p50
    spec = artifacts.spec
    machine = {**machine_info(), **timing_load}
    warning = busy_warning([timing_load["load_average_1min_before"], timing_load["load_average_1min_after"]],
                           machine["cores"])
    return {
        "policy": str(path), "cameras": {f.name: list(f.shape) for f in spec.cameras},
        "action_dim": spec.action_dim, "chunk_size": spec.config.chunk_size, "threads": threads,
        "machine": machine, "busy_warning": warning, "macs_source": mac_count.source, "baseline": baseline,
        "backends": results, "bars": performance_bars(results),
    }


def _timing(times: np.ndarray | None, macs: int | None) -> dict[str, float | None]:
    """Latency fields of one backend; all None when it was not timed (emulated)."""
    if times is None:
        return dict.fromkeys(("p50_ms", "p95_ms", "p99_ms", "mean_ms", "gmac_per_s"))
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(times.mean()),
            "gmac_per_s": None if macs is None else macs / (p50 * 1e-3) / 1e9}


def performance_bars(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, evaluated where the needed backends ran and were timed (None otherwise)."""
    int8, dyn, onnx = (results.get(n) for n in ("cpu_int8", "torch_dynamic_int8", "onnx_fp32"))
    timed_int8 = int8 is not None and not int8[EMULATED]
    return {
        "cpu_int8_p50_over_cpu_fp32": int8["p50_ms"] / results[BASELINE]["p50_ms"]
        if timed_int8 and BASELINE in results else None,
        "cpu_int8_speedup_over_torch_dynamic_int8": dyn["p50_ms"] / int8["p50_ms"]
        if timed_int8 and dyn is not None and not dyn[EMULATED] else None,
        "cpu_int8_rel_l2": None if int8 is None else int8["fidelity"]["rel_l2"],
        "cpu_int8_rel_l2_normalized": None if int8 is None else int8["fidelity"]["rel_l2_normalized"],
        "cpu_int8_max_abs_bias_normalized": None if int8 is None else int8["fidelity"]["max_abs_bias_normalized"],
        "onnx_fp32_max_abs_normalized": None if onnx is None or BASELINE not in results
        else onnx["fidelity"]["max_abs_normalized"],
    }


def row_label(name: str, result: dict[str, Any]) -> str:
    """The backend's name, marked when its numbers are not the device's own (emulated, or a fallback)."""
    if result[EMULATED]:
        return f"{name} ({EMULATED})"
    return backend_label({**result, "backend": name})


def _cell(value: float | None, spec: str, suffix: str = "", missing: str = EMULATED) -> str:
    return missing if value is None else f"{value:{spec}}{suffix}"


def format_table(report: dict[str, Any]) -> str:
    header = ("backend", "threads", "p50 ms", "p95 ms", "p99 ms", "speedup", "GMAC/s", "rel L2 norm",
              "max abs bias σ", "max abs σ", "rel L2")
    rows = [header]
    for name, r in report["backends"].items():
        f = r["fidelity"]
        rows.append((row_label(name, r), str(r["threads"]), _cell(r["p50_ms"], ".1f"), _cell(r["p95_ms"], ".1f"),
                     _cell(r["p99_ms"], ".1f"), _cell(r[f"speedup_vs_{report['baseline']}"], ".2f", "x"),
                     _cell(r["gmac_per_s"], ".1f", missing=EMULATED if r[EMULATED] else "-"),
                     f"{f['rel_l2_normalized'] * 100:.2f} %", f"{f['max_abs_bias_normalized']:.3f}",
                     f"{f['max_abs_normalized']:.3g}", f"{f['rel_l2'] * 100:.2f} %"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def summary(report: dict[str, Any]) -> str:
    bars = report["bars"]
    m = report["machine"]
    any_backend = next(iter(report["backends"].values()))
    macs = f"MACs {report['macs_source']}" if any_backend["macs"] is None else \
        f"{any_backend['macs'] / 1e9:.2f} GMAC per inference ({report['macs_source']})"
    load = "/".join("?" if m[k] is None else f"{m[k]:.2f}" for k in ("load_average_1min_before",
                                                                     "load_average_1min_after"))
    lines = [f"{m['cpu']} ({m['machine']}, {m['cores']} cores), threads per backend as in the table (torch ran "
             f"{m['torch_threads'] or 'not at all'}); 1-min load average {load} before/after timing; "
             f"{macs}; errors vs {report['baseline']} on {any_backend['fidelity']['observations']} held-out "
             f"scenes in {NORMALIZED_UNIT}, per joint: bias = mean error; the last column, rel L2, is in "
             "action units"]
    if report["busy_warning"]:
        lines.append("WARNING: " + report["busy_warning"])
    if bars["cpu_int8_p50_over_cpu_fp32"] is not None:
        lines.append(f"cpu_int8: p50 = {bars['cpu_int8_p50_over_cpu_fp32']:.3f} x cpu_fp32 (target <= 0.35)")
    if bars["cpu_int8_rel_l2_normalized"] is not None:
        lines.append(f"cpu_int8: relative L2 {bars['cpu_int8_rel_l2_normalized'] * 100:.2f} % normalized "
                     f"(target <= 1 %), max per-joint |bias| {bars['cpu_int8_max_abs_bias_normalized']:.3f} σ "
                     f"(target <= 0.03), {bars['cpu_int8_rel_l2'] * 100:.2f} % in action units")
    if bars["cpu_int8_speedup_over_torch_dynamic_int8"] is not None:
        lines.append(f"cpu_int8 is {bars['cpu_int8_speedup_over_torch_dynamic_int8']:.2f}x faster than "
                     "torch_dynamic_int8 (target >= 2)")
    for name, r in report["backends"].items():
        if r[EMULATED]:
            lines.append(f"{name}: EMULATED (a stand-in for the device runtime, e.g. the test fake of HailoRT): "
                         f"fidelity only, {summary_line(r['fidelity'])}; no latency is given")
    if bars["onnx_fp32_max_abs_normalized"] is not None:
        lines.append(f"onnx_fp32 max abs difference {bars['onnx_fp32_max_abs_normalized']:.2e} in normalized "
                     "network output (target <= 1e-4)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    baseline = reference_backend()
    requested = args.backends or (DEFAULT_BACKENDS if baseline == BASELINE else TORCH_FREE_BACKENDS)
    backends = [b.strip() for b in requested.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise BackendError(f"unknown backend(s) {unknown}; available: {', '.join(BACKENDS)}")
    if args.runs < 1 or args.warmup < 0 or args.held_out < 1:
        raise BackendError("--runs and --held-out must be >= 1, --warmup >= 0")
    backends = [baseline] + [b for b in backends if b != baseline]
    options = parse_backend_options(args.backend_option, backends)
    path = resolve_demo(args.path, backends, args.calib_samples, need_bundle=True)
    report = run_benchmark(path, backends, args.runs, args.warmup, args.threads, args.held_out, options)
    if args.path == DEMO_NAME:
        report["policy"] = "demo (seeded default-size ACT, synthetic calibration)"
    print(format_table(report))
    print(summary(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0

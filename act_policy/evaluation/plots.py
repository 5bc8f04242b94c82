"""Pictures and a markdown summary of a replay, for deciding whether a backend is fit for the arm.

Writes into one folder: ``trajectories_<backend>.png`` (per joint: recorded vs predicted,
with ``cpu_fp32`` for comparison), ``latency.png`` (histogram per backend against the
control-rate budget), ``error_over_time.png`` and ``report.md`` that links them under a
numbers table. matplotlib runs on the Agg backend, so no display is needed (a Pi over SSH).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from act_policy.core.dependencies import require
from act_policy.evaluation.replay import BackendRun, ReplayResult

DPI = 90


def _save(fig, path: Path) -> None:
    """Lay out, write and free a figure (pyplot keeps every open figure alive otherwise)."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)


def _pyplot():
    require("matplotlib", "replay plots").use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_trajectories(result: ReplayResult, run: BackendRun, path: Path) -> Path:
    """One subplot per joint: recorded actions, the reference's and this backend's predictions."""
    plt = _pyplot()
    t = result.episode.timestamps
    names = result.joint_names
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), sharex=True, squeeze=False)
    reference = result.runs[0]
    for j, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
        if result.episode.actions is not None:
            ax.plot(t, result.episode.actions[:, j], color="black", lw=1.6, label="recorded")
        if run is not reference:
            ax.plot(t, reference.actions[:, j], color="tab:blue", lw=1.0, ls="--", label=result.reference)
        ax.plot(t, run.actions[:, j], color="tab:orange", lw=1.1, label=run.backend)
        ax.vlines(t[run.inference_steps], 0, 0.04, transform=ax.get_xaxis_transform(), color="tab:gray", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{run.backend}: predicted vs recorded actions (open loop; ticks = inferences)", fontsize=10)
    _save(fig, path)
    return path


def plot_latency(result: ReplayResult, path: Path) -> Path:
    """End-to-end latency histogram per timed backend (not emulated ones), with p50, p95 and the budget."""
    plt = _pyplot()
    timed = [run for run in result.runs if run.rate is not None]
    fig, axes = plt.subplots(len(timed), 1, figsize=(7, 1.9 * len(timed) + 0.6), squeeze=False)
    for ax, run in zip(axes[:, 0], timed, strict=True):
        s, check = run.latency, run.rate
        ax.hist(run.total_ms, bins=30, color="tab:green" if check.met else "tab:red", alpha=0.8)
        for value, style, label in ((s.p50, ":", f"p50 {s.p50:.1f} ms"), (s.p95, "--", f"p95 {s.p95:.1f} ms"),
                                    (check.budget_ms, "-", f"budget {check.budget_ms:.1f} ms")):
            ax.axvline(value, color="black", ls=style, lw=1, label=label)
        verdict = "meets" if check.met else "misses"
        ax.set_title(f"{run.backend}: {verdict} {check.rate_hz:g} Hz (n={run.total_ms.size} inferences)",
                     fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("pre-process + inference + post-process (ms)", fontsize=8)
    _save(fig, path)
    return path


def plot_errors(result: ReplayResult, path: Path) -> Path | None:
    """Mean absolute action error over joints, per step: vs recorded and vs the reference (None: nothing to plot)."""
    panels = [("vs recorded actions", "vs_recorded"), (f"vs {result.reference}", "vs_reference")]
    panels = [(title, attr) for title, attr in panels if any(getattr(r, attr) is not None for r in result.runs)]
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels) + 0.4), sharex=True, squeeze=False)
    t = result.episode.timestamps
    for ax, (title, attr) in zip(axes[:, 0], panels, strict=True):
        for i, run in enumerate(result.runs):  # one colour per backend in both panels
            errors = getattr(run, attr)
            if errors is not None:
                ax.plot(t, errors.per_step, lw=1, color=f"C{i}", label=run.backend)
        ax.set_title(f"mean |action error| over joints, {title}", fontsize=9)
        ax.set_ylabel("action units", fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    _save(fig, path)
    return path


def _fmt(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4g}"


def markdown_report(result: ReplayResult, images: dict[str, str], command: str | None = None) -> str:
    """The summary table, per-joint errors and links to the images (paths relative to the report)."""
    ep = result.episode
    lines = [f"# Replay: {ep.source}, episode {ep.index}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [f"{len(ep)} steps at {ep.fps:g} fps. " + " ".join(ep.notes), "",
              "Open loop: the policy sees the recorded observations; errors are absolute, in action units.",
              "Latency is pre-process + inference + post-process. Rate criterion (the node's async schedule): "
              "p95 latency < min(m, n, C − ceil(p95/T))·T with T the control period, C the chunk size, n actions "
              "per chunk, m the refill threshold (one period with temporal ensembling).", "",
              f"| backend | vs recorded mean / max | vs {result.reference} mean / max | latency p50 / p95 / max (ms) "
              "| budget (ms) | rate | max rate (Hz) |",
              "|---|---|---|---|---|---|---|"]
    for run in result.runs:
        rec, ref, s, c = run.vs_recorded, run.vs_reference, run.latency, run.rate
        errors = (f"| {run.backend} | {_fmt(rec.mean.mean()) if rec else '–'} / {_fmt(rec.max.max()) if rec else '–'} "
                  f"| {_fmt(ref.mean.mean()) if ref else '–'} / {_fmt(ref.max.max()) if ref else '–'} ")
        if c is None:  # a stand-in runtime: its latency is not the device's
            lines.append(f"{errors}| emulated | emulated | emulated | emulated |")
            continue
        lines.append(
            f"{errors}| {s.p50:.1f} / {s.p95:.1f} / {s.max:.1f} | {c.budget_ms:.1f} "
            f"| {'met' if c.met else 'MISSED'} at {c.rate_hz:g} Hz (n={c.n_action_steps}, m={c.refill_threshold}) "
            f"| {c.max_rate_hz:.1f} |")
    headers = [f"{r.backend} vs recorded" for r in result.runs if r.vs_recorded]
    headers += [f"{r.backend} vs {result.reference}" for r in result.runs if r.vs_reference]
    lines += ["", "## Per joint (mean / max absolute error)", "",
              "| joint | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]
    for j, name in enumerate(result.joint_names):
        cells = [f"{_fmt(e.mean[j])} / {_fmt(e.max[j])}" for r in result.runs for e in (r.vs_recorded,) if e]
        cells += [f"{_fmt(e.mean[j])} / {_fmt(e.max[j])}" for r in result.runs for e in (r.vs_reference,) if e]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Plots", ""]
    lines += [f"![{title}]({image})" for title, image in images.items()]
    return "\n".join(lines) + "\n"


def write_report(result: ReplayResult, out: Path, command: str | None = None) -> Path:
    """All plots plus ``report.md`` in ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    images = {f"{run.backend} trajectories": plot_trajectories(result, run, out / f"trajectories_{run.backend}.png")
              for run in result.runs}
    images["latency"] = plot_latency(result, out / "latency.png")
    errors = plot_errors(result, out / "error_over_time.png")
    if errors is not None:
        images["error over time"] = errors
    report = out / "report.md"
    report.write_text(markdown_report(result, {k: p.name for k, p in images.items()}, command))
    return report

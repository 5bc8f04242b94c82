"""Replaying an episode through the node's schedule with a simulated inference latency.

``replay`` runs ``Policy.select_action`` (LeRobot's synchronous timing, the arm never waits in
the numbers). This module asks what the node would command instead: the same
:class:`~act_policy.runtime.realtime.ActionSchedule` the node runs, fed by a simulated worker
whose inference takes ``latency_ms`` — deterministic, on a simulated clock, so the numbers do
not depend on the machine. It mirrors one :meth:`ControlLoop.tick` per step:

1. a chunk requested at step ``s`` arrives at step ``s + k``, ``k = max(1, ceil(latency / T))``
   with ``T`` the control period (the loop takes results at the start of a tick, so never the
   same tick), and is offered to the schedule (rows for passed steps are skipped);
2. if the schedule wants a chunk and none is in flight, the observation of this step is sent;
3. the schedule's action for this step is the command; without one the arm holds (the last
   command is repeated) and the step counts as *starved*.

Per schedule this reports the error of the commands against the recorded actions (steps with a
command), the command discontinuity at chunk switches vs within chunks and the influence lag
(:mod:`act_policy.core.smoothness`). Commands are in the policy's action units: the node's
``/diagnostics`` reports the same quantities in ROS units (``joint_scale``/``joint_offset``).
The network runs once per distinct observation step that some schedule requested.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from act_policy.core.diagnostics import Summary, summarize
from act_policy.core.errors import SettingError
from act_policy.core.policy import Policy
from act_policy.core.scheduling import AGGREGATIONS
from act_policy.core.smoothness import CommandSmoothness, JointSteps
from act_policy.data.episode import Episode
from act_policy.evaluation.replay import JointErrors
from act_policy.runtime.realtime import ActionSchedule

ChunkSource = Callable[[int], np.ndarray]  # observation step -> chunk (chunk_size, A) in action units
ENSEMBLE = "temporal_ensemble"


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule to simulate: ``aggregation`` in async mode, or ``temporal_ensemble``."""

    aggregation: str
    latency_ms: float
    blend_steps: int = 0

    @property
    def label(self) -> str:
        if self.aggregation == "blend":
            return f"blend ({self.blend_steps} steps)"
        return self.aggregation


@dataclass
class ScheduleRun:
    """What the node would have commanded over the episode with one schedule and latency."""

    spec: ScheduleSpec
    delay_steps: int
    commands: np.ndarray  # (T, A); NaN before the first command
    requests: list[int]  # observation steps sent to inference
    starved: int  # steps without an action (held, or nothing to hold before the first command)
    switch: JointSteps  # |Δcommand| at steps where a newly arrived chunk acted first
    within: JointSteps  # |Δcommand| at all other steps
    lag: Summary  # influence lag in steps, over chunks
    arrival: Summary  # steps from observation to arrival, over chunks
    vs_recorded: JointErrors | None = None

    def as_dict(self, names: Sequence[str]) -> dict[str, Any]:
        return {"aggregation": self.spec.aggregation, "blend_steps": self.spec.blend_steps,
                "latency_ms": self.spec.latency_ms, "delay_steps": self.delay_steps,
                "inferences": len(self.requests), "starved_steps": self.starved,
                "switch_steps": self.switch.as_dict(names), "within_chunk_steps": self.within.as_dict(names),
                "influence_lag_steps": self.lag.as_dict(),
                "arrival_delay_steps": self.arrival.as_dict(),
                "error_vs_recorded": self.vs_recorded.as_dict(names) if self.vs_recorded else None}


def delay_steps(latency_ms: float, rate_hz: float) -> int:
    """Ticks from a request to the tick that picks its chunk up (at least the next one)."""
    if latency_ms < 0 or rate_hz <= 0:
        raise SettingError(f"latency must be >= 0 ms and the rate positive, got {latency_ms} ms at {rate_hz} Hz")
    return max(1, math.ceil(latency_ms * rate_hz / 1e3 - 1e-9))


def simulate(chunks: ChunkSource, steps: int, spec: ScheduleSpec, *, rate_hz: float, chunk_size: int,
             action_dim: int, n_action_steps: int, refill_threshold: int, coeff: float,
             recorded: np.ndarray | None = None) -> ScheduleRun:
    """Run the node's schedule for ``steps`` control steps on a simulated clock (see module docstring)."""
    ensemble = spec.aggregation == ENSEMBLE
    schedule = ActionSchedule(ENSEMBLE if ensemble else "async", chunk_size, 1 if ensemble else n_action_steps,
                              refill_threshold, coeff, "latest" if ensemble else spec.aggregation, spec.blend_steps)
    k = delay_steps(spec.latency_ms, rate_hz)
    smooth = CommandSmoothness(window=None)
    commands = np.full((steps, action_dim), np.nan)
    requests: list[int] = []
    in_flight: int | None = None  # observation step of the chunk being computed
    last: np.ndarray | None = None
    starved = 0
    for step in range(steps):
        switch = False
        if in_flight is not None and step >= in_flight + k:
            switch = schedule.offer(chunks(in_flight), in_flight, step) is not None
            in_flight = None
        if schedule.needs_inference() and in_flight is None:
            in_flight = step
            requests.append(step)
        action = schedule.next_action(step)
        if action is None:
            starved += 1
        else:
            last = np.asarray(action, np.float64)
        if last is not None:
            smooth.add(step, last, switch and action is not None)
            commands[step] = last
    schedule.lag.finish()
    switch_steps, within_steps = smooth.summary()
    if not switch_steps.count + within_steps.count:  # fewer than two commands: nothing to difference
        switch_steps = within_steps = JointSteps.of([], action_dim)
    run = ScheduleRun(spec, k, commands, requests, starved, switch_steps, within_steps, schedule.lag.summary(),
                      summarize(list(schedule.lag.arrivals)))
    commanded = ~np.isnan(commands).any(1)
    if recorded is not None and commanded.any():
        run.vs_recorded = JointErrors.between(commands[commanded], recorded[commanded])
    return run


def default_specs(latencies_ms: Sequence[float], blend_steps: int) -> list[ScheduleSpec]:
    """Every aggregation in async mode, plus temporal ensembling, at every latency."""
    return [ScheduleSpec(a, float(lat), blend_steps if a == "blend" else 0)
            for lat in latencies_ms for a in (*AGGREGATIONS, ENSEMBLE)]


@dataclass
class ScheduleComparison:
    episode: Episode
    joint_names: tuple[str, ...]
    rate_hz: float
    chunk_size: int
    n_action_steps: int
    refill_threshold: int
    coeff: float
    runs: list[ScheduleRun]
    inferences: int  # distinct observations run through the network

    def as_dict(self) -> dict[str, Any]:
        return {"rate_hz": self.rate_hz, "chunk_size": self.chunk_size, "n_action_steps": self.n_action_steps,
                "refill_threshold": self.refill_threshold, "temporal_ensemble_coeff": self.coeff,
                "network_runs": self.inferences, "runs": [r.as_dict(self.joint_names) for r in self.runs]}


def compare_schedules(policy: Policy, episode: Episode, latencies_ms: Sequence[float], *,
                      n_action_steps: int | None = None, refill_threshold: int | None = None,
                      coeff: float | None = None, blend_steps: int = 10,
                      joint_names: Sequence[str] | None = None) -> ScheduleComparison:
    """Simulate every schedule of :func:`default_specs` over ``episode`` with ``policy``'s chunks.

    The control rate is the episode's step rate (a dataset's fps, a bag's sampling rate).
    ``n_action_steps`` defaults to the checkpoint's, ``refill_threshold`` to half of it (the node's
    ``-1``), ``coeff`` to the checkpoint's temporal-ensembling coefficient or ACT's 0.01. The
    schedules are first run on placeholder chunks to learn which observation steps they request
    (request times do not depend on the actions), then the network runs once per distinct step,
    in one pass over the episode, and the schedules run again on the real chunks.
    """
    config = policy.spec.config
    rate = episode.fps
    n = n_action_steps or config.n_action_steps
    m = n // 2 if refill_threshold is None else refill_threshold
    coeff = config.temporal_ensemble_coeff if coeff is None else coeff
    ensemble_coeff = 0.01 if coeff is None else coeff
    if not 0 <= m < n <= config.chunk_size:
        raise SettingError(f"async needs 0 <= refill threshold < n_action_steps <= chunk_size={config.chunk_size}, "
                         f"got {m} and {n} (a checkpoint trained with temporal ensembling has n_action_steps 1: "
                         "pass --n-action-steps)")
    specs = default_specs(latencies_ms, blend_steps)
    settings = dict(rate_hz=rate, chunk_size=policy.chunk_size, action_dim=policy.action_dim, n_action_steps=n,
                    refill_threshold=m, coeff=ensemble_coeff)
    placeholder = np.zeros((policy.chunk_size, policy.action_dim), np.float32)
    needed = sorted({s for spec in specs for s in simulate(lambda _: placeholder, len(episode), spec,
                                                           **settings).requests})
    wanted, chunks = set(needed), {}
    for step, obs in enumerate(episode.observations()):
        if step in wanted:
            chunks[step] = policy.predict_chunk(obs)
        if len(chunks) == len(wanted):
            break
    runs = [simulate(chunks.__getitem__, len(episode), spec, recorded=episode.actions, **settings) for spec in specs]
    names = tuple(joint_names) if joint_names else tuple(f"joint_{i}" for i in range(policy.action_dim))
    return ScheduleComparison(episode, names, rate, policy.chunk_size, n, m, ensemble_coeff, runs, len(chunks))


def _num(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3g}"


def markdown_table(result: ScheduleComparison) -> str:
    """One row per schedule and latency: error, discontinuity at switches vs within chunks, lag, starvation."""
    lines = [f"Simulated latency on a simulated clock at {result.rate_hz:g} Hz; chunk {result.chunk_size}, "
             f"n_action_steps {result.n_action_steps}, refill threshold {result.refill_threshold}, "
             f"coefficient {result.coeff:g}; {result.inferences} network runs. |Δ| = |command change per step|, "
             "max over joints of each joint's statistic, action units.", "",
             "| latency (ms) | schedule | error vs recorded mean / max | switch |Δ| p95 / max "
             "| within-chunk |Δ| p95 / max | influence lag (steps) p50 / max | starved steps |",
             "|---|---|---|---|---|---|---|"]
    for r in result.runs:
        err = r.vs_recorded
        error = f"{_num(err.mean.mean())} / {_num(err.max.max())}" if err else "–"
        lag = f"{_num(r.lag.p50)} / {_num(r.lag.max)}"
        switch, within = r.switch.worst(), r.within.worst()
        lines.append(f"| {r.spec.latency_ms:g} (k={r.delay_steps}) | {r.spec.label} | {error} "
                     f"| {_num(switch[0])} / {_num(switch[1])} | {_num(within[0])} / {_num(within[1])} | {lag} "
                     f"| {r.starved} |")
    return "\n".join(lines) + "\n"


def plot_comparison(result: ScheduleComparison, path: Path, joint: int | None = None) -> Path:
    """Per latency: the commands of every schedule for one joint over the recorded action (chunk arrivals ticked)."""
    from act_policy.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    latencies = sorted({r.spec.latency_ms for r in result.runs})
    if joint is None:  # the joint that moves most in the recording makes the switches visible
        reference = result.episode.actions if result.episode.actions is not None else result.runs[0].commands
        joint = int(np.nanargmax(np.nanstd(reference, axis=0)))
    fig, axes = plt.subplots(len(latencies), 1, figsize=(8, 2.6 * len(latencies) + 0.4), sharex=True, squeeze=False)
    t = np.arange(len(result.episode))
    for ax, latency in zip(axes[:, 0], latencies, strict=True):
        if result.episode.actions is not None:
            ax.plot(t, result.episode.actions[:, joint], color="black", lw=1.6, label="recorded")
        for i, run in enumerate(r for r in result.runs if r.spec.latency_ms == latency):
            ax.plot(t, run.commands[:, joint], lw=1.0, color=f"C{i}", label=run.spec.label)
            if i == 0:
                arrivals = [s + run.delay_steps for s in run.requests if s + run.delay_steps < len(t)]
                ax.vlines(arrivals, 0, 0.05, transform=ax.get_xaxis_transform(), color="tab:gray", lw=0.8)
        ax.set_title(f"{result.joint_names[joint]}, simulated latency {latency:g} ms "
                     f"(ticks: async chunk arrivals)", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, ncol=3, loc="best")
    axes[-1, 0].set_xlabel(f"control step (1/{result.rate_hz:g} s)", fontsize=8)
    _save(fig, path)
    return path

"""Diagnostics math for the node: rolling statistics, and the OK / WARN / ERROR decision.

Built on :mod:`act_policy.core.diagnostics` (RollingWindow, RateMeter, summarize); the ROS
adapter only copies :class:`Report` into a ``diagnostic_msgs/DiagnosticStatus``. Problems
are judged over the interval since the previous report, so an episode of starvation an hour
ago does not keep the status at WARN forever.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from act_policy.core.diagnostics import RateMeter, RollingWindow, summarize
from act_policy.core.smoothness import CommandSmoothness
from act_policy.runtime.realtime import ChunkResult, ControlLoop
from act_policy.runtime.safety import Hold


class Level(IntEnum):
    """Values of diagnostic_msgs/DiagnosticStatus (sent as a single byte in rclpy)."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class Report:
    level: Level
    message: str
    values: list[tuple[str, str]]


STAGES = ("convert", "preprocess", "inference", "postprocess", "total")


class HealthMonitor:
    """Rolling latency windows, control-loop period and input rates, fed by the node."""

    def __init__(self, window: int = 200) -> None:
        self.stages = {name: RollingWindow(window) for name in STAGES}
        self.observation_age = RollingWindow(window)
        self.ticks = RateMeter(window)
        self.inputs: dict[str, RateMeter] = {}
        self.input_delay = RollingWindow(window)  # ms from the middleware receiving a message to its callback
        self.late_inputs = 0  # callbacks that ran more than one control period after their message arrived
        self.overruns = 0  # ticks whose callback took longer than the period
        self.smoothness = CommandSmoothness(window)  # |Δcommand| per joint at chunk switches vs within chunks
        self.last_tick_ms = 0.0
        self._previous: dict[str, int] = {}

    def on_tick(self, started: float, finished: float, period_s: float) -> None:
        self.ticks.tick(started)
        self.last_tick_ms = (finished - started) * 1e3
        if finished - started > period_s:
            self.overruns += 1

    def on_command(self, step: int, command: np.ndarray, switch: bool) -> None:
        """A command sent at ``step`` (ROS units); ``switch`` when a newly arrived chunk set it first."""
        self.smoothness.add(step, command, switch)

    def on_input(self, source: str, now: float, delay_s: float = 0.0, late_after_s: float = math.inf) -> None:
        """A message of ``source`` handled at ``now``, ``delay_s`` after the middleware received it."""
        self.inputs.setdefault(source, RateMeter(50)).tick(now)
        self.input_delay.add(delay_s * 1e3)
        if delay_s > late_after_s:
            self.late_inputs += 1

    def on_chunk(self, result: ChunkResult) -> None:
        if result.chunk is None:
            return
        t = result.times
        for name, value in zip(STAGES, (result.convert_ms, t.preprocess_ms, t.inference_ms, t.postprocess_ms,
                                        result.total_ms), strict=True):
            self.stages[name].add(value)
        self.observation_age.add(result.job.observation_age_ms)

    def since_last_report(self, counters: Mapping[str, int]) -> dict[str, int]:
        """How much each counter grew since the previous call."""
        deltas = {k: v - self._previous.get(k, 0) for k, v in counters.items()}
        self._previous = dict(counters)
        return deltas


class HoldLog:
    """Which control-loop states the node logs, one line per change, not per tick.

    A line when the reason for holding changes, or what it is about (e.g. which input went stale): the
    numbers in a detail (ages) change every tick and would flood /rosout at the control rate, so they do not
    count as a change. Not logged: a momentarily empty queue (STARVED; /diagnostics counts it), and the
    lifecycle's own hold (INACTIVE): the transitions say it themselves, in the order they happen
    ("configured: ...; inactive until ... activate", "inactive: holding ..."), while the control thread,
    started during configure, would say it before configure's summary. The state is still remembered, so
    activating logs what follows.
    """

    def __init__(self) -> None:
        self._last: tuple[Hold | None, str] | None = None  # the last state seen, numbers blanked; (None, "") commanding

    def line(self, hold: Hold | None, detail: str = "") -> tuple[Level, str] | None:
        """The line to log for a tick that held for ``hold`` (None: it commanded), or None: nothing new.

        ``Level.OK`` for commanding and for holds the operator asked for (``enabled`` false): news, not a
        warning; ``Level.WARN`` for the others."""
        if hold is Hold.STARVED:
            return None
        key = (hold, re.sub(r"\d+(\.\d+)?", "#", detail))
        if key == self._last:
            return None
        self._last = key
        if hold is None:
            return Level.OK, "commanding"
        if hold is Hold.INACTIVE:
            return None
        text = f"holding: {hold.value}" + (f" ({detail})" if detail else "")
        return (Level.OK if hold.requested else Level.WARN), text


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def assess(loop: ControlLoop, monitor: HealthMonitor, *, backend: str, control_rate_hz: float,
           recorder_info: str = "off", backend_warning: str | None = None, missed_ticks: int = 0,
           schedule_info: Sequence[tuple[str, str]] = ()) -> Report:
    """The node's diagnostic status: the level, a one-line message and key-values."""
    period_ms = 1e3 / control_rate_hz
    schedule, guard, c = loop.schedule, loop.guard, loop.counters
    counters = {"starved": c.holds.get(Hold.STARVED.name, 0), "gaps": schedule.ensemble_gaps,
                "stale_chunks": schedule.stale_chunks, "overruns": monitor.overruns,
                "late_inputs": monitor.late_inputs, "missed_ticks": missed_ticks,
                "clamps": guard.clamp_count, "rejected": guard.rejected_count,
                "backend_failures": c.backend_failures, "observation_errors": c.observation_errors}
    recent = monitor.since_last_report(counters)
    inference = monitor.stages["total"].summary()
    ages = loop.cache.ages_ms()

    level, message = Level.OK, "commanding"
    warnings: list[str] = [backend_warning] if backend_warning else []
    margin_ms = schedule.refill_threshold * period_ms
    if recent["starved"] and recent["missed_ticks"] and not inference.p95 >= margin_ms:
        # skipped ticks use up their actions too: a stall, which a larger margin would not fix
        warnings.append(f"queue ran dry for {recent['starved']} ticks after skipped control ticks used up its "
                        f"actions (inference p95 {_ms(inference.p95)} ms is within the refill margin, "
                        f"{margin_ms:.0f} ms)")
    elif recent["starved"]:
        warnings.append(f"queue ran dry for {recent['starved']} ticks: inference (p95 {_ms(inference.p95)} ms) "
                        f"is slower than the refill margin ({margin_ms:.0f} ms); raise refill_threshold or lower "
                        f"control_rate_hz")
    if recent["gaps"]:
        warnings.append(f"temporal ensembling can't keep up: {recent['gaps']} ticks without a fresh chunk "
                        f"(inference p95 {_ms(inference.p95)} ms vs period {period_ms:.1f} ms); use async mode")
    if recent["stale_chunks"]:  # the arm holds: if every chunk is this late, it never moves again
        window_ms = schedule.chunk_size * period_ms
        warnings.append(f"{recent['stale_chunks']} chunks arrived after all their actions were due: inference "
                        f"(p95 {_ms(inference.p95)} ms) took longer than a chunk lasts ({schedule.chunk_size} steps "
                        f"= {window_ms:.0f} ms at this rate); lower control_rate_hz or use a faster backend")
    if recent["overruns"]:
        warnings.append(f"{recent['overruns']} control ticks overran the {period_ms:.1f} ms period")
    if recent["missed_ticks"]:
        warnings.append(f"{recent['missed_ticks']} control ticks skipped: the control thread got no CPU for "
                        f"longer than a period")
    if recent["late_inputs"]:  # its own condition: ages count from arrival, so late callbacks alone never hold
        late_max = _ms(monitor.input_delay.summary().max)
        warnings.append(f"{recent['late_inputs']} input callbacks ran more than one control period "
                        f"({period_ms:.1f} ms) after their message arrived (max {late_max} ms): the executor "
                        f"threads are short of CPU")
    if recent["rejected"]:
        warnings.append(f"{recent['rejected']} non-finite actions refused")
    if warnings:
        level, message = Level.WARN, "; ".join(warnings)
    hold = loop.last_hold
    if hold is not None:
        reason, detail = hold
        text = f"holding: {reason.value}" + (f" ({detail})" if detail else "")
        severity = Level.OK if reason.requested else {Hold.WAITING: Level.WARN, Hold.STARVED: Level.WARN}.get(
            reason, Level.ERROR)
        level, message = max(level, severity), (f"{text}; {message}" if warnings else text)

    values: list[tuple[str, str]] = [
        ("backend", backend),
        ("control rate target (Hz)", f"{control_rate_hz:g}"),
        ("control rate achieved (Hz)", f"{monitor.ticks.rate_hz():.1f}"),
        ("control period jitter (ms)", f"{monitor.ticks.jitter_ms(period_ms):.1f}"),
        ("control tick duration (ms)", f"{monitor.last_tick_ms:.2f}"),
        ("control overruns", str(monitor.overruns)),
        ("missed control ticks", str(missed_ticks)),
        ("late input callbacks", str(monitor.late_inputs)),
        *(schedule_info or [("schedule mode", schedule.mode)]),
        ("queue depth", str(schedule.depth)),
        ("inferences", str(c.inferences)),
        ("commands sent", str(c.commands)),
        ("skipped actions (latency compensation)", str(schedule.skipped_actions)),
        ("stale chunks", str(schedule.stale_chunks)),
        ("ensemble gaps", str(schedule.ensemble_gaps)),
        ("clamped ticks", str(guard.clamp_count)),
        ("clamps per joint", " ".join(str(int(x)) for x in guard.clamped_joints)),
        ("backend failures", str(c.backend_failures)),
        ("observation errors", str(c.observation_errors)),
        ("recording", recorder_info),
    ]
    for name, window in monitor.stages.items():
        s = window.summary()
        values.append((f"{name} ms p50/p95/max", f"{_ms(s.p50)}/{_ms(s.p95)}/{_ms(s.max)}"))
    switch, within = monitor.smoothness.summary()
    values.append(("command step at chunk switches p95/max per joint", switch.text()))
    values.append(("command step within chunks p95/max per joint", within.text()))
    lag, arrival = schedule.lag.summary(), summarize(list(schedule.lag.arrivals))
    values.append(("influence lag steps p50/max", f"{_ms(lag.p50)}/{_ms(lag.max)}"))
    values.append(("arrival delay steps p50/max", f"{_ms(arrival.p50)}/{_ms(arrival.max)}"))
    values.append(("observation age at inference ms p50/max",
                   f"{_ms(monitor.observation_age.summary().p50)}/{_ms(monitor.observation_age.summary().max)}"))
    delay = monitor.input_delay.summary()
    values.append(("input callback delay ms p50/p95/max", f"{_ms(delay.p50)}/{_ms(delay.p95)}/{_ms(delay.max)}"))
    for source, age in ages.items():
        values.append((f"age {source} (ms)", "never received" if math.isinf(age) else f"{age:.0f}"))
    for source, meter in monitor.inputs.items():
        values.append((f"rate {source} (Hz)", f"{meter.rate_hz():.1f}"))
    for source, error in dict(loop.cache.errors).items():
        values.append((f"error {source}", error))
    if loop.backend_error:
        values.append(("backend error", loop.backend_error))
    return Report(level, message, values)

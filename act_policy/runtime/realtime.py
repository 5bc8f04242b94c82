"""The control loop, decoupled from inference: a tick never waits for the network.

Each control tick has an integer step. An observation taken at step ``s0`` produces a chunk
whose row ``i`` is the action for step ``s0 + i`` (LeRobot executes row 0 at the step the
observation was taken). Inference is called from a worker thread (the node's backend then runs in a
child process by default, ``inference_isolation``); when its chunk arrives at step ``s`` the rows for
steps that already passed are skipped, so an action is only ever sent at the step it was predicted
for. Three schedules:

* ``async`` — request the next chunk when ``refill_threshold`` actions remain; on arrival the
  fresher chunk (minus the skipped rows) runs for ``n_action_steps`` steps, merged with the
  older chunk's rows for the same steps by ``chunk_aggregation`` (``latest``: replaced).
* ``sync`` — LeRobot's ``select_action`` timing: run the queue dry, then infer; the arm holds
  (instead of the control loop blocking) while the chunk is computed; no rows are skipped.
  ``chunk_aggregation`` applies where the old chunk's unexecuted tail overlaps the new one.
* ``temporal_ensemble`` — request a chunk every tick and average overlapping predictions
  (:class:`~act_policy.core.scheduling.TemporalEnsembler`). Rows of an arriving chunk are
  aligned to the current step and the tail padded with its last row; a tick without a fresh
  chunk holds and restarts the average (counted as a gap: inference is slower than a tick).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from act_policy.core.config import STATE_KEY
from act_policy.core.errors import ObservationError
from act_policy.core.joint_units import JointUnits
from act_policy.core.policy import StageTimes
from act_policy.core.scheduling import ChunkAggregator, TemporalEnsembler
from act_policy.core.smoothness import InfluenceLag
from act_policy.runtime.observations import Capture, ObservationCache
from act_policy.runtime.safety import CommandGuard, Hold, Limits, stale_sources

Observation = dict[str, np.ndarray]
InferFn = Callable[[Observation], tuple[np.ndarray, StageTimes]]


@dataclass
class InferenceJob:
    capture: Capture
    obs_step: int
    epoch: int
    seq: int
    requested_at: float

    @property
    def observation_age_ms(self) -> float:
        return max(self.capture.ages_ms.values(), default=0.0)


@dataclass
class ChunkResult:
    """A finished inference: the chunk (policy units) or the error, tagged with its observation's step.

    ``error_kind`` is ``"observation"`` when the inputs were rejected and ``"backend"`` when inference failed.
    """

    job: InferenceJob
    chunk: np.ndarray | None
    times: StageTimes
    finished_at: float
    convert_ms: float = 0.0
    error: str | None = None
    error_kind: str = ""

    @property
    def total_ms(self) -> float:
        return (self.finished_at - self.job.requested_at) * 1e3


class InferenceWorker:
    """The one thread that loads and runs the policy: at most one job in flight, results picked up without waiting.

    ``setup`` runs first in the thread (e.g. lowering its priority, see
    :mod:`act_policy.runtime.cpu_scheduling`); its messages are kept in :attr:`setup_messages`. Loading the
    policy through :meth:`call` matters: torch's and ONNX Runtime's pool threads inherit the priority of the
    thread that creates them, so everything inference runs on ends up below the control thread.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 setup: Callable[[], list[str]] | None = None) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._task: Callable[[], None] | None = None
        self._result: ChunkResult | None = None
        self._busy = False
        self._closed = False
        self._ready = threading.Event()
        self.setup_messages: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(setup,), name="act_policy-inference", daemon=True)
        self._thread.start()
        self._ready.wait()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker thread and return its result (or raise its exception); blocks.

        For configure-time work such as loading the policy; refused while a job is in flight."""
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def task() -> None:
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc
            finally:
                done.set()

        if not self._start(task):
            raise RuntimeError("the inference worker is busy or closed")
        done.wait()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def submit(self, job: InferenceJob, work: Callable[[InferenceJob], ChunkResult]) -> bool:
        """Start ``work(job)`` unless a job is in flight (returns False then); never blocks on inference."""
        def task() -> None:
            try:
                result = work(job)
            except Exception as exc:  # any backend failure becomes a diagnostic, never a dead thread
                result = ChunkResult(job, None, StageTimes(), self._clock(), error=f"{type(exc).__name__}: {exc}",
                                     error_kind="backend")
            with self._cond:
                self._result = result
        return self._start(task)

    def take(self) -> ChunkResult | None:
        with self._cond:
            result, self._result = self._result, None
            return result

    def _start(self, task: Callable[[], None]) -> bool:
        with self._cond:
            if self._busy or self._closed:
                return False
            self._task, self._busy = task, True
            self._cond.notify()
            return True

    def _run(self, setup: Callable[[], list[str]] | None) -> None:
        try:
            self.setup_messages = list(setup()) if setup is not None else []
        finally:
            self._ready.set()
        while True:
            with self._cond:
                while self._task is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                task = self._task
            task()
            with self._cond:
                self._task, self._busy = None, False

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop the thread after its current job; True if it ended within ``timeout`` seconds.

        A job still running after that (a slow backend at process exit) is left to the daemon thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()


class ActionSchedule:
    """Which action (policy units) runs at which step, for one of the three modes above.

    In ``async`` and ``sync`` mode the chunks live on the step axis in a
    :class:`~act_policy.core.scheduling.ChunkAggregator`: the freshest chunk decides how many
    actions are queued (``n_action_steps`` of it), ``aggregation`` decides how it merges with the
    older chunks that still cover a step (``latest`` replaces them, as LeRobot does).
    """

    def __init__(self, mode: str, chunk_size: int, n_action_steps: int, refill_threshold: int,
                 ensemble_coeff: float, aggregation: str = "latest", blend_steps: int = 0) -> None:
        if mode not in ("async", "sync", "temporal_ensemble"):
            raise ValueError(f"unknown schedule mode {mode!r}")
        self.mode = mode
        self.chunk_size = chunk_size
        self.n_action_steps = n_action_steps
        self.refill_threshold = refill_threshold
        self._chunks = ChunkAggregator(aggregation, ensemble_coeff, blend_steps)
        self._coeff = ensemble_coeff
        self._ensembler = TemporalEnsembler(ensemble_coeff, chunk_size)
        self._ensemble_step: int | None = None  # step of the last ensembler update
        self._ensembled: tuple[int, np.ndarray] | None = None
        self._next_step = 0  # the step of the next action handed out
        self.lag = InfluenceLag()
        self.skipped_actions = 0
        self.stale_chunks = 0
        self.ensemble_gaps = 0

    @property
    def aggregation(self) -> str:
        """How overlapping chunks are merged; temporal ensembling always uses ACT's weights."""
        return "weighted" if self.mode == "temporal_ensemble" else self._chunks.mode

    def reconfigure(self, n_action_steps: int, refill_threshold: int, ensemble_coeff: float,
                    aggregation: str = "latest", blend_steps: int = 0) -> None:
        """Live changes; the queue keeps running, a new coefficient restarts the ensemble average."""
        self.n_action_steps = n_action_steps
        self.refill_threshold = refill_threshold
        self._chunks.mode, self._chunks.coeff, self._chunks.blend_steps = aggregation, ensemble_coeff, blend_steps
        if ensemble_coeff != self._coeff:
            self._coeff = ensemble_coeff
            self._ensembler = TemporalEnsembler(ensemble_coeff, self.chunk_size)
            self._ensemble_step = None

    def reset(self) -> None:
        self._chunks.reset()
        self.lag.drop_pending()
        self._ensembler.reset()
        self._ensemble_step = None
        self._ensembled = None

    @property
    def depth(self) -> int:
        """Actions queued from the current step on."""
        return self._chunks.remaining(self._next_step)

    def needs_inference(self) -> bool:
        if self.mode == "temporal_ensemble":
            return True
        if self.mode == "sync":
            return self.depth == 0
        return self.depth <= self.refill_threshold

    def offer(self, chunk: np.ndarray, obs_step: int, step: int) -> int | None:
        """Take a chunk predicted from the observation of ``obs_step`` at ``step``; rows skipped, or None if stale."""
        self._next_step = step
        if self.mode == "sync":  # LeRobot's timing: row 0 runs when the chunk is there, the arm held meanwhile
            self._chunks.add(chunk, step, step, step + self.n_action_steps)
            return 0
        skip = step - obs_step
        if skip >= len(chunk):
            self.stale_chunks += 1
            return None
        self.skipped_actions += skip
        if self.mode == "async":
            self._chunks.add(chunk, obs_step, step, step + self.n_action_steps)
            return skip
        if self._ensemble_step is not None and self._ensemble_step != step - 1:
            self.ensemble_gaps += 1
            self._ensembler.reset()
        aligned = np.concatenate([chunk[skip:], np.repeat(chunk[-1:], skip, axis=0)])
        self._ensembled = (step, self._ensembler.update(aligned))
        self._ensemble_step = step
        return skip

    def next_action(self, step: int) -> np.ndarray | None:
        self._next_step = step + 1
        if self.mode == "temporal_ensemble":
            if self._ensembled is None or self._ensembled[0] != step:
                return None
            return self._ensembled[1]
        action = self._chunks.action(step)
        if action is not None:
            self.lag.observe(step, self._chunks.last_weights)
        return action


@dataclass(frozen=True)
class LoopSettings:
    """The live part of the node's parameters, in the units the loop uses."""

    enabled: bool
    n_action_steps: int
    refill_threshold: int
    ensemble_coeff: float
    limits: Limits
    max_image_age_ms: float
    max_joint_age_ms: float
    chunk_aggregation: str = "latest"
    blend_steps: int = 0


@dataclass
class TickResult:
    """What one control tick decided: a command to send (ROS units) and/or why the policy is not in control."""

    step: int
    command: np.ndarray | None
    hold: Hold | None = None
    detail: str = ""
    chunk: ChunkResult | None = None  # an inference that finished since the last tick
    skipped: int | None = None


@dataclass
class LoopCounters:
    ticks: int = 0
    commands: int = 0
    holds: dict[str, int] = field(default_factory=dict)
    inferences: int = 0
    backend_failures: int = 0
    observation_errors: int = 0


class ControlLoop:
    """One call of :meth:`tick` per control period; the rest of the node only feeds and reads it.

    ``infer`` maps a policy observation (camera features + ``observation.state`` in policy
    units) to a chunk and its stage times; it runs on the loop's worker thread together with
    the image conversion, so a tick only takes references to the latest data.

    Invariant that keeps queued actions on time: every active tick either pops exactly one action
    or drops the queue (and ignores the chunk in flight) — holding never leaves actions behind.
    """

    BACKOFF_S = (1.0, 30.0)  # backend retry delay: doubles from 1 s up to 30 s, reset by a success

    def __init__(self, cache: ObservationCache, units: JointUnits, schedule: ActionSchedule, infer: InferFn,
                 settings: LoopSettings, *, clock: Callable[[], float] = time.monotonic,
                 record: Callable[[Observation], None] | None = None, worker: InferenceWorker | None = None,
                 cancel: Callable[[], None] | None = None) -> None:
        self.cache = cache
        self.units = units
        self.schedule = schedule
        self.guard = CommandGuard(len(cache.joint_names), settings.limits)
        self.settings = settings
        self.counters = LoopCounters()
        self.backend_error: str | None = None
        self.observation_error: str | None = None
        self.last_hold: tuple[Hold, str] | None = None
        self._infer = infer
        self._cancel = cancel  # stops the inference in flight when its result has become useless
        self._record = record
        self._clock = clock
        self._lock = threading.Lock()
        self._pending_settings: LoopSettings | None = None
        self._pending_reset = False
        self._pending_activation = False
        self._active = False
        self._step = 0
        self._epoch = 0  # bumped whenever queued/in-flight actions become invalid
        self._in_flight_epoch = -1  # epoch of the last inference requested
        self._seq = 0
        self._retry_at = -math.inf
        self._backoff = self.BACKOFF_S[0]
        self.worker = worker if worker is not None else InferenceWorker(clock)

    # ------------------------------------------------------------------ requests from other threads
    def update_settings(self, settings: LoopSettings) -> None:
        """Takes effect at the next tick (parameter callbacks run on another thread)."""
        with self._lock:
            self._pending_settings = settings

    def request_reset(self) -> None:
        """New episode: clear the schedule and forget in-flight work at the next tick.

        The last safe command is kept: holding re-sends it until the new episode's first chunk arrives, so
        the command topic never falls silent (drivers with a command timeout would stop the arm)."""
        with self._lock:
            self._pending_reset = True

    def set_active(self, active: bool) -> None:
        """Activation also forgets the last command: the arm may have been moved while the node was inactive,
        so the first command is bounded from the measured joint positions again."""
        with self._lock:
            self._active = active
            self._pending_reset = self._pending_activation = True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop the worker; True unless an inference was still running after ``timeout`` seconds.

        An inference in flight is cancelled first where the backend can stop one: no one needs its result."""
        if self._cancel is not None and self.worker.busy:
            self._cancel()
        return self.worker.close(timeout)

    # ------------------------------------------------------------------ the tick
    def tick(self) -> TickResult:
        step = self._step
        self._step += 1
        self.counters.ticks += 1
        active = self._apply_requests()
        s = self.settings
        result = self.worker.take()
        skipped = self._accept(result, step) if result is not None else None

        def hold(reason: Hold, detail: str = "") -> TickResult:
            self.last_hold = (reason, detail)
            self.counters.holds[reason.name] = self.counters.holds.get(reason.name, 0) + 1
            return TickResult(step, self.guard.hold() if active else None, reason, detail, result, skipped)

        if not active:
            return hold(Hold.INACTIVE)
        if not s.enabled:
            self._invalidate()
            return hold(Hold.DISABLED)
        stale = stale_sources(self.cache.ages_ms(), s.max_image_age_ms, s.max_joint_age_ms)
        if stale:
            self._invalidate()
            never = all(x.endswith("never received") for x in stale)
            return hold(Hold.WAITING if never and self.guard.last_command is None else Hold.STALE, "; ".join(stale))
        rejected = self.cache.rejected_joint_state()
        if rejected is not None:  # no queued action alongside a state the policy could not take (Policy.select_action)
            self._invalidate()
            return hold(Hold.OBSERVATION_ERROR, rejected)
        if self.backend_error is not None and self._clock() < self._retry_at:
            return hold(Hold.BACKEND_ERROR, self.backend_error)
        if self.schedule.needs_inference() and not self.worker.busy:
            try:
                self._request(step)
            except ObservationError as exc:
                self._invalidate()
                return hold(Hold.OBSERVATION_ERROR, str(exc))
        action = self.schedule.next_action(step)
        if action is None:
            if self.observation_error is not None:  # kept until an inference succeeds again
                return hold(Hold.OBSERVATION_ERROR, self.observation_error)
            if self.backend_error is not None:
                return hold(Hold.BACKEND_ERROR, self.backend_error)
            return hold(Hold.STARVED)
        command = self.guard.filter(self.units.to_ros(action), self.cache.joint_positions())
        if command is None:
            self._invalidate()
            return hold(Hold.NON_FINITE, f"action {np.asarray(action).tolist()}")
        self.counters.commands += 1
        self.last_hold = None
        return TickResult(step, command, None, "", result, skipped)

    @property
    def step(self) -> int:
        return self._step

    # ------------------------------------------------------------------ internals
    def _apply_requests(self) -> bool:
        with self._lock:
            pending, self._pending_settings = self._pending_settings, None
            reset, self._pending_reset = self._pending_reset, False
            activation, self._pending_activation = self._pending_activation, False
            active = self._active
        if pending is not None:
            self.settings = pending
            self.guard.limits = pending.limits
            self.schedule.reconfigure(pending.n_action_steps, pending.refill_threshold, pending.ensemble_coeff,
                                      pending.chunk_aggregation, pending.blend_steps)
        if reset:
            self._invalidate()
        if activation:
            self.guard.reset()
        return active

    def _invalidate(self) -> None:
        """Drop queued actions and ignore the chunk in flight (it was computed for a situation that ended).

        The inference in flight is also cancelled where the backend can stop one, so that the next request
        does not wait behind it (resuming then takes one inference time, not up to two)."""
        if self._cancel is not None and self.worker.busy and self._in_flight_epoch == self._epoch:
            self._cancel()
        self._epoch += 1
        self.schedule.reset()

    def _accept(self, result: ChunkResult, step: int) -> int | None:
        if result.job.epoch != self._epoch:
            return None
        if result.error_kind == "observation":
            self.counters.observation_errors += 1
            self.observation_error = result.error
            self._invalidate()
            return None
        if result.error is not None:
            self.counters.backend_failures += 1
            self.backend_error = result.error
            self._invalidate()  # holding pops nothing, so queued actions would fall behind their steps
            self._retry_at = self._clock() + self._backoff
            self._backoff = min(self._backoff * 2, self.BACKOFF_S[1])
            return None
        self.counters.inferences += 1
        self.backend_error = self.observation_error = None
        self._backoff = self.BACKOFF_S[0]
        return self.schedule.offer(result.chunk, result.job.obs_step, step)

    def _request(self, step: int) -> None:
        capture = self.cache.capture()
        self._seq += 1
        self._in_flight_epoch = self._epoch
        self.worker.submit(InferenceJob(capture, step, self._epoch, self._seq, self._clock()), self._work)

    def _work(self, job: InferenceJob) -> ChunkResult:
        """Worker thread: convert the capture, record it if asked, infer."""
        t0 = self._clock()
        try:
            observation: Observation = self.cache.convert(job.capture)
        except ObservationError as exc:
            return ChunkResult(job, None, StageTimes(), self._clock(), error=str(exc), error_kind="observation")
        observation[STATE_KEY] = self.units.to_policy(job.capture.joint_positions)
        convert_ms = (self._clock() - t0) * 1e3
        if self._record is not None:
            self._record(observation)
        chunk, times = self._infer(observation)
        return ChunkResult(job, chunk, times, self._clock(), convert_ms)


def loop_settings(values: Mapping[str, Any], n_joints: int, n_action_steps: int,
                  refill_threshold: int, ensemble_coeff: float) -> LoopSettings:
    """LoopSettings from validated parameter values and the values they resolve to (act_policy.runtime.parameters)."""
    return LoopSettings(
        enabled=bool(values["enabled"]),
        n_action_steps=n_action_steps,
        refill_threshold=refill_threshold,
        ensemble_coeff=ensemble_coeff,
        chunk_aggregation=values["chunk_aggregation"],
        blend_steps=int(values["blend_steps"]),
        limits=Limits.from_lists(n_joints, values["joint_lower_limits"], values["joint_upper_limits"],
                                 values["max_joint_step"]),
        max_image_age_ms=float(values["max_image_age_ms"]),
        max_joint_age_ms=float(values["max_joint_state_age_ms"]),
    )

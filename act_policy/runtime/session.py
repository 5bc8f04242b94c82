"""Assembling the runtime from validated parameters and a loaded policy (the node's configure step).

Kept out of the rclpy adapter so that configuration errors, live parameter changes and the
whole observation → command path are tested without ROS.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from act_policy.backends import BackendOptions, backend_label, fallback_warning
from act_policy.core.errors import BackendOptionsError
from act_policy.core.joint_units import JointUnits
from act_policy.core.policy import Policy
from act_policy.runtime.cpu_scheduling import (
    default_inference_threads,
    lower_current_thread_priority,
    make_current_thread_normal,
    make_current_thread_realtime,
    set_current_thread_slice,
    usable_cpus,
)
from act_policy.runtime.health import HealthMonitor, Report, assess
from act_policy.runtime.inference_process import LoadRequest, ProcessBackend
from act_policy.runtime.observations import ObservationCache
from act_policy.runtime.parameters import (
    CHECKPOINT,
    ParameterError,
    PolicyContext,
    Settings,
    apply_changes,
    camera_topic_map,
    effective_ensemble_coeff,
    effective_n_action_steps,
    effective_refill_threshold,
    effective_schedule_mode,
    validate,
)
from act_policy.runtime.realtime import (
    ActionSchedule,
    ControlLoop,
    InferenceWorker,
    LoopSettings,
    TickResult,
    loop_settings,
)
from act_policy.runtime.recorder import ObservationRecorder
from act_policy.runtime.ticker import Ticker


def node_load_request(settings: Mapping[str, Any]) -> LoadRequest:
    """What the node loads: ``model_path`` (``demo``: seeded weights, for plumbing tests only) on ``backend``
    with ``num_threads``, ``device`` and ``backend_options``, ``inference_nice`` levels lower."""
    if not settings["model_path"]:
        raise ParameterError("model_path: expected a LeRobot pretrained_model folder or deploy bundle, got ''")
    options = BackendOptions(num_threads=inference_threads(settings), device=settings["device"],
                             extra=json.loads(settings["backend_options"]))
    return LoadRequest(settings["model_path"], settings["backend"], options, settings["inference_nice"])


def load_node_policy(settings: Mapping[str, Any]) -> Policy:
    """The node's policy, loaded in the calling thread."""
    return Policy(*node_load_request(settings).load())


def start_node_policy(settings: Mapping[str, Any]) -> tuple[Policy, InferenceWorker, list[str]]:
    """The node's policy and the worker thread that runs it, isolated as ``inference_isolation`` says, and the
    warnings of what the system refused (e.g. lowering a priority). Blocks while the policy loads.

    Options the backend does not take raise ParameterError naming ``backend_options`` and how to clear it
    (a params file written for another backend, e.g. hailo's, sets options this one refuses).

    The calling thread (the node's executor thread) first takes the ``sched_slice_us`` slice, which the
    worker and, later, the control thread it starts inherit.

    * ``process``: the backend runs in a child process in its own session ``inference_nice`` levels lower
      (:class:`~act_policy.runtime.inference_process.ProcessBackend`); the worker thread stays at the node's
      priority: it pre- and post-processes and otherwise waits for the child without holding the GIL.
    * ``thread``: the worker thread runs ``inference_nice`` levels lower and loads the policy itself, so that
      the backend's pool threads inherit that priority.
    """
    refused = set_current_thread_slice(settings["sched_slice_us"])  # inherited by the threads started below
    warnings = [refused] if refused else []
    try:
        if settings["inference_isolation"] == "process":
            backend = ProcessBackend.start(node_load_request(settings))
            return Policy(backend.artifacts, backend), InferenceWorker(), warnings + backend.warnings
        worker = start_inference_worker(settings)
        try:
            policy = worker.call(lambda: load_node_policy(settings))  # pool threads inherit the worker's priority
        except BaseException:
            worker.close()
            raise
    except BackendOptionsError as exc:
        raise ParameterError(f"backend_options: {exc} (the parameter is a JSON object in a string: '{{}}' for "
                             "none, in the params file or with -p \"backend_options:='{}'\")") from exc
    return policy, worker, warnings + worker.setup_messages


def inference_threads(settings: Mapping[str, Any]) -> int:
    """``num_threads``, or for 0 one less than the CPUs this process may use (at least 1, at most 4)."""
    return settings["num_threads"] or default_inference_threads(len(usable_cpus()))


def start_inference_worker(settings: Mapping[str, Any], clock: Callable[[], float] = time.monotonic
                           ) -> InferenceWorker:
    """The inference thread, ``inference_nice`` levels below the caller; load the policy through its
    :meth:`~InferenceWorker.call` so that the backend's pool threads inherit that priority."""
    levels = settings["inference_nice"]

    def lower_priority() -> list[str]:  # not the short slice of the node's threads, then lower
        return [r for r in (make_current_thread_normal(), lower_current_thread_priority(levels)) if r]
    return InferenceWorker(clock, setup=lower_priority)


def policy_context(policy: Policy) -> PolicyContext:
    spec = policy.spec
    if spec.env_state is not None:
        raise ParameterError(f"model_path: the policy needs {spec.env_state.name!r}, which the node cannot provide "
                             "(it reads cameras and joint states only)")
    if spec.state is None or spec.state.shape != spec.action.shape:
        raise ParameterError(f"model_path: the node maps joint_names to both observation.state and action; the "
                             f"policy has state {spec.state.shape if spec.state else None} and action "
                             f"{spec.action.shape}")
    return PolicyContext(chunk_size=policy.chunk_size, n_action_steps=spec.config.n_action_steps,
                         rename_map=dict(spec.rename_map),
                         camera_features=policy.camera_names, action_dim=policy.action_dim,
                         temporal_ensemble_coeff=spec.config.temporal_ensemble_coeff)


@dataclass
class Runtime:
    """Everything the node runs, built by :func:`build_runtime`."""

    settings: Settings
    context: PolicyContext
    policy: Policy
    cache: ObservationCache
    loop: ControlLoop
    recorder: ObservationRecorder
    monitor: HealthMonitor = field(default_factory=HealthMonitor)
    clock: Callable[[], float] = time.monotonic
    ticker: Ticker | None = None
    # the control thread's tick and the diagnostics reader (another thread) never see half-updated statistics
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def camera_topics(self) -> dict[str, str]:
        return dict(self.cache.camera_topics)

    @property
    def backend(self) -> str:
        """The backend's name for logs and diagnostics, marked when a fallback does the work."""
        return backend_label(self.policy.describe())

    @property
    def backend_warning(self) -> str | None:
        """Why the configured backend is not the one running (a Hailo NPU that is missing), if so."""
        return fallback_warning(self.policy.describe())

    def apply(self, changes: Mapping[str, Any]) -> Settings:
        """Validate and apply live changes atomically; ParameterError (and nothing changed) if refused."""
        new = apply_changes(self.settings, changes, self.context)
        try:
            self.recorder.configure(new["record_dir"], new["record_every_n"], new["record_max_samples"])
        except OSError as exc:
            raise ParameterError(f"record_dir: cannot create {new['record_dir']!r}: {exc}")
        self.loop.update_settings(_loop_settings(new, self.context))
        self.settings = new
        return new

    def tick(self) -> TickResult:
        """One control tick, timed for the diagnostics (the control thread calls this)."""
        with self._lock:
            started = self.clock()
            result = self.loop.tick()
            self.monitor.on_tick(started, self.clock(), 1.0 / self.settings["control_rate_hz"])
            if result.chunk is not None:
                self.monitor.on_chunk(result.chunk)
            if result.command is not None:  # a chunk accepted this tick acted on this command for the first time
                self.monitor.on_command(result.step, result.command, switch=result.skipped is not None)
        return result

    def schedule_info(self) -> list[tuple[str, str]]:
        """What schedule runs and where each value comes from (logged at configure, in /diagnostics)."""
        s, c = self.settings, self.context
        mode = effective_schedule_mode(s, c)
        coeff = effective_ensemble_coeff(s, c)
        if s["temporal_ensemble_coeff"] != CHECKPOINT:
            coeff_source = "parameter"
        else:
            coeff_source = "checkpoint" if c.temporal_ensemble_coeff is not None else "ACT default"
        if mode == "temporal_ensemble":
            steps_source = "temporal ensembling"
        else:
            steps_source = "parameter" if s["n_action_steps"] else "checkpoint"
        aggregation = self.loop.schedule.aggregation
        if mode == "temporal_ensemble":
            aggregation += " (temporal ensembling)"
        elif aggregation == "blend":
            aggregation += f" over {s['blend_steps']} steps"
        return [("schedule mode", f"{mode} ({'checkpoint' if s['schedule_mode'] == CHECKPOINT else 'parameter'})"),
                ("n_action_steps", f"{effective_n_action_steps(s, c)} ({steps_source})"),
                ("temporal_ensemble_coeff", f"{coeff:g} ({coeff_source})"),
                ("chunk_aggregation", aggregation)]

    def start_control(self, handle: Callable[[TickResult], None]) -> list[str]:
        """Start the control thread: every period, :meth:`tick` then ``handle(result)`` (publishing).

        The thread asks for ``SCHED_FIFO`` when ``control_realtime_priority`` > 0 (granted, and above 1, with
        ``inference_isolation: process`` the handover worker gets one level less); returns the warnings of what
        the system refused (the threads then run at normal priority)."""
        priority = self.settings["control_realtime_priority"]

        def realtime() -> list[str]:
            refused = make_current_thread_realtime(priority)
            return [refused] if refused else []
        self.ticker = Ticker(lambda: handle(self.tick()), lambda: 1.0 / self.settings["control_rate_hz"],
                             setup=realtime)
        warnings = self.ticker.start()
        if priority > 1 and not warnings and self.settings["inference_isolation"] == "process":
            # The handover worker one level below: it holds the GIL for moments (conversion, normalization),
            # and preempted in such a moment by a normal-priority process it would delay the tick. Only once
            # the control thread is real-time, and never the in-node inference thread of `thread` isolation.
            refused = self.loop.worker.call(lambda: make_current_thread_realtime(priority - 1))
            warnings += [refused] if refused else []
        return warnings

    def on_input(self, source: str, delay_s: float) -> None:
        """A message of ``source`` handled ``delay_s`` after the middleware received it (diagnostics)."""
        with self._lock:
            self.monitor.on_input(source, self.clock(), delay_s, 1.0 / self.settings["control_rate_hz"])

    def report(self) -> Report:
        with self._lock:
            return assess(self.loop, self.monitor, backend=self.backend, backend_warning=self.backend_warning,
                          control_rate_hz=self.settings["control_rate_hz"], recorder_info=self.recording_info(),
                          missed_ticks=self.ticker.missed if self.ticker else 0, schedule_info=self.schedule_info())

    def recording_info(self) -> str:
        directory = self.recorder.directory
        if directory is None:
            return "off"
        return f"{directory}: {self.recorder.written} written, {self.recorder.dropped} dropped"

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop the control thread (no tick afterwards), then the worker and the recorder, then the policy.

        Waits up to ``timeout`` s for an inference in flight; if it is still running (a process that exits
        anyway) the policy is left to the exit instead of being freed under it, and False is returned. An
        inference process is ended either way."""
        if self.ticker is not None:
            self.ticker.stop()
        finished = self.loop.close(timeout)
        self.recorder.close()
        # an inference process can be ended under a running inference (the worker's read then fails): nothing
        # of this process is freed under it, and a hung or uncancellable child must not outlive a cleanup
        if finished or isinstance(self.policy.backend, ProcessBackend):
            self.policy.close()
        return finished


def _loop_settings(s: Settings, context: PolicyContext) -> LoopSettings:
    return loop_settings(s, len(s["joint_names"]), effective_n_action_steps(s, context),
                         effective_refill_threshold(s, context), effective_ensemble_coeff(s, context))


def build_runtime(settings: Mapping[str, Any], policy: Policy, *, clock: Callable[[], float] = time.monotonic,
                  worker: InferenceWorker | None = None) -> Runtime:
    """Validate ``settings`` against ``policy`` and wire the cache, schedule, loop and recorder; inference runs
    on ``worker`` (the one that loaded ``policy``, see :func:`start_inference_worker`) or a new thread.

    CheckpointError when the policy lacks stats for a normalized feature and ``allow_missing_stats`` is off.
    """
    context = policy_context(policy)
    s = validate(settings, context)
    policy.artifacts.require_complete_stats(s["allow_missing_stats"], "the parameter allow_missing_stats:=true")
    n = len(s["joint_names"])
    cameras = camera_topic_map(s["camera_topics"], context.rename_map)
    sizes = {f.name: (f.shape[1], f.shape[2]) for f in policy.spec.cameras}
    cache = ObservationCache(cameras, sizes, s["joint_names"], s["joint_state_topic"],
                             allow_resize=s["allow_resize"], clock=clock)
    units = JointUnits.from_parameters(s["joint_scale"], s["joint_offset"], n)
    live = _loop_settings(s, context)
    schedule = ActionSchedule(effective_schedule_mode(s, context), context.chunk_size, live.n_action_steps,
                              live.refill_threshold, live.ensemble_coeff, live.chunk_aggregation, live.blend_steps)
    recorder = ObservationRecorder()
    try:
        recorder.configure(s["record_dir"], s["record_every_n"], s["record_max_samples"])
    except OSError as exc:
        recorder.close()
        raise ParameterError(f"record_dir: cannot create {s['record_dir']!r}: {exc}")

    def infer(observation):
        chunk = policy.predict_chunk(observation)
        return chunk, policy.last_times

    loop = ControlLoop(cache, units, schedule, infer, live, clock=clock, record=recorder, worker=worker,
                       cancel=policy.backend.cancel)
    return Runtime(s, context, policy, cache, loop, recorder, clock=clock)

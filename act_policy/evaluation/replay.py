"""Open-loop replay of a recorded episode through one or more backends.

Each backend gets a fresh :class:`~act_policy.core.policy.Policy` and sees the episode's
observations in order; the action it would have commanded at each step comes from
``Policy.select_action`` — the same queue / temporal-ensembling schedule as LeRobot and
the node — so predictions are compared with the recorded actions step for step. The
robot is not in the loop: observations are what the demonstrator's arm did, not what the
policy's commands would have caused, so errors grow where the policy would have diverged.

Per backend this computes the per-joint mean and max absolute error against the recorded
actions and against ``cpu_fp32`` (always run first as the reference; ``onnx_fp32`` on an install
without torch, see :func:`~act_policy.backends.reference_backend`) — also in normalized action
units, per joint, by :func:`act_policy.export.fidelity.compare` as benchmark and quantize report
them —, end-to-end latency percentiles (pre-process + network + post-process, as
``Policy.last_times`` measures them) and whether the control rate would be met with asynchronous
scheduling:

**Control-rate criterion** — the node's ``async`` schedule (act_policy/runtime/realtime.py,
``ActionSchedule``). Let ``T = 1 / rate`` be the control period, ``C`` the chunk size, ``n``
the actions executed per chunk (``n_action_steps``), ``m`` the refill threshold (the next
inference is requested when ``m`` queued actions remain; default ``n // 2``, as the node and
LeRobot's async ``chunk_size_threshold`` of 0.5) and ``L`` the p95 end-to-end latency. The
observation is taken when the inference is requested; when the chunk arrives ``k = ceil(L / T)``
ticks later its first ``k`` rows are in the past and skipped, and the next ``min(n, C - k)``
rows become the queue. The rate is met when a chunk always arrives before the queue runs dry —
in the regular cycle (the ``m`` queued actions cover the inference) and when requests run back
to back (the fresh rows of one chunk cover the next inference)::

    L < budget = min(m, n, C - k) · T        max_rate_hz = min(m, floor(C / 2)) / L

With temporal ensembling a chunk is requested every tick and must arrive by the next one:
``L < T``, ``max_rate_hz = 1 / L``. The replayed actions themselves follow
``select_action`` (LeRobot's synchronous timing), so they do not depend on the machine's speed.

A backend whose ``describe()`` says ``emulated`` (the hailo backend on the test fake of
HailoRT) gets action errors only: its latency would be that of a CPU stand-in, so no latency
percentiles and no control-rate verdict are kept for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from act_policy.backends import BACKENDS, BackendOptions, create_backend, reference_backend
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.diagnostics import Summary, summarize
from act_policy.core.errors import BackendError, SettingError
from act_policy.core.policy import Policy
from act_policy.data.episode import DatasetError, Episode
from act_policy.export.fidelity import compare

Progress = Callable[[str, int, int], None]  # (backend, step, total)


@dataclass(frozen=True)
class JointErrors:
    """Absolute action error per joint (action units) and its per-step mean over joints."""

    mean: np.ndarray  # (A,)
    max: np.ndarray  # (A,)
    per_step: np.ndarray  # (T,)

    @classmethod
    def between(cls, predicted: np.ndarray, reference: np.ndarray) -> JointErrors:
        diff = np.abs(np.asarray(predicted, np.float64) - np.asarray(reference, np.float64))
        return cls(diff.mean(0), diff.max(0), diff.mean(1))

    def as_dict(self, names: Sequence[str]) -> dict[str, Any]:
        return {"per_joint": {n: {"mean": float(a), "max": float(b)} for n, a, b in zip(names, self.mean, self.max,
                                                                                          strict=True)},
                "mean": float(self.mean.mean()), "max": float(self.max.max())}


@dataclass(frozen=True)
class RateCheck:
    """The control-rate criterion of this module's docstring, evaluated for one backend."""

    rate_hz: float
    chunk_size: int
    n_action_steps: int
    refill_threshold: int
    ensembling: bool
    latency_p95_ms: float
    budget_ms: float
    met: bool
    max_rate_hz: float

    @property
    def period_ms(self) -> float:
        return 1e3 / self.rate_hz

    @property
    def slack_ms(self) -> float:
        return self.budget_ms - self.latency_p95_ms


def check_rate(latency_p95_ms: float, rate_hz: float, chunk_size: int, n_action_steps: int, refill_threshold: int,
               ensembling: bool = False) -> RateCheck:
    """Evaluate ``L < budget`` (see module docstring) for a p95 latency in milliseconds."""
    if rate_hz <= 0:
        raise SettingError(f"control rate must be positive, got {rate_hz}")
    if not ensembling and not 0 <= refill_threshold < n_action_steps:
        raise SettingError(f"refill threshold must be in [0, n_action_steps={n_action_steps}), got {refill_threshold}")
    period = 1e3 / rate_hz
    latency = float(latency_p95_ms)
    if ensembling:
        budget, actions_per_latency = period, 1
    else:
        stale = math.ceil(latency / period) if latency > 0 else 0
        fresh = min(n_action_steps, chunk_size - stale)
        budget = max(0, min(refill_threshold, fresh)) * period
        actions_per_latency = min(refill_threshold, chunk_size // 2)
    max_rate = actions_per_latency * 1e3 / latency if latency > 0 else math.inf
    return RateCheck(rate_hz, chunk_size, n_action_steps, refill_threshold, ensembling, latency, budget,
                     latency < budget, max_rate)


@dataclass
class BackendRun:
    """What one backend did over the episode."""

    backend: str
    actions: np.ndarray  # (T, A) select_action outputs
    inference_steps: list[int]  # steps at which select_action ran the network
    total_ms: np.ndarray  # end-to-end latency of every timed inference (empty when emulated)
    inference_ms: np.ndarray  # network-only part of the same inferences (empty when emulated)
    rate: RateCheck | None  # None when emulated: a stand-in's latency says nothing about the device
    vs_recorded: JointErrors | None = None
    vs_reference: JointErrors | None = None
    fidelity: dict[str, Any] | None = None  # export.fidelity.compare vs the reference: normalized, per joint
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def emulated(self) -> bool:
        return self.rate is None

    @property
    def latency(self) -> Summary:
        return summarize(self.total_ms)


@dataclass
class ReplayResult:
    episode: Episode
    joint_names: tuple[str, ...]
    runs: list[BackendRun]

    def run(self, backend: str) -> BackendRun:
        return next(r for r in self.runs if r.backend == backend)

    @property
    def reference(self) -> str:
        """The backend the others are compared with (run first)."""
        return self.runs[0].backend

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (no per-step arrays)."""
        names = self.joint_names
        return {
            "episode": {"source": self.episode.source, "index": self.episode.index, "steps": len(self.episode),
                        "fps": self.episode.fps, "notes": list(self.episode.notes)},
            "joint_names": list(names),
            "backends": {
                r.backend: {
                    "description": r.description,
                    "emulated": r.emulated,
                    "inferences_in_schedule": len(r.inference_steps),
                    "timed_inferences": int(r.total_ms.size),
                    "latency_ms": None if r.emulated else r.latency.as_dict(),
                    "inference_only_ms": None if r.emulated else summarize(r.inference_ms).as_dict(),
                    "error_vs_recorded": r.vs_recorded.as_dict(names) if r.vs_recorded else None,
                    f"error_vs_{self.reference}": r.vs_reference.as_dict(names) if r.vs_reference else None,
                    f"fidelity_vs_{self.reference}": r.fidelity,
                    "control_rate": None if r.rate is None else {
                        "rate_hz": r.rate.rate_hz, "chunk_size": r.rate.chunk_size,
                        "n_action_steps": r.rate.n_action_steps, "refill_threshold": r.rate.refill_threshold,
                        "ensembling": r.rate.ensembling, "latency_p95_ms": r.rate.latency_p95_ms,
                        "budget_ms": r.rate.budget_ms, "met": r.rate.met, "max_rate_hz": r.rate.max_rate_hz},
                } for r in self.runs
            },
        }


def _timing_steps(steps: int, scheduled: set[int], wanted: int) -> set[int]:
    """Extra, evenly spread steps at which to time ``predict_chunk`` so percentiles rest on ``wanted`` samples."""
    missing = wanted - len(scheduled)
    free = [s for s in range(steps) if s not in scheduled]
    if missing <= 0 or not free:
        return set()
    picks = np.linspace(0, len(free) - 1, min(missing, len(free))).round().astype(int)
    return {free[i] for i in picks}


def replay_backend(policy: Policy, episode: Episode, latency_samples: int = 30,
                   progress: Progress | None = None, name: str = "") -> tuple[np.ndarray, list[int], np.ndarray,
                                                                               np.ndarray]:
    """Run ``policy`` over ``episode``: (actions, inference steps, end-to-end ms, network ms).

    One warm-up inference on the first observation precedes the run (first calls allocate
    and pick kernels). Where the schedule infers rarely (long chunks, short episode), extra
    side-effect-free ``predict_chunk`` calls are timed so latency percentiles rest on at
    least ``latency_samples`` inferences; they do not change the actions.
    """
    steps = len(episode)
    ensembling = policy.temporal_ensemble_coeff is not None
    scheduled = set(range(steps)) if ensembling else set(range(0, steps, policy.n_action_steps))
    extra = _timing_steps(steps, scheduled, latency_samples)
    actions, inferred, total, network = [], [], [], []

    def record() -> None:
        t = policy.last_times
        total.append(t.preprocess_ms + t.inference_ms + t.postprocess_ms)
        network.append(t.inference_ms)

    policy.reset()
    for step, obs in enumerate(episode.observations()):
        if step == 0:
            policy.predict_chunk(obs)
        actions.append(policy.select_action(obs))
        if policy.inferred_last_step:
            inferred.append(step)
            record()
        if step in extra:
            policy.predict_chunk(obs)
            record()
        if progress is not None:
            progress(name, step + 1, steps)
    return np.stack(actions), inferred, np.asarray(total), np.asarray(network)


def replay(artifacts: PolicyArtifacts, episode: Episode, backends: Sequence[str], *,
           rate_hz: float | None = None, n_action_steps: int | None = None,
           temporal_ensemble_coeff: float | None = None, refill_threshold: int | None = None,
           num_threads: int | None = None, latency_samples: int = 30,
           backend_options: Mapping[str, Mapping[str, Any]] | None = None,
           progress: Progress | None = None, chunk_aggregation: str = "latest",
           blend_steps: int = 0) -> ReplayResult:
    """Replay ``episode`` through every backend in ``backends`` (``reference_backend()`` is added as the reference).

    ``backend_options`` maps a backend name to its ``BackendOptions.extra``; ``chunk_aggregation``
    and ``blend_steps`` are :class:`~act_policy.core.policy.Policy`'s.
    """
    if len(episode) == 0:
        raise DatasetError(f"{episode.source}: episode {episode.index} has no steps")
    rate = rate_hz or episode.fps
    spec = artifacts.spec
    if episode.actions is not None and episode.actions.shape[1] != spec.action_dim:
        raise DatasetError(f"{episode.source}: recorded actions have {episode.actions.shape[1]} entries, "
                           f"the policy outputs {spec.action_dim}")
    recorded_names = episode.joint_names or ()
    names = recorded_names if len(recorded_names) == spec.action_dim else tuple(f"joint_{i}"
                                                                               for i in range(spec.action_dim))
    reference = reference_backend()
    order = [reference, *(b for b in dict.fromkeys(backends) if b != reference)]
    unknown = [b for b in order if b not in BACKENDS]
    if unknown:  # before minutes of replay through the other backends
        raise BackendError(f"unknown backend(s) {', '.join(unknown)}; available: {', '.join(BACKENDS)}")
    runs: list[BackendRun] = []
    for backend in order:
        options = BackendOptions(num_threads=num_threads, extra=dict((backend_options or {}).get(backend, {})))
        policy = Policy(artifacts, create_backend(backend, artifacts, options), n_action_steps,
                        temporal_ensemble_coeff, chunk_aggregation, blend_steps)
        try:
            threshold = policy.n_action_steps // 2 if refill_threshold is None else refill_threshold
            ensembling = policy.temporal_ensemble_coeff is not None
            check_rate(0.0, rate, policy.chunk_size, policy.n_action_steps, threshold, ensembling)  # fail early
            description = policy.describe()
            emulated = bool(description.get("emulated"))
            actions, inferred, total, network = replay_backend(policy, episode, 0 if emulated else latency_samples,
                                                               progress, backend)
        finally:
            policy.close()
        if emulated:
            run = BackendRun(backend, actions, inferred, np.empty(0), np.empty(0), None, description=description)
        else:
            check = check_rate(summarize(total).p95, rate, policy.chunk_size, policy.n_action_steps, threshold,
                               ensembling)
            run = BackendRun(backend, actions, inferred, total, network, check, description=description)
        if episode.actions is not None:
            run.vs_recorded = JointErrors.between(actions, episode.actions)
        if runs:
            run.vs_reference = JointErrors.between(actions, runs[0].actions)
            run.fidelity = compare(runs[0].actions, actions, artifacts, names)
        runs.append(run)
    return ReplayResult(episode, names, runs)

"""Which CPUs and scheduling priorities the node's threads get, so inference cannot starve the control loop.

The node runs (docs/ros.md, "Scheduling design"):

* the **control thread**, which ticks at ``control_rate_hz`` and publishes commands; it keeps the priority
  the process was started with, or gets ``SCHED_FIFO`` when ``control_realtime_priority`` asks for it and
  the system permits it;
* the **executor threads**, which run the input subscriptions, the services and the diagnostics timer at
  the process's priority;
* the **inference process** (``inference_isolation: process``, the default): normally scheduled whatever
  started it, ``inference_nice`` levels lower, it loads and runs the backend; the node's **handover
  worker** thread converts and normalizes the observations, sends them and waits (``SCHED_FIFO`` one below
  the control thread when that one is real-time, so it is never preempted holding the GIL);
* or, with ``inference_isolation: thread``, an **inference thread** in the node that loads and runs the
  policy ``inference_nice`` levels lower. Torch's and ONNX Runtime's pool threads inherit the priority of
  the thread that creates them, which is why the policy is loaded in that thread
  (see :class:`act_policy.runtime.realtime.InferenceWorker`).

Linux's scheduling calls act on the calling *thread* when given its thread id (``setpriority``) or 0
(``sched_setscheduler``, ``sched_setaffinity``): that is what makes per-thread priorities possible in one
process. Raising one's nice value never needs a privilege; ``SCHED_FIFO`` needs ``CAP_SYS_NICE`` or an
``RLIMIT_RTPRIO`` (``ulimit -r``) at least the requested priority. Every function here reports what it
could not do as text for the log instead of raising: a missing privilege degrades timing, not function.
"""

from __future__ import annotations

import os
import sys
import threading

MAX_NICE = 19
MAX_DEFAULT_THREADS = 4  # a Pi 5 has four cores; more rarely helps a batch-1 model


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on (``taskset``, cgroup cpusets and containers included)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))  # platforms without affinity (macOS): every CPU


def default_inference_threads(n_cpus: int) -> int:
    """Inference threads when ``num_threads`` is 0: one CPU stays free for the control loop and the drivers.

    ``n_cpus - 1``, at least 1, at most :data:`MAX_DEFAULT_THREADS` (4 CPUs → 3, 2 → 1, 1 → 1).
    Measured on 2 cores: a second inference thread saved 6 % of inference time and doubled the control
    jitter (docs/ros.md, "Inference threads").
    """
    return max(1, min(MAX_DEFAULT_THREADS, n_cpus - 1))


def lower_current_thread_priority(levels: int) -> str | None:
    """Raise the calling thread's nice value by ``levels`` (capped at 19); threads it creates later inherit it.

    Relative to the thread's current value, so it never needs a privilege, also in a process that was
    started niced. Returns None when done, else why not (for a warning).
    """
    if levels <= 0:
        return None
    if not sys.platform.startswith("linux"):
        return f"inference priority not lowered: per-thread nice values need Linux, this is {sys.platform}"
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, current + levels))
    except OSError as exc:
        return f"inference priority not lowered (setpriority on thread {tid}: {exc})"
    return None


def current_thread_nice() -> int:
    """The calling thread's nice value (Linux: per thread; elsewhere the process's)."""
    tid = threading.get_native_id() if sys.platform.startswith("linux") else 0
    return os.getpriority(os.PRIO_PROCESS, tid)


def make_current_thread_realtime(priority: int) -> str | None:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority`` (1–99); 0 leaves it as it is.

    Returns None when done, else why not: without ``CAP_SYS_NICE`` or a sufficient ``RLIMIT_RTPRIO`` the
    kernel refuses (EPERM) and the thread stays at normal priority.
    """
    if priority <= 0:
        return None
    if not hasattr(os, "sched_setscheduler"):
        return f"control thread not made real-time: SCHED_FIFO needs Linux, this is {sys.platform}"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        limit = _rtprio_limit()
        return (f"control thread not made real-time (SCHED_FIFO {priority}: {exc}); it runs at normal priority. "
                f"Grant CAP_SYS_NICE or an rtprio limit >= {priority} (RLIMIT_RTPRIO is {limit})")
    return None


def make_current_thread_normal() -> None:
    """Put the calling thread under the normal policy (``SCHED_OTHER``) if it is real-time; needs no privilege.

    For a process that must not inherit a real-time policy from the thread that started it (the inference
    process, when the node runs under ``chrt`` or was started from a real-time thread)."""
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _rtprio_limit() -> str:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    except (ImportError, AttributeError, OSError):
        return "unknown"
    return "unlimited" if soft == getattr(resource, "RLIM_INFINITY", -1) else str(soft)

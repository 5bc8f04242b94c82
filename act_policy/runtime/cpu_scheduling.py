"""Which CPUs and scheduling priorities the node's threads get, so inference cannot starve the control loop.

The node runs (docs/ros.md, "Scheduling design"):

* the **control thread**, which ticks at ``control_rate_hz`` and publishes commands; it keeps the priority
  the process was started with, or gets ``SCHED_FIFO`` when ``control_realtime_priority`` asks for it and
  the system permits it;
* the **executor thread**, which runs the input subscriptions, the services and the diagnostics timer at
  the process's priority;
* both, and the handover worker below, with a short EEVDF slice (``sched_slice_us``), so that they preempt
  other normally scheduled work as soon as they wake;
* the **inference process** (``inference_isolation: process``, the default): in its own session, normally
  scheduled whatever started it, it and its session ``inference_nice`` levels lower, it loads and runs the
  backend; the node's **handover worker** thread converts and normalizes the observations, sends them and
  waits (``SCHED_FIFO`` one below the control thread when that one is real-time, so it is never preempted
  holding the GIL);
* or, with ``inference_isolation: thread``, an **inference thread** in the node that loads and runs the
  policy ``inference_nice`` levels lower. Torch's and ONNX Runtime's pool threads inherit the priority of
  the thread that creates them, which is why the policy is loaded in that thread
  (see :class:`act_policy.runtime.realtime.InferenceWorker`).

Linux's scheduling calls act on the calling *thread* when given its thread id (``setpriority``) or 0
(``sched_setscheduler``, ``sched_setattr``, ``sched_setaffinity``): that is what makes per-thread priorities
possible in one process. Raising one's nice value or one's session's and shortening one's slice never need a
privilege; ``SCHED_FIFO`` needs ``CAP_SYS_NICE`` or an ``RLIMIT_RTPRIO`` (``ulimit -r``) at least the
requested priority. Every function here reports what it could not do as text for the log instead of
raising: a missing privilege or kernel feature degrades timing, not function.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
import time

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


def make_current_thread_normal() -> str | None:
    """Put the calling thread under the normal policy (``SCHED_OTHER``) if it is real-time, with the kernel's
    default slice; needs no privilege. Returns None, or why the slice could not be reset (for a warning).

    For inference and the recorder, which must not inherit a real-time policy or a short slice from the
    thread that started them (the node's threads, or a node run under ``chrt``)."""
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return set_current_thread_slice(0)


# sched_setattr / sched_getattr syscall numbers: arch/x86/entry/syscalls/syscall_64.tbl and the generic table
# arm64 uses (include/uapi/asm-generic/unistd.h); Python's os module has neither call
_SCHED_ATTR_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # 64-bit processes only (arm32: 380/381)
SLICE_RANGE_US = (100, 100_000)  # what Linux takes as a custom slice (it clamps sched_runtime to 0.1–100 ms)


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` (include/uapi/linux/sched/types.h, ``SCHED_ATTR_SIZE_VER1``)."""

    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
                ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32),
                ("sched_runtime", ctypes.c_uint64), ("sched_deadline", ctypes.c_uint64),
                ("sched_period", ctypes.c_uint64), ("sched_util_min", ctypes.c_uint32),
                ("sched_util_max", ctypes.c_uint32)]


def set_current_thread_slice(slice_us: int) -> str | None:
    """Ask Linux's EEVDF scheduler for a ``slice_us`` µs slice for the calling, normally scheduled thread
    (0 = the kernel's default); threads it creates afterwards inherit it.

    Since Linux 6.12 a waking task whose slice is shorter than the running task's preempts it if it is owed
    CPU time (eligible) and its deadline is earlier (``sched_setattr`` with ``sched_runtime`` for
    ``SCHED_OTHER``; Documentation/scheduler/sched-eevdf.rst): its wake-up latency drops while its share of
    the CPU stays what its nice value gives, so no privilege is needed. Returns None when the kernel reports
    the slice back, else why not (for a warning): another OS or architecture, a 32-bit Python, a kernel
    before 6.12 (it ignores the request), a real-time thread. ValueError outside 0 and
    :data:`SLICE_RANGE_US`.
    """
    if slice_us and not SLICE_RANGE_US[0] <= slice_us <= SLICE_RANGE_US[1]:
        raise ValueError(f"a scheduling slice is 0 or {SLICE_RANGE_US[0]}–{SLICE_RANGE_US[1]} us, got {slice_us}")
    # a 32-bit Python on a 64-bit kernel (Raspberry Pi OS armhf on a Pi 5) reports machine() aarch64 too
    linux64 = sys.platform.startswith("linux") and sys.maxsize > 2**32
    numbers = _SCHED_ATTR_SYSCALLS.get(platform.machine()) if linux64 else None
    if numbers is None:
        return None if slice_us == 0 else (f"scheduling slice not set: needs a 64-bit Python on Linux x86_64 or "
                                           f"aarch64, this is {sys.platform} {platform.machine()}")
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    syscall.restype = ctypes.c_long
    attr = _SchedAttr()

    def call(number: int, size: int = 0) -> int:  # (pid 0 = this thread, attr, size, flags); the errno, 0 = ok
        return 0 if syscall(number, 0, ctypes.addressof(attr), size, 0) == 0 else ctypes.get_errno()
    if err := call(numbers[1], ctypes.sizeof(attr)):
        return f"scheduling slice not set (sched_getattr: {os.strerror(err)})"
    if attr.sched_policy != os.SCHED_OTHER:
        return None if slice_us == 0 else (f"scheduling slice not set: the thread is not normally scheduled "
                                           f"(policy {attr.sched_policy})")
    # sched_setattr sets the nice value too: the thread's own goes back in (lowering it would need a privilege)
    attr.size, attr.sched_flags, attr.sched_runtime = ctypes.sizeof(attr), 0, slice_us * 1000
    if err := call(numbers[0]):  # sched_setattr(pid, attr, flags): the flags are 0 here
        return f"scheduling slice not set (sched_setattr {slice_us} us: {os.strerror(err)})"
    if slice_us and (call(numbers[1], ctypes.sizeof(attr)) or attr.sched_runtime != slice_us * 1000):
        return (f"scheduling slice not set: this kernel ({platform.release()}) does not take a custom slice "
                "(Linux >= 6.12 does); the node's threads keep the default")
    return None


AUTOGROUP_WRITE_TRIES = 5  # an unprivileged write is refused (EAGAIN) within 100 ms of any other, machine-wide


def autogroups_enabled() -> bool:
    """Whether the kernel shares the CPU between sessions first (``CONFIG_SCHED_AUTOGROUP`` and
    ``kernel.sched_autogroup_enabled`` 1; the sysctl exists only with the option)."""
    return _read("/proc/sys/kernel/sched_autogroup_enabled") == "1"


def session_nice(pid: int | str = "self") -> int | None:
    """The nice value of the autogroup (session) of ``pid``: None where the kernel has no autogroups and for a
    process still in init's session (the root task group, e.g. a service started without ``setsid``), whose
    ``/proc/<pid>/autogroup`` is empty (kernel/sched/autogroup.c prints only a real autogroup's
    ``/autogroup-<id> nice <n>``)."""
    fields = (_read(f"/proc/{pid}/autogroup") or "").split()
    return int(fields[2]) if len(fields) == 3 and fields[1] == "nice" else None


def lower_session_priority(levels: int, relative_to: int) -> str | None:
    """Set the nice value of the calling process's autogroup (its session) to ``relative_to + levels``
    (capped at 19); never needs a privilege.

    With autogroups (``CONFIG_SCHED_AUTOGROUP``, ``kernel.sched_autogroup_enabled`` 1) the scheduler shares
    the CPU between sessions first and between the threads of one session only then, so a thread's nice
    value counts only within its session (man 7 sched). A new session starts at 0, hence ``relative_to``:
    the session nice of the process it is to yield to. Only for a process that leads its own session
    (``start_new_session``): in a shared one it would lower its neighbours too. A process in a cgroup with
    its own CPU weight (a systemd service with ``CPUWeight=``, a container with CPU limits) is not
    autogrouped: the write then changes nothing, and the thread nice values alone rank it within the cgroup.
    Returns None when done or when autogroups are off, else why not.
    """
    if levels <= 0 or not autogroups_enabled():
        return None
    if os.getsid(0) != os.getpid():
        return "session priority not lowered: the process does not lead its own session"
    target = min(MAX_NICE, relative_to + levels)
    for attempt in range(AUTOGROUP_WRITE_TRIES):
        try:
            _write_autogroup_nice(target)
            return None
        except BlockingIOError:  # kernel/sched/autogroup.c: at most one unprivileged write per 100 ms
            time.sleep(0.11 * (attempt + 1))
        except OSError as exc:
            return f"session priority not lowered (/proc/self/autogroup: {exc})"
    return (f"session priority not lowered: /proc/self/autogroup refused {AUTOGROUP_WRITE_TRIES} writes "
            "(another process was changing an autogroup at the same time)")


def _write_autogroup_nice(nice: int) -> None:
    with open("/proc/self/autogroup", "w") as f:
        f.write(str(nice))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _rtprio_limit() -> str:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    except (ImportError, AttributeError, OSError):
        return "unknown"
    return "unlimited" if soft == getattr(resource, "RLIM_INFINITY", -1) else str(soft)

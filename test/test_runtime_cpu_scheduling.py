"""Scheduling of the node's threads: inference below the control loop, a CPU left free, ticks on deadlines.

Nothing here measures speed: priorities are read back from the kernel, deadlines are computed on given
times, and the control thread is checked by what it did, not by how fast.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading

import pytest
from proc_helpers import autogroup_nice, thread_slices_ns

from act_policy.runtime import cpu_scheduling
from act_policy.runtime.cpu_scheduling import (
    current_thread_nice,
    default_inference_threads,
    lower_current_thread_priority,
    make_current_thread_normal,
    make_current_thread_realtime,
    set_current_thread_slice,
    usable_cpus,
)
from act_policy.runtime.realtime import InferenceWorker
from act_policy.runtime.session import inference_threads, start_inference_worker
from act_policy.runtime.ticker import Ticker, next_deadline

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def in_new_thread(fn):
    """Run ``fn`` in a fresh thread (so priority changes never touch the test runner's thread)."""
    box = {}
    t = threading.Thread(target=lambda: box.update(value=fn()))
    t.start()
    t.join()
    return box["value"]


def test_default_threads_leave_one_cpu_to_the_control_loop_and_drivers():
    assert [default_inference_threads(n) for n in (1, 2, 3, 4, 8, 64)] == [1, 1, 2, 3, 4, 4]


def test_zero_threads_means_the_default_for_the_cpus_this_process_may_use():
    assert usable_cpus() and usable_cpus() <= set(range(os.cpu_count() or 1))
    assert inference_threads({"num_threads": 0}) == default_inference_threads(len(usable_cpus()))
    assert inference_threads({"num_threads": 3}) == 3


@linux_only
def test_lowering_priority_affects_only_the_calling_thread_and_what_it_starts_later():
    before = current_thread_nice()

    def lowered():
        assert lower_current_thread_priority(5) is None
        return current_thread_nice(), in_new_thread(current_thread_nice)

    own, child = in_new_thread(lowered)
    assert own == child == min(19, before + 5)
    assert current_thread_nice() == before  # the caller's thread is untouched


@linux_only
def test_priority_is_lowered_relative_to_the_current_value_and_capped():
    def twice():
        lower_current_thread_priority(15)
        lower_current_thread_priority(15)
        return current_thread_nice()

    assert in_new_thread(twice) == 19
    before = current_thread_nice()
    assert lower_current_thread_priority(0) is None and current_thread_nice() == before


@linux_only
def test_the_inference_worker_loads_and_infers_at_the_lowered_priority():
    base = current_thread_nice()
    worker = start_inference_worker({"inference_nice": 7})
    try:
        assert worker.setup_messages == []
        # what the backend creates while loading (ORT's pool) inherits the worker's priority
        assert worker.call(lambda: (current_thread_nice(), in_new_thread(current_thread_nice))) == (
            min(19, base + 7),) * 2
    finally:
        assert worker.close()
    assert current_thread_nice() == base


def test_worker_call_returns_the_value_or_raises_in_the_caller():
    worker = InferenceWorker()
    try:
        assert worker.call(lambda: threading.current_thread().name) == "act_policy-inference"
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 / 0)
        assert worker.call(lambda: 42) == 42  # an exception does not kill the thread
    finally:
        worker.close()


def test_real_time_priority_is_applied_or_refused_with_the_reason():
    assert make_current_thread_realtime(0) is None

    def attempt():
        refused = make_current_thread_realtime(10)
        policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
        return refused, policy

    refused, policy = in_new_thread(attempt)
    if refused is None:  # privileged (CAP_SYS_NICE or an rtprio limit): the thread really is SCHED_FIFO
        assert policy == os.SCHED_FIFO
    else:
        assert "runs at normal priority" in refused and ("rtprio" in refused or "Linux" in refused)
        assert policy != getattr(os, "SCHED_FIFO", object())


def test_a_real_time_thread_can_always_return_to_normal_scheduling():
    def attempt():
        make_current_thread_realtime(10)  # granted or not, the end state is the same
        make_current_thread_normal()
        return os.sched_getscheduler(0)

    assert in_new_thread(attempt) == os.SCHED_OTHER


def own_slice_ns() -> int:
    """The calling thread's slice as /proc shows it (the test is skipped where it does not)."""
    slices = thread_slices_ns(os.getpid())
    if str(threading.get_native_id()) not in slices:
        pytest.skip("this kernel does not show se.slice in /proc/PID/task/TID/sched")
    return slices[str(threading.get_native_id())]


def kernel_takes_a_slice() -> bool:
    return in_new_thread(lambda: set_current_thread_slice(300) is None)


custom_slices = pytest.mark.skipif(not sys.platform.startswith("linux") or not kernel_takes_a_slice(),
                                   reason="custom EEVDF slices need Linux >= 6.12 on x86_64 or aarch64")


@custom_slices
def test_a_short_slice_is_taken_by_the_thread_and_by_the_threads_it_starts_later():
    def shortened():
        before = own_slice_ns()
        assert set_current_thread_slice(250) is None
        return before, own_slice_ns(), in_new_thread(own_slice_ns)

    default, own, started = in_new_thread(shortened)
    assert own == started == 250_000 != default
    assert own_slice_ns() == default  # the caller's thread is untouched


@custom_slices
def test_slice_zero_and_normal_scheduling_give_the_thread_the_kernels_default_back():
    default = in_new_thread(own_slice_ns)

    def reset(undo):
        set_current_thread_slice(300)
        assert undo() is None
        return own_slice_ns()

    assert in_new_thread(lambda: reset(lambda: set_current_thread_slice(0))) == default
    assert in_new_thread(lambda: reset(make_current_thread_normal)) == default


@custom_slices
def test_a_kernel_that_ignores_the_slice_is_reported_not_assumed(monkeypatch):
    """Before Linux 6.12 sched_setattr succeeds for a normal thread but ignores sched_runtime: only reading the
    slice back tells. Stand-in for such a kernel: sched_yield (returns 0, changes nothing) in sched_setattr's
    place."""
    machine = platform.machine()
    sched_yield = {"x86_64": 24, "aarch64": 124}[machine]
    monkeypatch.setitem(cpu_scheduling._SCHED_ATTR_SYSCALLS, machine,
                        (sched_yield, cpu_scheduling._SCHED_ATTR_SYSCALLS[machine][1]))
    refused = in_new_thread(lambda: set_current_thread_slice(300))
    assert "does not take a custom slice (Linux >= 6.12 does)" in refused


def test_a_slice_outside_what_linux_takes_is_a_programming_error():
    for bad in (1, 99, 100_001):
        with pytest.raises(ValueError, match="0 or 100"):
            set_current_thread_slice(bad)


def test_a_slice_on_an_architecture_without_a_known_syscall_is_reported_not_attempted(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    assert "64-bit Python on Linux x86_64 or aarch64" in set_current_thread_slice(300)
    assert set_current_thread_slice(0) is None  # the default needs nothing


LOWER_SESSION = ("from act_policy.runtime.cpu_scheduling import lower_session_priority as f, session_nice; "
                 "print(f(3, relative_to=2), session_nice())")
autogroups = pytest.mark.skipif(not cpu_scheduling.autogroups_enabled(),
                                reason="the kernel has no autogroups, or they are off")


@autogroups
def test_a_process_leading_its_own_session_sets_the_session_relative_to_the_given_one_and_no_other():
    mine = autogroup_nice(os.getpid())
    leader = subprocess.run([sys.executable, "-c", LOWER_SESSION], capture_output=True, text=True,
                            start_new_session=True, check=True)
    assert leader.stdout.split() == ["None", "5"]  # 2 + 3, whatever this session's own value
    member = subprocess.run([sys.executable, "-c", LOWER_SESSION], capture_output=True, text=True, check=True)
    assert "does not lead its own session" in member.stdout
    assert autogroup_nice(os.getpid()) == mine


@autogroups
def test_an_unprivileged_write_refused_for_the_100_ms_rate_limit_is_retried(monkeypatch):
    """kernel/sched/autogroup.c refuses (EAGAIN) a write without CAP_SYS_ADMIN within 100 ms of the last one,
    machine-wide: another node configuring at the same moment must not leave inference at full weight."""
    attempts = []

    def refused_twice(nice: int) -> None:
        attempts.append(nice)
        if len(attempts) <= 2:
            raise BlockingIOError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(cpu_scheduling, "_write_autogroup_nice", refused_twice)
    monkeypatch.setattr(os, "getsid", lambda _: os.getpid())  # as if this process led its own session
    assert cpu_scheduling.lower_session_priority(5, relative_to=1) is None
    assert attempts == [6, 6, 6]

    def always_refused(nice: int) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(cpu_scheduling, "_write_autogroup_nice", always_refused)
    assert "refused 5 writes" in cpu_scheduling.lower_session_priority(5, relative_to=1)


def test_with_autogroups_off_the_session_is_left_alone(monkeypatch):
    monkeypatch.setattr(cpu_scheduling, "_read", lambda path: "0")
    monkeypatch.setattr(cpu_scheduling, "_write_autogroup_nice", lambda nice: pytest.fail("written"))
    assert cpu_scheduling.lower_session_priority(5, relative_to=0) is None


def test_a_process_in_inits_session_has_no_session_nice(monkeypatch):
    """kernel/sched/autogroup.c prints nothing for the root task group: a node started by a service manager
    without setsid (as CI runs the tests) must not fail reading it."""
    monkeypatch.setattr(cpu_scheduling, "_read", lambda path: "")
    assert cpu_scheduling.session_nice() is None
    monkeypatch.setattr(cpu_scheduling, "_read", lambda path: "/autogroup-1558 nice -3")
    assert cpu_scheduling.session_nice() == -3


def test_next_deadline_keeps_the_rate_without_drift():
    assert next_deadline(1.0, 1.004, 0.1) == pytest.approx((1.1, 0))  # a late tick does not shift the grid
    assert next_deadline(1.0, 1.1, 0.1) == pytest.approx((1.1, 0))


def test_ticks_missed_while_the_thread_had_no_cpu_are_skipped_not_bursted():
    due, missed = next_deadline(1.0, 1.25, 0.1)  # ticks due at 1.1 and 1.2 passed
    assert missed == 2 and due == pytest.approx(1.3)


def test_ticker_ticks_until_stopped_and_never_after():
    ticks = []
    enough = threading.Event()

    def tick():
        ticks.append(threading.current_thread().name)
        if len(ticks) >= 3:
            enough.set()

    ticker = Ticker(tick, lambda: 0.001)
    assert ticker.start() == []
    assert enough.wait(30)
    assert ticker.stop()  # True: the thread has ended, so no tick can follow
    assert set(ticks) == {"act_policy-control"}


def test_ticker_reports_what_its_setup_refused():
    ticker = Ticker(lambda: None, lambda: 1.0, setup=lambda: ["no real-time priority"])
    try:
        assert ticker.start() == ["no real-time priority"]
    finally:
        assert ticker.stop()


def test_onnx_runtime_pool_threads_are_told_not_to_spin():
    import onnxruntime as ort

    from act_policy.backends.base import no_spinning

    options = ort.SessionOptions()
    no_spinning(options)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"

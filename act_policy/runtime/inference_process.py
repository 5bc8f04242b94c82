"""Inference in a child process, so that the control loop never waits for the GIL held by inference code.

With inference on a thread of the node's own process, every control tick needs CPython's GIL, which the
inference thread's Python code (the backend's glue, pre- and post-processing) holds for up to the switch
interval; and when that thread runs niced on a busy CPU, it can be preempted *while holding the GIL*, so the
tick waits until the scheduler runs the low-priority thread again (priority inversion: at 30 Hz with inference
and a CPU hog on both cores of the 2-core test machine, jitter p99 55 ms, see benchmarks/README.md). A child
process has its own interpreter: the node keeps its input callbacks, services and control tick, and the child
runs the network at a lower priority without ever blocking them.

:class:`ProcessBackend` is a :class:`~act_policy.backends.Backend` whose :meth:`~ProcessBackend.infer` sends the
normalized inputs to the child and waits for its chunk; normalization and scheduling stay in the node, so
every registered backend runs isolated without knowing it.

Private protocol (both ends in this module) over two connections the parent creates:

* ``jobs`` (duplex): parent → child one :class:`LoadRequest`; child → parent ``("ready", artifacts without
  weights, describe() facts, warnings)`` or ``("failed", exception)``; then per inference parent → child
  ``(seq, layout)`` followed by each input array's raw bytes (see :func:`_send_inputs`), and child → parent
  ``(seq, chunk or None, error text or None)``.
* ``cancels`` (parent → child): the ``seq`` of an inference to stop (ONNX Runtime can; a torch forward pass
  cannot, its result is then discarded by the caller). End of file on it means the parent is gone (closed,
  crashed or killed): the child exits at once, also in the middle of an inference.

Messages are pickled (:mod:`multiprocessing.connection`) between the node and the child it started; nothing
is unpickled from a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from act_policy.backends.base import Backend, BackendOptions, ModelInputs
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import ActPolicyError, BackendError
from act_policy.runtime.cpu_scheduling import session_nice

# The child's entry. The parent's sys.path comes first, so that the child imports exactly the act_policy (and
# the runtimes) the node runs, wherever it was started from. The priority is set before anything else is
# imported (every thread inherits its creator's, and numpy's BLAS starts its threads at import): normal
# scheduling and slice, whatever the starting thread had, then inference_nice levels lower — the process and,
# as it leads its own session, its session (with autogroups a nice value only counts within the session).
_BOOTSTRAP = """
import json, sys
sys.path[:] = json.loads(sys.argv[1])
from act_policy.runtime.cpu_scheduling import (lower_current_thread_priority, lower_session_priority,
                                               make_current_thread_normal)
levels, node_session_nice = int(sys.argv[4]), int(sys.argv[5])
refused = [r for r in (make_current_thread_normal(), lower_current_thread_priority(levels),
                       lower_session_priority(levels, relative_to=node_session_nice)) if r]
from act_policy.runtime.inference_process import serve
serve(int(sys.argv[2]), int(sys.argv[3]), "; ".join(refused) or None)
"""


@dataclass(frozen=True)
class LoadRequest:
    """What the child loads: ``source`` as :func:`act_policy.core.policy.load_artifacts` reads it (a LeRobot
    checkpoint, a deploy bundle or ``demo``), on backend ``backend`` with ``options``; the child runs ``nice``
    levels below the node (0: the node's priority)."""

    source: str
    backend: str
    options: BackendOptions
    nice: int = 0

    def load(self) -> tuple[PolicyArtifacts, Backend]:
        """Read ``source`` and create the backend on it, in the calling process (the child, or the node's
        inference thread with ``inference_isolation: thread``)."""
        from act_policy.backends import create_backend
        from act_policy.core.policy import load_artifacts

        artifacts = load_artifacts(self.source)
        return artifacts, create_backend(self.backend, artifacts, self.options)


class ProcessBackend(Backend):
    """Runs backend ``request.backend`` in a child process; start one with :meth:`start`.

    :meth:`infer` blocks its (the node's inference worker) thread in a socket read, which holds no GIL;
    :meth:`cancel` is one small write and never blocks the control thread. A child that dies makes
    :meth:`infer` raise :class:`BackendError` with its exit status (its own error output precedes it in the
    node's log); it is not restarted: reconfigure the node to start a new one.
    """

    name = "process"

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions, facts: dict[str, Any],
                 child: subprocess.Popen, jobs: Connection, cancels: Connection, warnings: list[str]) -> None:
        super().__init__(artifacts, options)
        self._facts = facts
        self._child = child
        self._jobs = jobs
        self._cancels = cancels
        self.warnings = warnings  # what the child could not do (e.g. lower its priority), for the node's log
        self._lock = threading.Lock()  # one inference at a time on the one connection
        self._seq = 0
        self._running: int | None = None

    @classmethod
    def start(cls, request: LoadRequest) -> ProcessBackend:
        """Start the child, have it load the policy and return the backend bound to it; blocks while it loads.

        ``artifacts`` of the result are the child's without weights (spec, statistics, source): all the node
        needs to pre- and post-process. Errors of loading (CheckpointError, BackendError, MissingDependencyError
        ...) are raised here as the child raised them.
        """
        jobs, child_jobs = Pipe(duplex=True)
        child_cancels, cancels = Pipe(duplex=False)
        fds = (child_jobs.fileno(), child_cancels.fileno())
        # a node still in init's session (no autogroup: None) competes at the weight of a nice-0 session
        child = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, json.dumps(sys.path), *map(str, fds),
                                  str(request.nice), str(session_nice() or 0)], pass_fds=fds,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        child_jobs.close()  # the child holds the only other ends: its exit is our end of file
        child_cancels.close()
        try:
            jobs.send(request)
            reply = jobs.recv()
        except (EOFError, OSError) as exc:
            _stop(child, cancels)
            jobs.close()
            raise BackendError(f"the inference process (pid {child.pid}) exited while loading {request.source!r} "
                               f"with status {child.returncode}; its error output is above") from exc
        if reply[0] == "failed":
            _stop(child, cancels)
            jobs.close()
            raise reply[1]
        _, artifacts, facts, warnings = reply
        return cls(artifacts, request.options, facts, child, jobs, cancels, warnings)

    @property
    def pid(self) -> int:
        return self._child.pid

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        with self._lock:
            self._seq += 1
            seq = self._running = self._seq
            try:
                _send_inputs(self._jobs, seq, inputs)
                answered, chunk, error = self._jobs.recv()
            except (EOFError, OSError) as exc:
                raise BackendError(self._exit_text()) from exc
            finally:
                self._running = None
        if answered != seq:  # cannot happen with one request at a time; a protocol error must not pass silently
            raise BackendError(f"the inference process answered request {answered}, expected {seq}")
        if error is not None:
            raise BackendError(f"in the inference process (pid {self.pid}): {error}")
        return chunk

    def cancel(self) -> None:
        seq = self._running
        if seq is not None:
            with contextlib.suppress(OSError):  # the child is gone; infer reports it
                self._cancels.send(seq)

    def describe(self) -> dict[str, Any]:
        return {**self._facts, "inference_process": self.pid}

    def close(self, timeout: float = 5.0) -> None:
        """End the child (at once, also during an inference: that :meth:`infer` then raises BackendError).

        Safe while another thread is in :meth:`infer`: the connection it reads is then left to be closed when
        it is collected, since closing it under the read could hand its descriptor number to a new pipe."""
        _stop(self._child, self._cancels, timeout)
        if self._lock.acquire(blocking=False):
            try:
                self._jobs.close()
            finally:
                self._lock.release()

    def _exit_text(self) -> str:
        try:
            status = self._child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            status = None
        what = f"exited with status {status}" if status is not None else "stopped answering"
        if status is not None and status < 0:
            try:
                what += f" (signal {signal.Signals(-status).name})"
            except ValueError:  # a real-time signal has no name
                what += f" (signal {-status})"
        return (f"the inference process (pid {self.pid}) {what}; its error output, if any, is above. Deactivate, "
                "clean up and configure the node to start a new one")


def _send_inputs(jobs: Connection, seq: int, inputs: ModelInputs) -> None:
    """The inputs as a small pickled layout, then each array's bytes straight from its buffer: a camera image is
    3.7 MB of float32 at 480x640, and pickling it would copy it while holding the GIL (2 ms here), the very
    wait this module exists to keep from the control thread; writing a buffer releases the GIL."""
    arrays = [np.ascontiguousarray(a) for a in inputs.images]
    optional = [np.ascontiguousarray(a) if a is not None else None for a in (inputs.state, inputs.env_state)]
    layout = [(a.shape, a.dtype.str) for a in arrays], [(a.shape, a.dtype.str) if a is not None else None
                                                          for a in optional]
    jobs.send((seq, layout))
    for a in (*arrays, *(a for a in optional if a is not None)):
        jobs.send_bytes(memoryview(a).cast("B"))


def _receive_inputs(jobs: Connection) -> tuple[int, ModelInputs]:
    seq, (images, optional) = jobs.recv()

    def receive(shape: tuple[int, ...], dtype: str) -> np.ndarray:
        array = np.empty(shape, np.dtype(dtype))
        jobs.recv_bytes_into(memoryview(array).cast("B"))
        return array
    images = [receive(*layout) for layout in images]
    state, env_state = (receive(*layout) if layout is not None else None for layout in optional)
    return seq, ModelInputs(images, state, env_state)


def _stop(child: subprocess.Popen, cancels: Connection, timeout: float = 5.0) -> None:
    cancels.close()  # end of file: the child exits at once
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# ---------------------------------------------------------------------------------------------- the child
def serve(jobs_fd: int, cancels_fd: int, refused_priority: str | None = None) -> None:
    """The child process: load what the parent asks for, then answer inference requests until it goes away.

    ``refused_priority``: why the bootstrap could not lower the priority, if it could not (sent as a warning)."""
    # the node decides when its inference process ends (its own session already keeps a terminal's Ctrl-C
    # and group-wide signals of the node's process group away)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jobs, cancels = Connection(jobs_fd), Connection(cancels_fd, writable=False)
    lock = threading.Lock()
    state: dict[str, Any] = {"backend": None, "running": None, "cancelled": 0}  # requests are numbered from 1

    def listen_for_cancels() -> None:  # from the start: a node that dies while this loads ends it too
        while True:
            try:
                seq = cancels.recv()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: no one wants the result, and the CPU is better used elsewhere
            with lock:
                state["cancelled"] = max(state["cancelled"], seq)
                if state["running"] == seq:
                    state["backend"].cancel()

    threading.Thread(target=listen_for_cancels, name="act_policy-cancels", daemon=True).start()
    request: LoadRequest = jobs.recv()
    backend = state["backend"] = _load(request, jobs, [refused_priority] if refused_priority else [])
    if backend is None:
        return
    while True:
        try:
            seq, inputs = _receive_inputs(jobs)
        except (EOFError, OSError):
            os._exit(0)
        while cancels.poll(0):  # a cancel written before the request's last byte: let the listener take it first
            time.sleep(0.0005)
        with lock:  # a cancel can arrive before its request has been read
            cancelled = seq <= state["cancelled"]
            state["running"] = None if cancelled else seq
        if cancelled:
            reply = (seq, None, "cancelled before it started")
        else:
            try:
                reply = (seq, backend.infer(inputs), None)
            except Exception as exc:  # reported to the parent, which turns it into a diagnostic
                reply = (seq, None, f"{type(exc).__name__}: {exc}")
            with lock:
                state["running"] = None
        try:
            jobs.send(reply)
        except OSError:
            os._exit(0)


def _load(request: LoadRequest, jobs: Connection, warnings: list[str]) -> Backend | None:
    try:
        artifacts, backend = request.load()
    except Exception as exc:
        if not isinstance(exc, ActPolicyError):  # unexpected: the traceback stays here, in the node's output
            traceback.print_exc()
        jobs.send(("failed", _transferable(exc)))
        return None
    jobs.send(("ready", replace(artifacts, weights={}), backend.describe(), warnings))
    return backend


def _transferable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (the parent re-raises it as it is), else a BackendError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return BackendError(f"loading in the inference process failed: {type(exc).__name__}: {exc}")
    return exc

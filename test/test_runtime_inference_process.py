"""Inference in a child process (inference_isolation: process): same results, its own priority, its own lifetime."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from proc_helpers import autogroup_nice, process_gone, thread_nice_values, thread_slices_ns

from act_policy.backends import BackendOptions, ModelInputs, create_backend
from act_policy.core.errors import BackendError, CheckpointError
from act_policy.core.policy import Policy, load_artifacts
from act_policy.runtime.cpu_scheduling import autogroups_enabled, make_current_thread_realtime, set_current_thread_slice
from act_policy.runtime.inference_process import LoadRequest, ProcessBackend
from act_policy.runtime.parameters import ParameterError, validate
from act_policy.runtime.realtime import InferenceWorker
from act_policy.runtime.session import build_runtime, start_node_policy

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; nice is per thread on Linux")
ONE_THREAD = BackendOptions(num_threads=1)


def inputs_for(policy: Policy, seed: int) -> ModelInputs:
    rng = np.random.default_rng(seed)
    observation = {f.name: rng.integers(0, 256, (f.shape[1], f.shape[2], 3), dtype=np.uint8)
                   for f in policy.spec.cameras}
    observation[policy.spec.state.name] = rng.normal(size=policy.spec.state.shape).astype(np.float32)
    return policy.preprocess(observation)


@pytest.fixture
def isolated(tiny_bundle: Path):
    backend = ProcessBackend.start(LoadRequest(str(tiny_bundle), "onnx_fp32", ONE_THREAD))
    yield backend
    backend.close()


def node_parameters(bundle: Path, **overrides) -> dict:
    return {"model_path": str(bundle), "backend": "onnx_fp32", "num_threads": 1,
            "joint_names": [f"j{i}" for i in range(6)], "camera_topics": ["front=/cam"], **overrides}


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Hang guard only: the condition is expected within milliseconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_the_child_computes_exactly_what_the_backend_computes_in_the_node(isolated, tiny_bundle):
    artifacts = load_artifacts(tiny_bundle)
    local = create_backend("onnx_fp32", artifacts, ONE_THREAD)
    policy = Policy(isolated.artifacts, isolated)
    for seed in range(3):
        inputs = inputs_for(policy, seed)
        np.testing.assert_array_equal(isolated.infer(inputs), local.infer(inputs))


def test_the_node_gets_the_policys_description_without_its_weights(isolated, tiny_bundle):
    artifacts = load_artifacts(tiny_bundle)
    assert isolated.artifacts.spec == artifacts.spec
    assert dict(isolated.artifacts.weights) == {}
    facts = isolated.describe()
    assert facts["backend"] == "onnx_fp32" and facts["threads"] == 1
    assert facts["inference_process"] == isolated.pid != os.getpid()


@linux_only
def test_the_child_and_every_thread_it_starts_run_at_the_requested_nice_level(tiny_bundle):
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    backend = ProcessBackend.start(LoadRequest(str(tiny_bundle), "onnx_fp32", BackendOptions(num_threads=2), nice=7))
    try:
        backend.infer(inputs_for(Policy(backend.artifacts, backend), 0))  # pools exist once it has run
        niceness = thread_nice_values(backend.pid)
        assert len(niceness) >= 3  # main, cancel listener, ONNX Runtime's second intra-op thread
        assert set(niceness.values()) == {min(19, mine + 7)}
        assert backend.warnings == []
    finally:
        backend.close()


@linux_only
def test_the_child_runs_normally_scheduled_even_when_started_from_a_real_time_thread(tiny_bundle):
    """A real-time policy inherited by inference would starve everything else on its cores."""
    box = {}

    def start():
        make_current_thread_realtime(10)  # e.g. a node run under `chrt`; refused without the privilege
        box["backend"] = ProcessBackend.start(LoadRequest(str(tiny_bundle), "onnx_fp32", ONE_THREAD))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    backend = box["backend"]
    try:
        assert os.sched_getscheduler(backend.pid) == os.SCHED_OTHER
    finally:
        backend.close()


@linux_only
def test_the_child_leads_its_own_session_lowered_like_itself_and_keeps_the_default_slice(tiny_bundle):
    """With autogroups a nice value counts only within a session: sharing the node's, inference would still
    compete with the drivers and every other program at full weight. The node's short slice (sched_slice_us)
    is for its own threads, not for inference."""
    box = {}

    def start():
        box["shortened"] = set_current_thread_slice(300) is None  # as the node's executor thread does
        box["backend"] = ProcessBackend.start(LoadRequest(str(tiny_bundle), "onnx_fp32", ONE_THREAD, nice=7))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    backend = box["backend"]
    try:
        assert os.getsid(backend.pid) == backend.pid != os.getsid(0)
        if autogroups_enabled():  # a node in init's session (no autogroup) counts as a nice-0 session
            assert autogroup_nice(backend.pid) == min(19, (autogroup_nice(os.getpid()) or 0) + 7)
        if box["shortened"]:  # a kernel that takes custom slices (Linux >= 6.12)
            assert 300_000 not in thread_slices_ns(backend.pid).values()
        assert backend.warnings == []
    finally:
        backend.close()


def test_load_errors_are_raised_in_the_node_as_the_child_raised_them(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "nowhere")):
        ProcessBackend.start(LoadRequest(str(tmp_path / "nowhere"), "onnx_fp32", ONE_THREAD))


def test_backend_errors_at_load_name_the_setting(tiny_bundle):
    with pytest.raises(BackendError, match="backend 'onnx_fp32' takes no backend options, got \\['typo'\\]"):
        ProcessBackend.start(LoadRequest(str(tiny_bundle), "onnx_fp32", BackendOptions(extra={"typo": 1})))


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_the_node_names_its_backend_options_parameter_and_how_to_clear_it(tiny_bundle, isolation):
    """A params file written for hailo (its backend_options) combined with another backend."""
    hailo_options = '{"mode": "hybrid", "fallback_backend": "cpu_int8"}'
    settings = validate(node_parameters(tiny_bundle, backend_options=hailo_options, inference_isolation=isolation))
    with pytest.raises(ParameterError) as refused:
        start_node_policy(settings)
    assert str(refused.value) == (
        "backend_options: backend 'onnx_fp32' takes no backend options, got ['fallback_backend', 'mode']: these look "
        "like another backend's options, which do not carry over; give none (the parameter is a JSON object in a "
        "string: '{}' for none, in the params file or with -p \"backend_options:='{}'\")")


def test_a_failed_inference_is_a_backend_error_and_the_child_keeps_serving(isolated):
    policy = Policy(isolated.artifacts, isolated)
    good = inputs_for(policy, 0)
    with pytest.raises(BackendError, match=r"in the inference process \(pid \d+\): "):
        isolated.infer(ModelInputs([good.images[0][:, :, :10]], good.state))
    assert isolated.infer(good).shape == (policy.chunk_size, policy.action_dim)


def test_a_child_that_died_makes_inference_fail_with_its_exit_status(isolated):
    policy = Policy(isolated.artifacts, isolated)
    os.kill(isolated.pid, signal.SIGKILL)
    with pytest.raises(BackendError, match=r"exited with status -9 \(signal SIGKILL\).*configure the node"):
        isolated.infer(inputs_for(policy, 0))


def test_a_request_cancelled_before_the_child_read_it_is_not_computed(isolated):
    """The node may cancel while it is still writing the inputs; the child must not run that inference."""
    policy = Policy(isolated.artifacts, isolated)
    isolated._cancels.send(isolated._seq + 1)  # the cancel of the next request, arriving first
    with pytest.raises(BackendError, match="cancelled before it started"):
        isolated.infer(inputs_for(policy, 0))
    assert isolated.infer(inputs_for(policy, 0)).shape == (policy.chunk_size, policy.action_dim)


@linux_only
def test_with_a_real_time_control_thread_the_handover_worker_runs_one_level_below_it(tiny_bundle):
    def scheduling():
        return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    for priority, isolation in ((40, "process"), (40, "thread"), (1, "process")):
        settings = validate(node_parameters(tiny_bundle, control_realtime_priority=priority,
                                            inference_isolation=isolation, inference_nice=0))
        policy, worker, _ = start_node_policy(settings)
        runtime = build_runtime(settings, policy, worker=worker)
        try:
            refused = runtime.start_control(lambda result: None)
            if refused or isolation == "thread" or priority == 1:  # not permitted here, or not wanted
                assert scheduling() == (os.SCHED_OTHER, 0) == worker.call(scheduling), (priority, isolation)
            else:
                assert worker.call(scheduling) == (os.SCHED_FIFO, priority - 1)
        finally:
            runtime.close()


def test_cleanup_ends_the_child_even_while_an_inference_is_running(tiny_bundle):
    settings = validate(node_parameters(tiny_bundle))
    policy, worker, _ = start_node_policy(settings)
    runtime = build_runtime(settings, policy, worker=worker)
    child = policy.backend.pid
    started, release = threading.Event(), threading.Event()

    def stuck(job):  # an inference that does not end in time
        started.set()
        release.wait()
    wait_for(lambda: worker.submit(None, stuck), "the worker to take the job")
    started.wait()
    assert runtime.close(timeout=0.1) is False
    assert process_gone(child)
    release.set()


def test_ctrl_c_in_the_terminal_does_not_stop_the_child(isolated):
    """SIGINT reaches the whole process group; the node alone decides when its inference process ends."""
    policy = Policy(isolated.artifacts, isolated)
    os.kill(isolated.pid, signal.SIGINT)
    time.sleep(0.2)  # a child that dies of it would be gone by now
    assert isolated.infer(inputs_for(policy, 0)).shape == (policy.chunk_size, policy.action_dim)


def test_closing_ends_the_child(tiny_bundle):
    backend = ProcessBackend.start(LoadRequest(str(tiny_bundle), "onnx_fp32", ONE_THREAD))
    backend.close()
    assert process_gone(backend.pid)


@linux_only
def test_the_child_exits_at_once_when_the_node_is_killed(tiny_bundle, tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys
        from act_policy.backends import BackendOptions
        from act_policy.runtime.inference_process import LoadRequest, ProcessBackend
        backend = ProcessBackend.start(LoadRequest({str(tiny_bundle)!r}, "onnx_fp32", BackendOptions(num_threads=1)))
        print(backend.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    node = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert node.returncode == -signal.SIGKILL, node.stderr
    child = int(node.stdout.split()[0])
    wait_for(lambda: process_gone(child), f"the orphaned inference process {child} to exit")


def test_the_node_runs_inference_in_a_child_process_by_default(tiny_bundle):
    settings = validate(node_parameters(tiny_bundle))
    assert settings["inference_isolation"] == "process"
    policy, worker, warnings = start_node_policy(settings)
    try:
        assert isinstance(policy.backend, ProcessBackend) and isinstance(worker, InferenceWorker)
        assert warnings == []
        observation = {camera: np.zeros((64, 80, 3), np.uint8) for camera in policy.camera_names}
        chunk = policy.predict_chunk(observation | {"observation.state": np.zeros(6, np.float32)})
        assert chunk.shape == (policy.chunk_size, 6) and np.isfinite(chunk).all()
    finally:
        worker.close()
        policy.close()

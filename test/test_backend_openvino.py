"""OpenVINO backends: the bundle's float graph on OpenVINO's CPU plugin, in the precision the name says or not
at all."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from bundle_helpers import tiny_policy_artifacts

from act_policy import BackendError
from act_policy.backends import BackendOptions, ModelInputs, backend_class, create_backend
from act_policy.backends.openvino import OpenVinoFP16Backend, check_float32, keep_in_float32
from act_policy.core.errors import MissingDependencyError
from act_policy.core.policy import Policy, load_artifacts
from act_policy.export.fidelity import compare, held_out_observations

# Export's own parity bar for a float32 graph (normalized action units): OpenVINO fp32 and ONNX Runtime
# compute the same float32 graph and differ only in summation order and fused kernels (measured: 3e-6).
FP32_TOLERANCE = 1e-4
# fp16 rounds every activation to 11 significant bits. Measured on the emulated Cortex-A76 (arm rig, OpenVINO
# 2026.4.1, 3 held-out observations, before the backbone's float32 islands): the tiny bundle's fp16 chunks are
# 1.7 % normalized relative L2 from onnx_fp32, largest per-joint offset 0.013 σ; the bounds leave room for other
# seeds, not for a wrong precision (bfloat16, 8 significant bits, is ~8x coarser).
FP16_REL_L2 = 0.05
FP16_MAX_BIAS_SIGMA = 0.03


def chunks(backend_name: str, bundle: Path, observations: list, threads: int = 1) -> list[np.ndarray]:
    artifacts = load_artifacts(bundle)
    policy = Policy(artifacts, create_backend(backend_name, artifacts, BackendOptions(num_threads=threads)))
    return [policy.predict_chunk(o) for o in observations]


def cpu_has_fp16() -> bool:
    return "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_fp32_matches_onnx_fp32_on_the_same_graph(tiny_bundle: Path) -> None:
    artifacts = load_artifacts(tiny_bundle)
    observations = held_out_observations(artifacts, 3)
    errors = compare(chunks("onnx_fp32", tiny_bundle, observations),
                     chunks("openvino_fp32", tiny_bundle, observations), artifacts)
    assert errors["max_abs_normalized"] < FP32_TOLERANCE


def test_openvino_fp16_computes_in_fp16_or_refuses_on_a_cpu_without_fp16_arithmetic(tiny_bundle: Path) -> None:
    """On a Pi 5 it runs in fp16 within the fp16 tolerance; on an x86 CPU OpenVINO would quietly run bfloat16
    or float32 for an f16 request, and the backend refuses, naming the CPU's capabilities."""
    artifacts = load_artifacts(tiny_bundle)
    observations = held_out_observations(artifacts, 3)
    if cpu_has_fp16():
        errors = compare(chunks("onnx_fp32", tiny_bundle, observations),
                         chunks("openvino_fp16", tiny_bundle, observations), artifacts)
        assert errors["rel_l2_normalized"] < FP16_REL_L2
        assert errors["max_abs_bias_normalized"] < FP16_MAX_BIAS_SIGMA
    else:
        with pytest.raises(BackendError, match=r"openvino_fp16.*cannot compute in f16.*capabilities: .*FP32"):
            create_backend("openvino_fp16", artifacts, BackendOptions(num_threads=1))


def test_describe_names_the_graph_precision_threads_and_openvino_version(tiny_bundle: Path) -> None:
    facts = create_backend("openvino_fp32", load_artifacts(tiny_bundle), BackendOptions(num_threads=1)).describe()
    assert facts["backend"] == "openvino_fp32" and facts["graph"] == "act_fp32.onnx"
    assert facts["inference_precision"] == "f32" and facts["threads"] == 1
    assert facts["openvino"] == ov.get_version()


def test_num_threads_is_what_openvino_runs_with_in_latency_mode(tiny_bundle: Path) -> None:
    for threads in {1, os.cpu_count() or 1}:
        backend = create_backend("openvino_fp32", load_artifacts(tiny_bundle), BackendOptions(num_threads=threads))
        assert backend.compiled.get_property("INFERENCE_NUM_THREADS") == threads
        assert backend.compiled.get_property("PERFORMANCE_HINT") == "LATENCY"
        assert backend.compiled.get_property("NUM_STREAMS") == 1


def test_more_threads_than_cores_are_refused_rather_than_silently_reduced(tiny_bundle: Path) -> None:
    too_many = (os.cpu_count() or 1) + 1
    with pytest.raises(BackendError, match=rf"num_threads {too_many} requested.*one thread per core"):
        create_backend("openvino_fp32", load_artifacts(tiny_bundle), BackendOptions(num_threads=too_many))


def test_a_checkpoint_is_refused_with_the_command_that_makes_a_bundle(tiny_checkpoint: Path) -> None:
    with pytest.raises(BackendError, match=r"openvino_fp32.*not one.*act-policy export"):
        create_backend("openvino_fp32", load_artifacts(tiny_checkpoint))


def test_artifacts_without_a_folder_are_refused() -> None:
    with pytest.raises(BackendError, match="deploy bundle"):
        create_backend("openvino_fp16", tiny_policy_artifacts())


def test_only_the_cpu_device_and_no_backend_options_are_accepted(tiny_bundle: Path) -> None:
    artifacts = load_artifacts(tiny_bundle)
    with pytest.raises(BackendError, match=r"CPU plugin only, got device 'cuda'"):
        create_backend("openvino_fp32", artifacts, BackendOptions(device="cuda"))
    with pytest.raises(BackendError, match=r"takes no backend options, got \['precision'\]"):
        create_backend("openvino_fp32", artifacts, BackendOptions(extra={"precision": "f16"}))


def test_a_cancelled_inference_raises_and_the_next_one_runs(tiny_bundle: Path) -> None:
    """cancel() comes from another thread while infer() waits; each attempt cancels right after the start, so
    with a tiny graph still a few attempts may finish first: some must be stopped, none may return garbage."""
    artifacts = load_artifacts(tiny_bundle)
    backend = create_backend("openvino_fp32", artifacts, BackendOptions(num_threads=1))
    inputs = Policy(artifacts, backend).preprocess(held_out_observations(artifacts, 1)[0])
    expected = backend.infer(inputs)
    request = backend.request

    class CancelledOnStart:  # the real request; cancel() is called as soon as it has started
        def __getattr__(self, attr: str):
            return getattr(request, attr)

        def start_async(self, feed: dict) -> None:
            request.start_async(feed)
            threading.Thread(target=backend.cancel).start()

    backend.request = CancelledOnStart()
    stopped = 0
    for _ in range(20):
        try:
            np.testing.assert_array_equal(backend.infer(inputs), expected)
        except BackendError as exc:
            assert "inference cancelled" in str(exc)
            stopped += 1
    assert stopped > 0
    backend.request = request
    np.testing.assert_array_equal(backend.infer(inputs), expected)


def test_an_idle_cancel_does_not_fail_the_next_inference(tiny_bundle: Path) -> None:
    artifacts = load_artifacts(tiny_bundle)
    backend = create_backend("openvino_fp32", artifacts, BackendOptions(num_threads=1))
    inputs: ModelInputs = Policy(artifacts, backend).preprocess(held_out_observations(artifacts, 1)[0])
    backend.cancel()
    assert np.isfinite(backend.infer(inputs)).all()


def test_without_openvino_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails as if absent
    monkeypatch.delitem(sys.modules, "act_policy.backends.openvino", raising=False)
    with pytest.raises(MissingDependencyError, match=r"openvino_fp16.*pip install 'openvino.*\.\[openvino\]"):
        backend_class("openvino_fp16")


def test_the_demo_runs_on_openvino_from_the_cached_demo_bundle(monkeypatch, tmp_path: Path, capsys) -> None:
    from conftest import tiny_spec

    import act_policy.export.demo_bundle as demo_bundle
    from act_policy.core.synthetic import demo_artifacts
    from act_policy.tools.cli import main

    monkeypatch.setattr(demo_bundle, "demo_artifacts", lambda seed=0: demo_artifacts(tiny_spec(), seed))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["demo", "--backend", "openvino_fp32", "--duration", "0.3", "--n-action-steps", "5",
                 "--threads", "1"]) == 0
    out = capsys.readouterr()
    assert "exporting the demo policy into the cache" in out.err
    assert "backend openvino_fp32, 1 threads" in out.out


def test_a_bundle_runs_on_openvino_without_torch(tiny_bundle: Path) -> None:
    """The robot-side promise of issue 13: a bundle backend imports no torch (here: torch made unimportable)."""
    code = f"""
import sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
import act_policy
policy = act_policy.load_policy({str(tiny_bundle)!r}, backend="openvino_fp32", num_threads=1)
from act_policy.core.synthetic import synthetic_observations
obs = next(iter(synthetic_observations(policy.spec, policy.artifacts.input_stats, 1, seed=5)))
print(policy.select_action(obs).shape)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "(6,)"


def float32_islands(bundle: Path) -> tuple[ov.Core, ov.Model, ov.Model, frozenset[str]]:
    """(core, the bundle's float graph, the same marked with openvino_fp16's float32 islands, the island nodes)."""
    core = ov.Core()
    model = core.read_model(bundle / "act_fp32.onnx")
    marked, nodes = keep_in_float32(core, model, OpenVinoFP16Backend.float32_scopes, bundle / "act_fp32.onnx")
    return core, model, marked, nodes


def test_the_fp16_backends_float32_islands_are_marked_for_openvino_and_change_nothing_else(tiny_bundle: Path) -> None:
    core, model, marked, nodes = float32_islands(tiny_bundle)
    expected = {op.get_friendly_name() for op in model.get_ordered_ops()
                if op.get_type_name() not in ("Parameter", "Result", "Constant")
                and op.get_friendly_name().startswith(OpenVinoFP16Backend.float32_scopes)}
    assert nodes == expected and len(nodes) >= 4
    assert {op.get_friendly_name() for op in marked.get_ordered_ops()
            if "DisablePrecisionConversion_0" in op.get_rt_info()} == nodes
    # same graph and weights: identical float32 results
    feed = {port.get_any_name(): np.random.default_rng(0).standard_normal(tuple(port.get_shape())).astype(np.float32)
            for port in model.inputs}
    results = [core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request().infer(feed)[0]
               for m in (model, marked)]
    np.testing.assert_array_equal(results[1], results[0])


def test_a_float32_scope_that_matches_no_node_is_refused(tiny_bundle: Path) -> None:
    core = ov.Core()
    model = core.read_model(tiny_bundle / "act_fp32.onnx")
    with pytest.raises(BackendError, match=r"act_fp32.onnx: no node named /model/no_such_module/\.\.\. to keep in"):
        keep_in_float32(core, model, ("/model/backbone/", "/model/no_such_module/"), tiny_bundle / "act_fp32.onnx")


@pytest.mark.skipif(not {"BF16", "FP16"} & set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
                    reason="needs a CPU on which OpenVINO computes below float32 (BF16 or FP16 arithmetic)")
def test_compiled_islands_are_checked_to_run_in_float32_while_the_rest_runs_lower(tiny_bundle: Path) -> None:
    """Real OpenVINO runtime models: with the marks the island kernels run float32 and the check passes; the same
    graph without them runs those kernels in bf16/f16 and the check refuses it, naming a node and the precision."""
    core, model, marked, nodes = float32_islands(tiny_bundle)
    lower = "f16" if "FP16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "bf16"
    config = {"INFERENCE_PRECISION_HINT": lower}
    check_float32(core.compile_model(marked, "CPU", config).get_runtime_model(), nodes, "openvino_fp16")
    unmarked = core.compile_model(model, "CPU", config).get_runtime_model()
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str) for op in unmarked.get_ordered_ops()}
    assert lower in precisions  # the check below is not vacuous: OpenVINO did lower the precision here
    with pytest.raises(BackendError, match=rf"openvino_fp16.*computes /model/backbone/.* in {lower}.*kept in float32"):
        check_float32(unmarked, nodes, "openvino_fp16")


def test_islands_that_no_compiled_kernel_carries_cannot_be_checked_and_are_refused(tiny_bundle: Path) -> None:
    core, model, _, _ = float32_islands(tiny_bundle)
    runtime = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).get_runtime_model()
    with pytest.raises(BackendError, match=r"no kernel of the compiled model computes the float32 nodes"):
        check_float32(runtime, frozenset({"/model/renamed/Conv"}), "openvino_fp16")

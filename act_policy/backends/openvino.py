"""OpenVINO backends: a deploy bundle's float graph (act_fp32.onnx) on OpenVINO's CPU plugin.

``openvino_fp16`` computes in IEEE half precision: on a Cortex-A76 (Raspberry Pi 5: ARMv8.2 FP16
arithmetic) OpenVINO's ARM kernels run the float graph in fp16 for about as many instructions as
ONNX Runtime's INT8 graph, with a smaller error and no calibration (benchmarks/pi5_proxy.md).
``openvino_fp32`` computes in float32, the reference of the two. The precision comes from the backend
name and is checked after compilation: OpenVINO quietly substitutes another precision when the CPU
lacks the one asked for (an x86 CPU with AVX512-BF16 computes bfloat16 for an ``f16`` hint), and a
backend that silently ran in another precision than its name says is refused instead.

Like the ONNX Runtime backends they run a deploy bundle (``act-policy export``), never a checkpoint.
Requires the ``openvino`` package (act_policy's ``openvino`` extra; PyPI has wheels for x86_64 and aarch64).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from act_policy.backends.base import Backend, BackendOptions, ModelInputs, flat_inputs
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError, CheckpointError
from act_policy.export.bundle import FP32_GRAPH, is_bundle, read_policy_document, verified_file


class OpenVinoBackend(Backend):
    """Runs the bundle's float graph on OpenVINO's CPU plugin in :attr:`precision`, latency mode (one stream)."""

    graph = FP32_GRAPH
    precision: ov.Type = ov.Type.f32

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions) -> None:
        super().__init__(artifacts, options)
        if options.device != "cpu":
            raise BackendError(f"backend {self.name!r} runs on OpenVINO's CPU plugin only, got device "
                               f"{options.device!r} (expected 'cpu')")
        source = artifacts.source
        if source is None or not is_bundle(source):
            raise BackendError(f"backend {self.name!r} runs a deploy bundle, but {source} is not one (no policy.json); "
                               "create it with `act-policy export CHECKPOINT --out BUNDLE` and load BUNDLE")
        document = read_policy_document(source)
        path = self.graph_file(source, document)
        self.input_names: list[str] = document["graphs"]["inputs"]
        config = {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": options.threads,
                  "PERFORMANCE_HINT": "LATENCY"}  # one stream: a batch-1 request gets all the threads
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except RuntimeError as exc:  # OpenVINO reports reading and compiling failures as RuntimeError
            raise CheckpointError(f"{path}: OpenVINO cannot compile this graph: {exc}") from exc
        self._check_honoured(options.threads)
        declared = [port.get_any_name() for port in self.compiled.inputs]
        if declared != self.input_names:
            raise CheckpointError(f"{path}: graph inputs {declared} differ from policy.json graphs.inputs "
                                  f"{self.input_names}")
        self.request = self.compiled.create_infer_request()
        self._cancelled = False  # set by cancel(): tells a cancelled run from a failed one

    def graph_file(self, bundle: Path, document: dict[str, Any]) -> Path:
        """The graph to compile: the bundle's :attr:`graph`, checked against policy.json's checksum."""
        return verified_file(bundle, self.graph, document)

    def _check_honoured(self, threads: int) -> None:
        """Refuse a compiled model whose precision or thread count is not what was asked for."""
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        if precision != self.precision:
            capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            raise BackendError(
                f"backend {self.name!r}: this CPU cannot compute in {self.precision.get_type_name()} with OpenVINO "
                f"(it would run {precision.get_type_name()}; the CPU plugin's capabilities: "
                f"{', '.join(capabilities)}); {self.name} expects a CPU with "
                f"{self.precision.get_type_name().upper()} arithmetic (e.g. a Raspberry Pi 5's Cortex-A76): "
                "use openvino_fp32, onnx_fp32 or cpu_int8 here")
        actual_threads = self.compiled.get_property("INFERENCE_NUM_THREADS")
        if actual_threads != threads:
            raise BackendError(f"backend {self.name!r}: num_threads {threads} requested, but OpenVINO's CPU plugin "
                               f"would use {actual_threads}: expected at most one thread per core it can run on")

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        # start + wait rather than infer(): only an asynchronously started request can be cancelled
        self._cancelled = False
        self.request.start_async(dict(zip(self.input_names, flat_inputs(inputs), strict=True)))
        try:
            self.request.wait()
        except RuntimeError as exc:  # "Infer Request was canceled", or a real failure
            what = "inference cancelled" if self._cancelled else "inference failed"
            raise BackendError(f"backend {self.name!r}: {what}: {exc}") from exc
        return np.array(self.request.get_output_tensor(0).data[0], np.float32)  # a copy: the next run reuses it

    def cancel(self) -> None:
        """OpenVINO's ``InferRequest.cancel``: a running request stops, and :meth:`infer` raises BackendError."""
        self._cancelled = True
        self.request.cancel()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "graph": self.graph, "openvino": ov.get_version(),
                "inference_precision": self.precision.get_type_name()}

    def close(self) -> None:
        del self.request, self.compiled


class OpenVinoFP16Backend(OpenVinoBackend):
    """The float graph computed in fp16 (needs a CPU with FP16 arithmetic: ARMv8.2, e.g. the Pi 5)."""

    name = "openvino_fp16"
    precision = ov.Type.f16


class OpenVinoFP32Backend(OpenVinoBackend):
    """The float graph computed in float32 on any CPU (OpenVINO's default on x86 with BF16 would be bfloat16)."""

    name = "openvino_fp32"

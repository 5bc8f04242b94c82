"""ONNX Runtime backends: ``onnx_fp32`` (act_fp32.onnx) and ``cpu_int8`` (act_int8.onnx).

They run a deploy bundle's graphs, so ``artifacts.source`` must be a bundle folder. Given a
plain LeRobot checkpoint they raise an error naming the command that makes one, rather than
exporting implicitly: export takes minutes for a full-size model and writes files, and
``cpu_int8`` additionally needs calibration data only the user can choose.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from act_policy.backends.base import Backend, BackendOptions, ModelInputs, flat_inputs, no_spinning
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError, CheckpointError
from act_policy.export.bundle import FP32_GRAPH, INT8_GRAPH, is_bundle, read_policy_document, verified_file


class OnnxRuntimeBackend(Backend):
    """Runs one graph of a bundle on ONNX Runtime's CPU execution provider."""

    graph = FP32_GRAPH

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions) -> None:
        super().__init__(artifacts, options)
        if options.device != "cpu":
            raise BackendError(f"backend {self.name!r} runs on the CPU only, got device {options.device!r}")
        source = artifacts.source
        if source is None or not is_bundle(source):
            steps = "act-policy export CHECKPOINT --out BUNDLE" + (
                " && act-policy quantize BUNDLE --calib OBSERVATIONS" if self.graph == INT8_GRAPH else "")
            raise BackendError(f"backend {self.name!r} runs a deploy bundle, but {source} is not one "
                               f"(no policy.json); create it with `{steps}` and load BUNDLE")
        self.document = read_policy_document(source)
        path = verified_file(source, self.graph, self.document)
        self.input_names: list[str] = self.document["graphs"]["inputs"]
        self._run_options: ort.RunOptions | None = None
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        no_spinning(session_options)
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types, not exported stably
            raise CheckpointError(f"{path}: ONNX Runtime cannot load this graph: {exc}") from exc
        declared = [i.name for i in self.session.get_inputs()]
        if declared != self.input_names:
            raise CheckpointError(f"{path}: graph inputs {declared} differ from policy.json graphs.inputs "
                                  f"{self.input_names}")

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        feed = dict(zip(self.input_names, flat_inputs(inputs), strict=True))
        self._run_options = ort.RunOptions()  # a fresh one per run: cancel() must only ever stop this one
        return self.session.run(None, feed, self._run_options)[0][0]

    def cancel(self) -> None:
        """ONNX Runtime checks ``RunOptions.terminate`` between kernels and then fails the run."""
        if self._run_options is not None:
            self._run_options.terminate = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "graph": self.graph, "onnxruntime": ort.__version__}

    def close(self) -> None:
        del self.session


class OnnxFP32Backend(OnnxRuntimeBackend):
    name = "onnx_fp32"


class CpuInt8Backend(OnnxRuntimeBackend):
    """The recommended CPU path: statically calibrated INT8 (see act_policy.export.quantize)."""

    name = "cpu_int8"
    graph = INT8_GRAPH

    def describe(self) -> dict[str, Any]:
        quant = self.document.get("quantization", {})
        return {**super().describe(), "activation_type": quant.get("activation_type"),
                "calibration_source": quant.get("calibration_source"),
                "calibration_samples": quant.get("calibration_samples")}

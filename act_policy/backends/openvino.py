"""OpenVINO backends: a deploy bundle's float graph (act_fp32.onnx) on OpenVINO's CPU plugin.

``openvino_fp16`` computes in IEEE half precision: on a Cortex-A76 (Raspberry Pi 5: ARMv8.2 FP16
arithmetic) OpenVINO's ARM kernels run the float graph in fp16 for about as many instructions as
ONNX Runtime's INT8 graph, with a smaller error and no calibration (benchmarks/pi5_proxy.md).
``openvino_fp32`` computes in float32, the reference of the two. The precision comes from the backend
name and is checked after compilation: OpenVINO quietly substitutes another precision when the CPU
lacks the one asked for (an x86 CPU with AVX512-BF16 computes bfloat16 for an ``f16`` hint), and a
backend that silently ran in another precision than its name says is refused instead.

``openvino_fp16`` keeps a few parts of the graph in float32 (:attr:`OpenVinoFP16Backend.float32_scopes`): fp16
everywhere is 1.3 % normalized relative L2 from float32 at 480×640, above the 1 % bar of issue 13; the float32
islands bring it under at a measured instruction cost (benchmarks/pi5_proxy.md, "fp16 with float32 islands").
The islands use OpenVINO's own mechanism, the ``DisablePrecisionConversion`` runtime attribute (OpenVINO's
src/common/transformations/.../rt_info/disable_precision_conversion.hpp) that the CPU plugin's
``ConvertPrecision(f32 -> f16, keep_precision_sensitive_in_fp32=true)`` pass honours for an ``f16`` inference
precision (src/plugins/intel_cpu/src/transformations/transformation_pipeline.cpp): the nodes keep float32 and
Converts are inserted at the island borders. OpenVINO's Python API cannot create that attribute, so it is written
into the model's IR (the ``rt_info`` of each island layer) and the IR read back; the attribute is then checked on
the read model, and the compiled model's runtime precision of every island node is checked too — an island that
OpenVINO did not keep in float32 is refused, never run in fp16 quietly.

Like the ONNX Runtime backends they run a deploy bundle (``act-policy export``), never a checkpoint.
Requires the ``openvino`` package (act_policy's ``openvino`` extra; PyPI has wheels for x86_64 and aarch64).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import openvino as ov

from act_policy.backends.base import Backend, BackendOptions, ModelInputs, flat_inputs
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError, CheckpointError
from act_policy.export.bundle import FP32_GRAPH, is_bundle, read_policy_document, verified_file

# OpenVINO's runtime attribute that keeps a node in its original precision, as written in IR rt_info; the value
# "dynamic:f16" = no conversion from any type to f16 (the serialised form of disable_conversion(node, f16)).
KEEP_PRECISION_ATTRIBUTE = "DisablePrecisionConversion"
KEEP_PRECISION_VALUE = "dynamic:f16"
_LOWER_FLOATS = ("f16", "bf16")  # runtime precisions an island must not have
_NOT_COMPUTED = ("Parameter", "Result", "Constant")


class OpenVinoBackend(Backend):
    """Runs the bundle's float graph on OpenVINO's CPU plugin in :attr:`precision`, latency mode (one stream)."""

    graph = FP32_GRAPH
    precision: ov.Type = ov.Type.f32
    # Node-name prefixes of the exported graph (torch module paths, e.g. "/model/backbone/layer4/") computed in
    # float32 whatever :attr:`precision` says; each must match nodes of the graph
    float32_scopes: tuple[str, ...] = ()

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
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            if self.float32_scopes:
                model, self.float32_nodes = keep_in_float32(core, model, self.float32_scopes, path)
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:  # OpenVINO reports reading and compiling failures as RuntimeError
            raise CheckpointError(f"{path}: OpenVINO cannot compile this graph: {exc}") from exc
        self._check_honoured(options.threads)
        if self.float32_scopes:
            check_float32(self.compiled.get_runtime_model(), self.float32_nodes, self.name)
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
                "inference_precision": self.precision.get_type_name(), "float32_scopes": list(self.float32_scopes)}

    def close(self) -> None:
        del self.request, self.compiled


class OpenVinoFP16Backend(OpenVinoBackend):
    """The float graph computed in fp16 (needs a CPU with FP16 arithmetic: ARMv8.2, e.g. the Pi 5), except
    :attr:`float32_scopes`, computed in float32."""

    name = "openvino_fp16"
    precision = ov.Type.f16
    # the ResNet backbone's last two stages: fp16 everywhere is 1.30 % at 480x640, layer4 alone in float32 1.06 %,
    # layer3 + layer4 0.73 % for 2,471 M instructions, 2.87x fewer than cpu_fp32 (benchmarks/pi5_proxy.md)
    float32_scopes = ("/model/backbone/layer3/", "/model/backbone/layer4/")


class OpenVinoFP32Backend(OpenVinoBackend):
    """The float graph computed in float32 on any CPU (OpenVINO's default on x86 with BF16 would be bfloat16)."""

    name = "openvino_fp32"


def keep_in_float32(core: ov.Core, model: ov.Model, scopes: Sequence[str],
                    path: Path) -> tuple[ov.Model, frozenset[str]]:
    """``model`` with every computing node whose name starts with one of ``scopes`` marked to stay float32.

    Returns the marked model (:func:`mark_float32`) and the islands' node names. Raises BackendError when a scope
    matches no node: a graph not exported the way the scope expects would otherwise run all in fp16."""
    nodes = frozenset(op.get_friendly_name() for op in model.get_ordered_ops()
                      if op.get_type_name() not in _NOT_COMPUTED and op.get_friendly_name().startswith(tuple(scopes)))
    unmatched = [scope for scope in scopes if not any(node.startswith(scope) for node in nodes)]
    if unmatched:
        raise BackendError(f"{path}: no node named {' or '.join(f'{s}...' for s in unmatched)} to keep in float32; "
                           "expected a graph written by `act-policy export`")
    return mark_float32(core, model, nodes, path), nodes


def mark_float32(core: ov.Core, model: ov.Model, nodes: frozenset[str], path: Path) -> ov.Model:
    """``model`` read back from IR with OpenVINO's ``DisablePrecisionConversion`` attribute on the layers named
    ``nodes`` (same graph and weights). Raises BackendError when OpenVINO did not create the attribute on every
    one of them when reading the IR back."""
    with tempfile.TemporaryDirectory(prefix="act_policy_openvino_") as folder:
        xml_file = Path(folder) / "model.xml"
        ov.save_model(model, xml_file, compress_to_fp16=False)
        tree = ElementTree.parse(xml_file)
        for layer in tree.getroot().iter("layer"):
            if layer.get("name") in nodes:
                rt_info = layer.find("rt_info")
                if rt_info is None:
                    rt_info = ElementTree.SubElement(layer, "rt_info")
                ElementTree.SubElement(rt_info, "attribute", name=KEEP_PRECISION_ATTRIBUTE, version="0",
                                       value=KEEP_PRECISION_VALUE)
        weights = ov.Tensor(np.fromfile(xml_file.with_suffix(".bin"), np.uint8))  # a copy: the folder goes away
        marked = core.read_model(ElementTree.tostring(tree.getroot(), encoding="unicode"), weights)
    key = f"{KEEP_PRECISION_ATTRIBUTE}_0"  # rt_info key = the attribute's type name + "_" + version
    unmarked = nodes - {op.get_friendly_name() for op in marked.get_ordered_ops() if key in op.get_rt_info()}
    if unmarked:
        raise BackendError(f"{path}: OpenVINO {ov.get_version()} did not take the float32 mark "
                           f"({KEEP_PRECISION_ATTRIBUTE}) on {len(unmarked)} node(s), e.g. {sorted(unmarked)[0]}")
    return marked


def check_float32(runtime_model: ov.Model, nodes: frozenset[str], backend: str) -> None:
    """Refuse a compiled model (its ``get_runtime_model()``) that computes any of ``nodes`` below float32.

    The runtime model lists each executed kernel with the original nodes fused into it (``originalLayersNames``)
    and its ``runtimePrecision``; at least one kernel must carry an island node, or nothing could be checked."""
    checked = 0
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        originals = set(info["originalLayersNames"].astype(str).split(",")) if "originalLayersNames" in info else set()
        islands = originals & nodes
        if not islands:
            continue
        precision = info["runtimePrecision"].astype(str)
        if precision in _LOWER_FLOATS:
            raise BackendError(f"backend {backend!r}: OpenVINO computes {sorted(islands)[0]} in {precision} "
                               f"(kernel {op.get_friendly_name()!r}), but it is kept in float32 for accuracy")
        checked += 1
    if not checked:
        raise BackendError(f"backend {backend!r}: no kernel of the compiled model computes the float32 nodes "
                           f"(e.g. {sorted(nodes)[0]}): cannot check that OpenVINO kept them in float32")

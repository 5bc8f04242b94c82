"""Looking into an ONNX graph at calibration time (analysis, not inference): node attributes, and intermediate
tensors read with ONNX Runtime."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import onnx


def node_attribute(node: Any, name: str, default: Any) -> Any:
    """The value of ONNX ``node``'s attribute ``name`` (ints, floats, lists as Python values), ``default`` when
    the node does not set it (ONNX operators define those defaults)."""
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def with_outputs(model: Any, names: Iterable[str]) -> Any:
    """A copy of ONNX ``model`` that also outputs the tensors ``names`` (float32; already-declared outputs and
    repeated names are not added twice)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in dict.fromkeys(names) if name not in known)
    return probe


def single_thread_session(model: Any) -> Any:
    """An ONNX Runtime CPU session of in-memory ``model`` with one intra-op thread (analysis runs beside the
    calibration's own work; one thread keeps its memory and CPU use predictable)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

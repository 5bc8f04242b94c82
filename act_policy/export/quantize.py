"""Static INT8 quantization of a bundle's graphs (ONNX Runtime QDQ).

``act_fp32.onnx`` → ``act_int8.onnx`` (backend ``cpu_int8``), and ``head.onnx`` →
``head_int8.onnx``: the transformer head the ``hailo`` backend's hybrid mode runs on the CPU
while the backbones run on the NPU. Both are calibrated on the same observations; the head on
its real inputs, the feature maps ``backbone_HxW.onnx`` computes from them, and both keep the
same operations in float (the head is the whole network minus the backbones).

What is quantized, and why (measured on the seeded default-size demo model, see benchmarks/):

* Conv, Gemm (all weight matrices of the transformer), the backbone's residual Add and MaxPool:
  this is where the MACs are, and keeping the backbone's residual chain in INT8 avoids a
  dequantize/quantize pair around every block.
* Kept in float: each camera's first convolution (its 3-channel input is quantized badly and it
  was the largest single error source), the attention MatMuls and Softmax (activation ×
  activation), LayerNorm and the transformer's residual Adds, and the action head.
* Weights int8 per output channel; activations uint8 by default (ORT's u8×s8 kernels were about
  2x faster than s8×s8 on AVX-512-VNNI x86). ARM dot-product kernels may prefer s8
  activations: ``--activation-type s8`` — measure with ``act-policy benchmark`` on the robot.
* Calibration: MinMax ranges over the requested observations.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from act_policy.backends.base import ModelInputs
from act_policy.core.errors import CheckpointError
from act_policy.export import load_bundle, reference_policy
from act_policy.export.bundle import (
    FP32_GRAPH,
    HEAD_GRAPH,
    HEAD_INT8_GRAPH,
    INT8_GRAPH,
    read_policy_document,
    verified_file,
    write_policy_document,
)
from act_policy.export.calibration import CalibrationError, Recording, calibration_observations
from act_policy.export.onnx_export import Progress, flat_inputs

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "Gemm", "Add", "MaxPool")
ACTIVATION_TYPES = ("u8", "s8")


def float_nodes(model: Any) -> list[str]:
    """Names of nodes of ``QUANTIZED_OPS`` types to keep in float (see module docstring)."""
    inputs = {i.name for i in model.graph.input}
    keep = []
    for node in model.graph.node:
        first_conv = node.op_type == "Conv" and node.input[0] in inputs
        transformer_add = node.op_type == "Add" and "/backbone/" not in node.name
        if first_conv or transformer_add or "action_head" in node.name:
            keep.append(node.name)
    return keep


def activation_quant_type(activation_type: str) -> QuantType:
    if activation_type not in ACTIVATION_TYPES:
        raise CheckpointError(f"activation type {activation_type!r}; expected one of {ACTIVATION_TYPES}")
    return QuantType.QUInt8 if activation_type == "u8" else QuantType.QInt8


class _Reader(CalibrationDataReader):
    """ONNX Runtime CalibrationDataReader over normalized inputs; counts what it hands out."""

    def __init__(self, feeds: Iterator[dict[str, np.ndarray]], samples: int, progress: Progress) -> None:
        self.feeds, self.samples, self.progress = feeds, samples, progress
        self.count = 0
        self.started = time.perf_counter()

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self.feeds, None)
        if feed is not None:
            self.count += 1
            if self.count % max(1, self.samples // 10) == 0 or self.count == self.samples:
                self.progress(f"calibration sample {self.count}/{self.samples} "
                              f"({time.perf_counter() - self.started:.0f} s)")
        return feed


class _PreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """Drop ONNX Runtime's "Please consider (to run) pre-processing before quantization" warnings (two per
    graph, on the root logger). That pre-processing is shape inference and graph clean-up, which
    onnxslim already did to every exported graph (static shapes, constants folded): the advice does
    not apply, and repeating it made users think a step was missing."""
    advice = _PreprocessingAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_graph(src: Path, dst: Path, feeds: Iterable[dict[str, np.ndarray]], excluded_nodes: Sequence[str],
                   samples: int, progress: Progress, activation_type: str = "u8") -> None:
    """Statically quantize ONNX graph ``src`` into ``dst``, calibrated on exactly ``samples`` ``feeds``.

    ``feeds`` map the graph's input names to arrays; ``excluded_nodes`` stay in float. ``dst``
    appears only when quantization succeeded (written next to it first, then renamed).
    """
    quant_type = activation_quant_type(activation_type)
    reader = _Reader(iter(feeds), samples, progress)
    progress(f"quantizing {src.name}: {', '.join(QUANTIZED_OPS)} to INT8 ({activation_type} activations, "
             f"per-channel s8 weights), {len(excluded_nodes)} nodes kept in float")
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp, _without_preprocessing_advice():
        output = Path(tmp) / dst.name
        quantize_static(
            str(src), str(output), reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=list(excluded_nodes),
            per_channel=True,
            activation_type=quant_type,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        if reader.count != samples:
            raise CalibrationError(f"{dst.name}: calibration yielded {reader.count} observations, "
                                   f"{samples} were requested")
        output.replace(dst)


def _head_feeds(bundle: Path, document: dict[str, Any],
                inputs: Iterable[ModelInputs]) -> Iterator[dict[str, np.ndarray]]:
    """``head.onnx`` inputs for each observation: feature maps from the bundle's backbone graphs + vectors."""
    import onnxruntime as ort

    graphs = document["graphs"]
    cameras = list(graphs["backbones"])
    sessions = {name: ort.InferenceSession(str(verified_file(bundle, name, document)),
                                           providers=["CPUExecutionProvider"])
                for name in dict.fromkeys(graphs["backbones"].values())}
    for model_inputs in inputs:
        features = [sessions[graphs["backbones"][camera]].run(None, {"image": image})[0]
                    for camera, image in zip(cameras, model_inputs.images, strict=True)]
        vectors = flat_inputs(model_inputs)[len(cameras):]
        yield dict(zip(graphs["head_inputs"], [*features, *vectors], strict=True))


def quantize_bundle(bundle: str | Path, source: str | Path | Recording | None, samples: int, progress: Progress,
                    activation_type: str = "u8", head: bool = False, allow_missing_stats: bool = False
                    ) -> dict[str, Any]:
    """Calibrate on ``samples`` observations from ``source``; add ``act_int8.onnx`` (and, with ``head``,
    ``head_int8.onnx`` for the Hailo hybrid path: a second calibration, so only when asked) to the bundle.

    Returns the ``quantization`` record stored in policy.json. CheckpointError when the bundle
    has a normalized feature without stats (see ``PolicyArtifacts.missing_stats``), unless allowed.
    """
    activation_quant_type(activation_type)  # before minutes of calibration
    bundle = Path(bundle)
    document = read_policy_document(bundle)
    fp32 = verified_file(bundle, FP32_GRAPH, document)
    head_graph = verified_file(bundle, HEAD_GRAPH, document) if head else None  # before minutes of calibration
    artifacts = load_bundle(bundle)
    artifacts.require_complete_stats(allow_missing_stats, "--allow-missing-stats (allow_missing_stats=True)")
    policy = reference_policy(artifacts)
    names = document["graphs"]["inputs"]
    # Read once and kept as read (uint8 images: 64 frames of one 480x640 camera are 59 MB, a
    # quarter of their float32 form), normalized again for each graph calibrated on them.
    observations = list(calibration_observations(source, artifacts.spec, artifacts.input_stats, samples))
    normalized = (policy.preprocess(o) for o in observations)
    excluded = float_nodes(onnx.load(str(fp32), load_external_data=False))
    quantize_graph(fp32, bundle / INT8_GRAPH, (dict(zip(names, flat_inputs(i), strict=True)) for i in normalized),
                   excluded, samples, progress, activation_type)
    record: dict[str, Any] = {
        "graph": INT8_GRAPH,
        "method": "onnxruntime static QDQ, MinMax calibration",
        "activation_type": activation_type,
        "weight_type": "s8 per-channel",
        "quantized_ops": list(QUANTIZED_OPS),
        "float_nodes": excluded,
        "calibration_source": str(source) if source is not None else "synthetic",
        "calibration_samples": samples,
    }
    document["files"][INT8_GRAPH] = ""
    if head_graph is not None:
        head_excluded = float_nodes(onnx.load(str(head_graph), load_external_data=False))
        normalized = (policy.preprocess(o) for o in observations)
        quantize_graph(head_graph, bundle / HEAD_INT8_GRAPH, _head_feeds(bundle, document, normalized), head_excluded,
                       samples, progress, activation_type)
        record["head"] = {"graph": HEAD_INT8_GRAPH, "float_nodes": head_excluded,
                          "calibration_inputs": "backbone feature maps of the calibration observations"}
        document["files"][HEAD_INT8_GRAPH] = ""
    document["quantization"] = record
    write_policy_document(bundle, document)
    return record

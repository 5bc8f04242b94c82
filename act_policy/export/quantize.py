"""Static INT8 quantization of a bundle's ``act_fp32.onnx`` into ``act_int8.onnx`` (ONNX Runtime QDQ).

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from act_policy.core.errors import CheckpointError
from act_policy.export import load_bundle, reference_policy
from act_policy.export.bundle import (
    FP32_GRAPH,
    INT8_GRAPH,
    read_policy_document,
    verified_file,
    write_policy_document,
)
from act_policy.export.calibration import CalibrationError, calibration_observations
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


def quantize_bundle(bundle: str | Path, source: str | Path | None, samples: int, progress: Progress,
                    activation_type: str = "u8") -> dict[str, Any]:
    """Calibrate on ``samples`` observations from ``source`` and add ``act_int8.onnx`` to the bundle.

    Returns the ``quantization`` record stored in policy.json.
    """
    if activation_type not in ACTIVATION_TYPES:
        raise CheckpointError(f"activation type {activation_type!r}; expected one of {ACTIVATION_TYPES}")
    bundle = Path(bundle)
    document = read_policy_document(bundle)
    fp32 = verified_file(bundle, FP32_GRAPH, document)
    artifacts = load_bundle(bundle)
    policy = reference_policy(artifacts)
    names = document["graphs"]["inputs"]
    observations = calibration_observations(source, artifacts.spec, artifacts.input_stats, samples)
    feeds = (dict(zip(names, flat_inputs(policy.preprocess(o)), strict=True)) for o in observations)
    reader = _Reader(feeds, samples, progress)
    excluded = float_nodes(onnx.load(str(fp32), load_external_data=False))
    progress(f"quantizing {FP32_GRAPH}: {', '.join(QUANTIZED_OPS)} to INT8 ({activation_type} activations, "
             f"per-channel s8 weights), {len(excluded)} nodes kept in float")
    with tempfile.TemporaryDirectory(dir=bundle) as tmp:
        output = Path(tmp) / INT8_GRAPH
        quantize_static(
            str(fp32), str(output), reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8 if activation_type == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        if reader.count != samples:
            raise CalibrationError(f"calibration source {source or 'synthetic'} yielded {reader.count} "
                                   f"observations, {samples} were requested")
        output.replace(bundle / INT8_GRAPH)
    record = {
        "graph": INT8_GRAPH,
        "method": "onnxruntime static QDQ, MinMax calibration",
        "activation_type": activation_type,
        "weight_type": "s8 per-channel",
        "quantized_ops": list(QUANTIZED_OPS),
        "float_nodes": excluded,
        "calibration_source": str(source) if source is not None else "synthetic",
        "calibration_samples": samples,
    }
    document["quantization"] = record
    document["files"][INT8_GRAPH] = ""
    write_policy_document(bundle, document)
    return record

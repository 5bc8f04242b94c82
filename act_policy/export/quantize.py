"""Static INT8 quantization of a bundle's graphs (ONNX Runtime QDQ).

``act_fp32.onnx`` → ``act_int8.onnx`` (backend ``cpu_int8``), and ``head.onnx`` →
``head_int8.onnx``: the transformer head the ``hailo`` backend's hybrid mode runs on the CPU
while the backbones run on the NPU. Both are calibrated on the same observations; the head on
its real inputs, the feature maps ``backbone_HxW.onnx`` computes from them, and both keep the
same operations in float (the head is the whole network minus the backbones).

A :class:`Recipe` says what is quantized: nodes are grouped by what they compute
(:data:`NODE_GROUPS`) and whole groups stay float; ``act-policy quantize`` exposes every field.
The default, :data:`DEFAULT_RECIPE`, was chosen by measurement (benchmarks/int8_recipe.md, with
the per-group sensitivity report and the candidates tried):

* INT8: the backbone's convolutions, residual Adds and max-pool (about two thirds of the MACs;
  INT8 residual chains avoid a dequantize/quantize pair around every block), the input
  projections and every weight matrix of the transformer.
* Float: each camera's first convolution, the transformer's residual Adds and the action head
  (with the attention MatMuls, Softmax and LayerNorm, which are never quantized).
* Weights s8 per output channel; activations u8. On ARM s8 activations gave bit-identical
  actions with 3.7 % fewer instructions (``--activation-type s8``; /work/shared/arm_rig, MinMax
  graphs); on this x86 (AVX2) s8 was less accurate, so x86 checks use u8.
* Activation ranges: the mean over the calibration observations of each one's min and max
  (``mean-minmax``), then per-layer bias correction (:func:`correct_layer_biases`). Together they
  cut the held-out error of both 480x640 policies measured (demo 4.56 -> 3.21 %, LeRobot-made
  4.61 -> 4.17 % normalized rel L2) and brought the demo's per-joint bias under 0.03 sigma, with
  the same graph structure (same kernels) as plain MinMax.
* Each ReLU after an INT8 layer folded into that layer's u8 output range (``fold_relu``): the
  pre-ReLU values are no longer rounded on a range whose negative half the ReLU discards. With 32
  calibration observations at 480x640 this took the demo from 3.64 to 2.65 % and the LeRobot-made
  checkpoint from 4.48 to 2.98 % (benchmarks/int8_recipe.md, section 6). The same integer kernels
  (QLinearConv, QGemm, QLinearAdd) run, with fewer QuantizeLinear/DequantizeLinear nodes and no
  float ReLU between them.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    verify_listed_files,
    write_policy_document,
)
from act_policy.export.calibration import CalibrationError, Recording, calibration_observations
from act_policy.export.equalization import PAIR_GROUPS, equalize_graph, relus_next_to_producers
from act_policy.export.onnx_export import Progress, flat_inputs
from act_policy.export.onnx_probe import single_thread_session, with_outputs
from act_policy.export.weight_rounding import round_weights

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "Gemm", "Add", "MaxPool")
ACTIVATION_TYPES = ("u8", "s8")
WEIGHT_ROUNDINGS = {"nearest": "each s8 weight rounded to the nearest step (ONNX Runtime's)",
                    "gptq": "GPTQ: rounding errors compensated on correlated inputs (export/weight_rounding.py)"}
CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "mean-minmax": CalibrationMethod.MinMax,
                       "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}

# Every node of a QUANTIZED_OPS type belongs to one group, named by what it computes; a recipe
# keeps whole groups in float. Names follow the exported graph's module paths (/model/backbone/...,
# /model/encoder/layers.N/self_attn/...); the decoder's nodes are the remaining transformer ones.
NODE_GROUPS = {
    "backbone_stem": "each camera's first convolution (3-channel image input)",
    "backbone": "the rest of the ResNet backbone's convolutions, and its max-pool",
    "backbone_add": "the backbone's residual Adds",
    "input_projections": "encoder_img_feat_input_proj (1x1 conv) and the state/env-state projections",
    "encoder_attention": "the encoder's q/k/v and output projections",
    "encoder_ffn": "the encoder's feed-forward linear1/linear2",
    "decoder_attention": "the decoder's cross-attention projections",
    "decoder_ffn": "the decoder's feed-forward linear1/linear2",
    "transformer_add": "the transformer's residual and position-embedding Adds",
    "action_head": "the final Linear to the action chunk",
}


def node_group(node: Any, graph_inputs: set[str]) -> str:
    """The :data:`NODE_GROUPS` key of a node of a ``QUANTIZED_OPS`` type."""
    name = node.name
    if "action_head" in name:
        return "action_head"
    if "input_proj" in name:
        return "input_projections"
    if "/backbone/" in name:
        if node.op_type == "Add":
            return "backbone_add"
        return "backbone_stem" if node.op_type == "Conv" and node.input[0] in graph_inputs else "backbone"
    if node.op_type == "Add":
        return "transformer_add"
    part = "encoder" if "/encoder/" in name else "decoder"
    return f"{part}_{'ffn' if '/linear' in name else 'attention'}"


@dataclass(frozen=True)
class Recipe:
    """How to quantize: which groups stay float, how activation ranges are calibrated, fix-ups after.

    ``calibration``: ``minmax`` takes each tensor's smallest and largest value over all calibration
    observations; ``mean-minmax`` the mean over the observations of each one's smallest and largest
    value (ONNX Runtime's MinMax with ``CalibMovingAverage``, all observations in one pass), so a
    rare outlier does not stretch the range every other observation is rounded on; ``percentile`` and
    ``entropy`` are ONNX Runtime's histogram methods.

    ``layer_bias_correction``: after quantizing, each INT8 convolution and Gemm gets the mean
    per-output-channel shift its INT8 form adds (see :func:`correct_layer_biases`).

    ``fold_relu``: each ReLU that follows an INT8 layer is folded into that layer's INT8 output range
    (``[0, max]``: the u8 clamp at the zero point is the ReLU), instead of the layer's output being
    rounded on its pre-ReLU range ``[min, max]`` — whose negative half the ReLU throws away — and
    rounded again after the ReLU. ONNX Runtime's quantizer does the folding when ``Relu`` is among
    the quantized operator types; a ReLU behind a Reshape (the transformer's feed-forward blocks) is
    first moved next to its Gemm (:func:`act_policy.export.equalization.relus_next_to_producers`).
    Fewer nodes in the graph ONNX Runtime runs (a QuantizeLinear/DequantizeLinear pair and the float
    ReLU less per folded ReLU), the same integer kernels.

    ``equalization``: groups of :data:`act_policy.export.equalization.PAIR_GROUPS` whose
    layer → ReLU → layer pairs get SmoothQuant scales with exponent ``equalization_alpha``, folded
    into the float weights before calibration (the same nodes; see that module).

    ``weight_rounding``: ``nearest`` keeps ONNX Runtime's round-to-nearest s8 weights; ``gptq`` re-rounds
    every INT8 layer's weights on the same per-channel grid so that its output error on the calibration
    observations' inputs is small (:func:`act_policy.export.weight_rounding.round_weights`), before
    layer bias correction. Same nodes and kernels.

    ``bias_correction``: after quantizing, the mean error of the (float) action head's output over
    the calibration observations, per joint, is added to the head's bias (empirical bias
    correction applied at the last layer), removing the systematic per-joint offset INT8
    rounding leaves. Needs ``action_head`` in ``float_groups``.
    """

    float_groups: frozenset[str]
    float_patterns: tuple[str, ...] = ()  # nodes whose name contains one of these also stay float
    calibration: str = "minmax"
    percentile: float = 99.999
    activation_type: str = "u8"
    bias_correction: bool = False
    layer_bias_correction: bool = False
    fold_relu: bool = False
    equalization: frozenset[str] = frozenset()
    equalization_alpha: float = 0.5
    weight_rounding: str = "nearest"

    def __post_init__(self) -> None:
        activation_quant_type(self.activation_type)
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise CheckpointError(f"weight rounding {self.weight_rounding!r}; expected one of {list(WEIGHT_ROUNDINGS)}")
        unknown_pairs = sorted(self.equalization - set(PAIR_GROUPS))
        if unknown_pairs:
            raise CheckpointError(f"equalization groups {unknown_pairs} unknown; expected some of {list(PAIR_GROUPS)}")
        if not 0.0 <= self.equalization_alpha <= 1.0:
            raise CheckpointError(f"equalization alpha {self.equalization_alpha}; expected a number in [0, 1]")
        if self.calibration not in CALIBRATION_METHODS:
            raise CheckpointError(f"calibration method {self.calibration!r}; expected one of "
                                  f"{sorted(CALIBRATION_METHODS)}")
        unknown = sorted(self.float_groups - set(NODE_GROUPS))
        if unknown:
            raise CheckpointError(f"float groups {unknown} unknown; expected some of {list(NODE_GROUPS)}")
        if self.bias_correction and "action_head" not in self.float_groups:
            raise CheckpointError("bias correction adjusts the float action head: keep 'action_head' in float")

    def describe(self) -> dict[str, Any]:
        return {"float_groups": sorted(self.float_groups), "float_patterns": list(self.float_patterns),
                "calibration": self.calibration,
                **({"percentile": self.percentile} if self.calibration == "percentile" else {}),
                "activation_type": self.activation_type, "bias_correction": self.bias_correction,
                "layer_bias_correction": self.layer_bias_correction, "fold_relu": self.fold_relu,
                "equalization": sorted(self.equalization), "weight_rounding": self.weight_rounding,
                **({"equalization_alpha": self.equalization_alpha} if self.equalization else {})}


def float_nodes(model: Any, recipe: Recipe) -> list[str]:
    """Names of nodes of ``QUANTIZED_OPS`` types that ``recipe`` keeps in float."""
    inputs = {i.name for i in model.graph.input}
    return [node.name for node in model.graph.node
            if node.op_type in QUANTIZED_OPS and (node_group(node, inputs) in recipe.float_groups
                                                  or any(p in node.name for p in recipe.float_patterns))]


def activation_quant_type(activation_type: str) -> QuantType:
    if activation_type not in ACTIVATION_TYPES:
        raise CheckpointError(f"activation type {activation_type!r}; expected one of {ACTIVATION_TYPES}")
    return QuantType.QUInt8 if activation_type == "u8" else QuantType.QInt8


CALIBRATION_BATCH = 8  # observations ONNX Runtime's calibrator holds at once (see _Reader)


def calibration_stride(samples: int) -> int:
    """The largest divisor of ``samples`` up to CALIBRATION_BATCH (ONNX Runtime needs an exact division)."""
    return max(d for d in range(1, min(samples, CALIBRATION_BATCH) + 1) if samples % d == 0)


class _Reader(CalibrationDataReader):
    """ONNX Runtime CalibrationDataReader over normalized inputs; counts what it hands out.

    ORT's calibrators keep every intermediate tensor of every observation they are fed before
    reducing them (histograms for percentile/entropy: ~80 MB per 480x640 observation, 5 GB for
    64). Fed through ``set_range`` in strides (ORT's ``CalibStridedMinMax``, whose loop works for
    every method: ranges and histograms are merged across calls), only a stride is held at once.
    """

    def __init__(self, feeds: Iterator[dict[str, np.ndarray]], samples: int, progress: Progress) -> None:
        self.feeds, self.samples, self.progress = feeds, samples, progress
        self.count = 0
        self.end = samples
        self.started = time.perf_counter()

    def __len__(self) -> int:
        return self.samples

    def set_range(self, start_index: int, end_index: int) -> None:
        self.end = end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self.feeds, None) if self.count < self.end else None
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


# Measured in benchmarks/int8_recipe.md (section 5): of the recipes with >= 2.5x fewer A76 instructions,
# the most accurate at 480x640 on both policies measured (layer bias correction alone helped the demo
# but hurt the LeRobot-made checkpoint; percentile ranges helped at 96x128 but hurt at 480x640).
# Folding the ReLUs then helped both 480x640 policies again (section 6). On trained weights the
# decoder's feed-forward is the largest INT8 error left (section 9): it stays float, for ~2 % of the MACs.
DEFAULT_RECIPE = Recipe(frozenset({"backbone_stem", "transformer_add", "decoder_ffn", "action_head"}),
                        calibration="mean-minmax", layer_bias_correction=True, fold_relu=True)


Feeds = Callable[[], Iterable[dict[str, np.ndarray]]]


def quantize_graph(src: Path, dst: Path, feeds: Feeds, recipe: Recipe, samples: int,
                   progress: Progress) -> list[str]:
    """Statically quantize ONNX graph ``src`` into ``dst`` by ``recipe``, calibrated on exactly ``samples`` feeds.

    ``feeds()`` yields dicts mapping the graph's input names to arrays (called again for equalization
    and bias correction). ``dst`` appears only when quantization succeeded (written next to it first,
    then renamed). Returns the names of the nodes kept in float.
    """
    excluded = float_nodes(onnx.load(str(src), load_external_data=False), recipe)
    progress(f"quantizing {src.name}: {', '.join(QUANTIZED_OPS)} to INT8 ({recipe.activation_type} activations, "
             f"per-channel s8 weights, {recipe.calibration} calibration), {len(excluded)} nodes kept in float")
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp, _without_preprocessing_advice():
        output = Path(tmp) / dst.name
        src = _prepared_float_graph(src, Path(tmp), feeds, recipe, progress)
        reader = _Reader(iter(feeds()), samples, progress)
        quantize_static(
            str(src), str(output), reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=[*QUANTIZED_OPS, *(("Relu",) if recipe.fold_relu else ())],
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=activation_quant_type(recipe.activation_type),
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[recipe.calibration],
            extra_options=_calibration_options(recipe, samples),
        )
        if reader.count != samples:
            raise CalibrationError(f"{dst.name}: calibration yielded {reader.count} observations, "
                                   f"{samples} were requested")
        if recipe.weight_rounding == "gptq":
            round_weights(src, output, feeds(), progress)
        if recipe.layer_bias_correction:
            correct_layer_biases(src, output, feeds(), progress)
        if recipe.bias_correction:
            correct_output_bias(src, output, feeds(), progress)
        output.replace(dst)
    return excluded


def _prepared_float_graph(src: Path, tmp: Path, feeds: Feeds, recipe: Recipe, progress: Progress) -> Path:
    """``src``, or a float graph computing the same function rewritten for ``recipe``'s ReLU folding and
    equalization (written in ``tmp``). Bias corrections compare against this graph: its tensors are
    the ones the quantized graph was made from."""
    if not (recipe.fold_relu or recipe.equalization):
        return src
    graph = tmp / f"prepared_{src.name}"
    if recipe.fold_relu:
        model = onnx.load(str(src))
        moved = relus_next_to_producers(model)
        onnx.save(model, str(graph))
        progress(f"ReLUs folded into INT8 ranges ({moved} moved next to their Gemm)")
        src = graph
    if recipe.equalization:
        pairs = equalize_graph(src, graph, feeds(), recipe.equalization, recipe.equalization_alpha)
        progress(f"activation equalization: {pairs} layer pairs ({', '.join(sorted(recipe.equalization))}), "
                 f"alpha {recipe.equalization_alpha:g}")
    return graph


def _calibration_options(recipe: Recipe, samples: int) -> dict[str, Any]:
    """ONNX Runtime's ``extra_options`` for ``recipe``'s activation range calibration."""
    if recipe.calibration == "mean-minmax":
        # One stride holding every observation: ORT averages the per-observation ranges within a stride
        # but blends strides by an exponential moving average. MinMax keeps only the reduced min/max.
        return {"CalibMovingAverage": True, "CalibStridedMinMax": samples}
    return {"CalibPercentile": recipe.percentile, "CalibStridedMinMax": calibration_stride(samples)}


@dataclass(frozen=True)
class _QuantizedLayer:
    """An INT8 Conv/Gemm of a QDQ graph: its float input (before QuantizeLinear), output, and int32 bias."""

    input: str
    output: str
    bias: onnx.TensorProto  # int32, dequantized with ``bias_scale`` (per output channel)
    bias_scale: np.ndarray
    channel_axis: int  # of the output: 1 for Conv (N, C, H, W), last for Gemm (M, C)


def _quantized_layers(model: Any) -> list[_QuantizedLayer]:
    from onnx import numpy_helper

    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name: t for t in model.graph.initializer}

    def dequantized(name: str) -> Any:
        node = producers.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    layers = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        activation, weight, bias = (dequantized(name) for name in node.input[:3])
        if activation is None or weight is None or bias is None or bias.input[0] not in initializers:
            continue  # a float layer (or an unquantized bias: nothing to correct in integer arithmetic)
        quantize = producers[activation.input[0]]
        layers.append(_QuantizedLayer(quantize.input[0], node.output[0], initializers[bias.input[0]],
                                      numpy_helper.to_array(initializers[bias.input[1]]),
                                      1 if node.op_type == "Conv" else -1))
    return layers


def layer_output_shifts(reference: Path, quantized: Path,
                        feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mean output shift (float − INT8) per output channel of every INT8 Conv/Gemm of QDQ graph ``quantized``.

    Each layer is fed its float input from graph ``reference`` (the float32 graph ``quantized`` was
    made from), both as the float layer and as its INT8 form: input QuantizeLinear, INT8 weights and
    int32 bias, dequantized — the integer kernel's accumulator before it is requantized. Keyed by the
    layer's output tensor name; arrays (C,), in that tensor's units, averaged over ``feeds``.
    """
    from onnx.utils import Extractor

    layers = _quantized_layers(onnx.load(str(quantized)))
    if not layers:
        return {}
    float_graph = onnx.load(str(reference))
    # A ReLU folded into its layer's INT8 range (Recipe.fold_relu) leaves the layer writing the ReLU's
    # output name; the accumulator is compared with the float layer's own (pre-ReLU) output.
    relus = {n.output[0]: n.input[0] for n in float_graph.graph.node if n.op_type == "Relu"}
    before_relu = {layer.output: relus.get(layer.output, layer.output) for layer in layers}
    float_graph = with_outputs(float_graph, [layer.input for layer in layers] + list(before_relu.values()))

    # Every INT8 layer alone, cut at its float input, side by side in one graph per round. A layer whose
    # output another layer is cut at (a folded ReLU: conv1's output is conv2's input) goes in a later round.
    rounds, remaining = [], layers
    while remaining:
        cut_at = {layer.input for layer in remaining}
        batch = [layer for layer in remaining if layer.output not in cut_at]
        remaining = [layer for layer in remaining if layer.output in cut_at]
        alone = Extractor(onnx.load(str(quantized))).extract_model(list(dict.fromkeys(layer.input for layer in batch)),
                                                                   [layer.output for layer in batch])
        rounds.append((batch, single_thread_session(alone)))
    reference_session = single_thread_session(float_graph)
    names = [o.name for o in reference_session.get_outputs()]
    sums = {layer.output: np.zeros(layer.bias_scale.shape, np.float64) for layer in layers}
    count = 0
    for feed in feeds:
        values = dict(zip(names, reference_session.run(None, feed), strict=True))
        for batch, int8_session in rounds:
            cut = {i.name: values[i.name] for i in int8_session.get_inputs()}
            for layer, got in zip(batch, int8_session.run([layer.output for layer in batch], cut), strict=True):
                error = np.moveaxis(values[before_relu[layer.output]] - got, layer.channel_axis, -1)
                sums[layer.output] += error.reshape(-1, error.shape[-1]).mean(0)
        count += 1
    return {name: total / max(count, 1) for name, total in sums.items()}


def correct_layer_biases(reference: Path, quantized: Path, feeds: Iterable[dict[str, np.ndarray]],
                         progress: Progress) -> int:
    """Per-layer bias correction of QDQ graph ``quantized`` (rewritten in place) against float ``reference``.

    Each INT8 Conv/Gemm's :func:`layer_output_shifts` over ``feeds`` is added to its int32 bias, in
    whole bias steps (the bias scale is input scale × weight scale, per output channel), so what is
    left of each shift is at most half a step. Rounding weights and activations to 8 bits moves each
    layer's mean output a little; left alone, those shifts add up through the network into a per-joint
    offset of the actions. This is the "fast bias correction" of post-training quantization (as in
    NNCF): every layer corrected on float inputs, in one pass. Returns the number of layers corrected.
    """
    from onnx import numpy_helper

    shifts = layer_output_shifts(reference, quantized, feeds)
    model = onnx.load(str(quantized))
    info = np.iinfo(np.int32)
    for layer in _quantized_layers(model):
        steps = np.round(shifts[layer.output] / layer.bias_scale).astype(np.int64)
        corrected = np.clip(numpy_helper.to_array(layer.bias).astype(np.int64) + steps, info.min, info.max)
        layer.bias.CopyFrom(numpy_helper.from_array(corrected.astype(np.int32), layer.bias.name))
    onnx.save(model, str(quantized))
    progress(f"layer bias correction: {len(shifts)} INT8 layers")
    return len(shifts)


def _action_head_bias(model: Any) -> onnx.TensorProto:
    """The bias initializer of the graph's float action-head Gemm."""
    initializers = {t.name: t for t in model.graph.initializer}
    heads = [n for n in model.graph.node if n.op_type == "Gemm" and "action_head" in n.name and len(n.input) == 3]
    if len(heads) != 1 or heads[0].input[2] not in initializers:
        raise CheckpointError(f"bias correction: expected one float action_head Gemm with a bias, found "
                              f"{[n.name for n in heads]}")
    return initializers[heads[0].input[2]]


def correct_output_bias(reference: Path, quantized: Path, feeds: Iterable[dict[str, np.ndarray]],
                        progress: Progress) -> np.ndarray:
    """Add the mean per-joint output error of ``quantized`` vs ``reference`` over ``feeds`` to its action-head bias.

    Both graphs output normalized action chunks ``(1, chunk, A)``; the correction (A,) is in
    normalized action units and is returned. ``quantized`` is rewritten in place.
    """
    import onnxruntime as ort
    from onnx import numpy_helper

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (reference, quantized)]
    errors = []
    for feed in feeds:
        expected, got = (s.run(None, feed)[0] for s in sessions)
        errors.append((expected - got).reshape(-1, expected.shape[-1]).mean(0))
    correction = np.mean(errors, axis=0)
    model = onnx.load(str(quantized))
    bias = _action_head_bias(model)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + correction.astype(np.float32), bias.name))
    onnx.save(model, str(quantized))
    progress(f"bias correction over {len(errors)} observations: max |offset| {np.abs(correction).max():.4f} "
             "(normalized action units) removed from the action head")
    return correction


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
                    recipe: Recipe = DEFAULT_RECIPE, head: bool = False, allow_missing_stats: bool = False
                    ) -> dict[str, Any]:
    """Calibrate on ``samples`` observations from ``source``; add ``act_int8.onnx`` (and, with ``head``,
    ``head_int8.onnx`` for the Hailo hybrid path: a second calibration, so only when asked) to the bundle,
    quantized by ``recipe``.

    Returns the ``quantization`` record stored in policy.json. CheckpointError when the bundle
    has a normalized feature without stats (see ``PolicyArtifacts.missing_stats``), unless allowed.
    """
    bundle = Path(bundle)
    document = read_policy_document(bundle)
    rewritten = {INT8_GRAPH} | ({HEAD_INT8_GRAPH} if head else set())
    # policy.json is signed again at the end, naming every file: a missing or corrupt one fails now, not after
    # minutes of calibration (and is never signed as good)
    verify_listed_files(bundle, document, rewritten)
    fp32 = verified_file(bundle, FP32_GRAPH, document)
    head_graph = verified_file(bundle, HEAD_GRAPH, document) if head else None  # before minutes of calibration
    artifacts = load_bundle(bundle)
    artifacts.require_complete_stats(allow_missing_stats, "--allow-missing-stats (allow_missing_stats=True)")
    policy = reference_policy(artifacts)
    names = document["graphs"]["inputs"]
    # Read once and kept as read (uint8 images: 64 frames of one 480x640 camera are 59 MB, a
    # quarter of their float32 form), normalized again each time a graph is fed them.
    observations = list(calibration_observations(source, artifacts.spec, artifacts.input_stats, samples))

    def feeds() -> Iterator[dict[str, np.ndarray]]:
        return (dict(zip(names, flat_inputs(policy.preprocess(o)), strict=True)) for o in observations)

    excluded = quantize_graph(fp32, bundle / INT8_GRAPH, feeds, recipe, samples, progress)
    record: dict[str, Any] = {
        "graph": INT8_GRAPH,
        "method": f"onnxruntime static QDQ, {recipe.calibration} calibration",
        "recipe": recipe.describe(),
        "activation_type": recipe.activation_type,
        "weight_type": "s8 per-channel",
        "quantized_ops": list(QUANTIZED_OPS),
        "float_nodes": excluded,
        "calibration_source": str(source) if source is not None else "synthetic",
        "calibration_samples": samples,
    }
    previous_head = (document.get("quantization") or {}).get("head")
    if not head and previous_head is not None and HEAD_INT8_GRAPH in document["files"]:
        # head_int8.onnx stays as it was: its record too, with the calibration it was made with
        previous = document["quantization"]
        record["head"] = {"calibration_source": previous.get("calibration_source"),
                          "calibration_samples": previous.get("calibration_samples"), **previous_head}
    document["files"][INT8_GRAPH] = ""
    if head_graph is not None:
        def head_feeds() -> Iterator[dict[str, np.ndarray]]:
            return _head_feeds(bundle, document, (policy.preprocess(o) for o in observations))

        # The head has no backbone (the NPU runs it): its equalization is the rest of what was asked.
        head_recipe = dataclasses.replace(recipe, equalization=recipe.equalization - {"backbone"})
        head_excluded = quantize_graph(head_graph, bundle / HEAD_INT8_GRAPH, head_feeds, head_recipe, samples,
                                       progress)
        record["head"] = {"graph": HEAD_INT8_GRAPH, "float_nodes": head_excluded,
                          "calibration_inputs": "backbone feature maps of the calibration observations",
                          "calibration_source": record["calibration_source"], "calibration_samples": samples}
        document["files"][HEAD_INT8_GRAPH] = ""
    document["quantization"] = record
    write_policy_document(bundle, document, rewritten)
    return record

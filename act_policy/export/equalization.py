"""Activation equalization folded into a float ONNX graph before static INT8 quantization.

INT8 activations are rounded per tensor: one scale for all channels, so channels whose values
span a small range are rounded coarsely (benchmarks/int8_recipe.md, section 5, found this rounding
to be most of the INT8 error). Where a layer ``P`` feeds a ReLU that feeds a layer ``Q`` alone,
any positive per-channel scale ``s`` can move between them without changing the float function:
``Q(relu(P(x)))`` = ``(Q·s)(relu((P/s)(x)))``, because ``relu(y / s) = relu(y) / s`` for ``s > 0``.
Dividing ``P``'s output channel ``j`` (weights and bias) by ``s_j`` and multiplying ``Q``'s input
channel ``j`` by ``s_j`` evens out the activation ranges ``Q``'s input is quantized on, at the cost
of uneven weight ranges in ``Q`` (quantized per output channel, so only ``Q`` pays; ``P``'s
per-output-channel weight scales absorb ``1/s`` exactly). The graph keeps its nodes: same INT8
kernels, same instruction count.

The scale is SmoothQuant's (Xiao et al. 2023, eq. 4): ``s_j = max|X_j|^α / max|W_j|^(1−α)``, with
``max|X_j|`` channel ``j``'s largest activation over the calibration observations and ``max|W_j|``
the largest weight of ``Q`` reading channel ``j``; ``α = 1`` flattens the activation ranges fully,
``α = 0`` flattens ``Q``'s input-channel weight ranges instead.

Pairs in an ACT graph: ``conv1 → ReLU → conv2`` of every ResNet BasicBlock, and ``linear1 → ReLU →
linear2`` of every transformer feed-forward block (the Gemms' Reshapes, which keep the channel as
the last axis, are allowed in between). Projections fed by a LayerNorm are not pairs: in ACT's
post-norm layers the LayerNorm's output also feeds the residual Add, so its scale cannot move.

Measured (benchmarks/int8_recipe.md, section 6): on the seeded demo and LeRobot-made 480x640
policies equalization did not lower the held-out error (``Recipe.equalization`` is off by default).
What did is :func:`relus_next_to_producers`' companion, folding each ReLU into its layer's INT8
range (``Recipe.fold_relu``): ONNX Runtime rounds a ReLU's input on its pre-ReLU range otherwise,
which equalization makes worse by scaling up mostly-negative channels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from act_policy.core.errors import CheckpointError
from act_policy.export.onnx_probe import node_attribute, single_thread_session, with_outputs

# Where the equalized pairs are, by name of the first layer of each pair (exported module paths).
PAIR_GROUPS = {
    "backbone": "conv1 -> ReLU -> conv2 of each ResNet BasicBlock",
    "ffn": "linear1 -> ReLU -> linear2 of each transformer feed-forward block",
}


def pair_group(node: Any) -> str | None:
    """The :data:`PAIR_GROUPS` key of the pairs ``node`` should start (a Conv/Gemm named as such), if any."""
    if node.op_type == "Conv" and "/backbone/layer" in node.name and node.name.endswith("/conv1/Conv"):
        return "backbone"
    if node.op_type in ("Gemm", "MatMul") and "/linear1/" in node.name:
        return "ffn"
    return None


@dataclass(frozen=True)
class EqualizationPair:
    """``producer`` → (Reshape …) ReLU (Reshape …) → ``consumer``, over ``channels`` channels.

    ``activation`` is the tensor ``consumer`` reads (the one INT8 rounds per tensor);
    ``channel_axis`` is its channel axis: 1 for a Conv (N, C, H, W), -1 for a Gemm (M, C).
    """

    producer: str
    consumer: str
    activation: str
    channels: int
    channel_axis: int


def _weight_axes(node: Any) -> tuple[int, int]:
    """(output-channel axis, input-channel axis) of a Conv's or Gemm's weight input."""
    if node.op_type == "Conv":
        return 0, 1
    return (0, 1) if node_attribute(node, "transB", 0) else (1, 0)


class _Graph:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.nodes = {n.name: n for n in model.graph.node}
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for n in model.graph.node:
            for name in n.input:
                self.consumers[name].append(n)
        self.outputs = {o.name for o in model.graph.output}

    def only_consumer(self, tensor: str) -> Any | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def private_initializer(self, name: str) -> onnx.TensorProto | None:
        """The initializer ``name`` if exactly one node reads it (so scaling it changes nothing else)."""
        return self.initializers.get(name) if len(self.consumers.get(name, [])) == 1 else None


def _pair_from(graph: _Graph, producer: Any) -> EqualizationPair | str:
    """The pair starting at ``producer``, or why there is none (a sentence)."""
    if producer.op_type not in ("Conv", "Gemm"):
        return f"is a {producer.op_type}, not a Conv or Gemm"
    if producer.op_type == "Gemm" and node_attribute(producer, "transA", 0):
        return "is a Gemm with transA"
    weight = graph.private_initializer(producer.input[1])
    if weight is None:
        return f"weight {producer.input[1]!r} is not an initializer read by this node alone"
    if len(producer.input) > 2 and producer.input[2] and graph.private_initializer(producer.input[2]) is None:
        return f"bias {producer.input[2]!r} is not an initializer read by this node alone"
    channels = weight.dims[_weight_axes(producer)[0]]
    tensor, relus, node = producer.output[0], 0, None
    while True:
        node = graph.only_consumer(tensor)
        if node is None:
            return f"tensor {tensor!r} is read by more than one node (or is a graph output)"
        if node.op_type == "Relu":
            relus += 1
        elif node.op_type == "Reshape" and producer.op_type == "Gemm":
            shape = graph.initializers.get(node.input[1])
            if shape is None or int(numpy_helper.to_array(shape)[-1]) != channels:
                return f"Reshape {node.name!r} does not keep the {channels} channels as the last axis"
        else:
            break
        tensor = node.output[0]
    if relus != 1:
        return f"{relus} ReLUs before {node.name!r}; exactly one is needed"
    if node.op_type != producer.op_type or node.input[0] != tensor:
        return f"the ReLU's output feeds {node.op_type} {node.name!r}, not the data input of a {producer.op_type}"
    if node.op_type == "Conv" and node_attribute(node, "group", 1) != 1:
        return f"{node.name!r} is a grouped convolution"
    if node.op_type == "Gemm" and node_attribute(node, "transA", 0):
        return f"{node.name!r} is a Gemm with transA"
    consumer_weight = graph.private_initializer(node.input[1])
    if consumer_weight is None or consumer_weight.dims[_weight_axes(node)[1]] != channels:
        return f"{node.name!r}'s weight is not an initializer of its own with {channels} input channels"
    return EqualizationPair(producer.name, node.name, tensor, channels, 1 if node.op_type == "Conv" else -1)


def equalization_pairs(model: Any, groups: Iterable[str]) -> list[EqualizationPair]:
    """Every pair of ``groups`` (:data:`PAIR_GROUPS` keys) in ``model``, in graph order.

    Raises CheckpointError naming the node when a node that should start a pair (by its name)
    is not followed by exactly the foldable pattern, or when a group has no pair at all: a
    requested equalization is never silently skipped.
    """
    groups = set(groups)
    unknown = sorted(groups - set(PAIR_GROUPS))
    if unknown:
        raise CheckpointError(f"equalization groups {unknown} unknown; expected some of {list(PAIR_GROUPS)}")
    graph = _Graph(model)
    pairs, found = [], set()
    for node in model.graph.node:
        group = pair_group(node)
        if group not in groups:
            continue
        pair = _pair_from(graph, node)
        if isinstance(pair, str):
            raise CheckpointError(f"activation equalization ({group}): node {node.name!r} {pair}; expected "
                                  f"{PAIR_GROUPS[group]}")
        pairs.append(pair)
        found.add(group)
    missing = sorted(groups - found)
    if missing:
        raise CheckpointError(f"activation equalization: the graph has no {', '.join(missing)} pair "
                              f"({'; '.join(PAIR_GROUPS[g] for g in missing)})")
    return pairs


def activation_ranges(model: Any, pairs: list[EqualizationPair],
                      feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Largest |value| per channel of each pair's activation over ``feeds`` (float graph ``model``).

    Keyed by the activation's tensor name; arrays (channels,), float64.
    """
    names = [p.activation for p in pairs]
    session = single_thread_session(with_outputs(model, names))
    ranges = {p.activation: np.zeros(p.channels) for p in pairs}
    for feed in feeds:
        for pair, value in zip(pairs, session.run(names, feed), strict=True):
            per_channel = np.moveaxis(np.abs(value), pair.channel_axis, -1).reshape(-1, pair.channels).max(0)
            ranges[pair.activation] = np.maximum(ranges[pair.activation], per_channel)
    return ranges


def smoothquant_scales(activation_range: np.ndarray, weight_range: np.ndarray, alpha: float) -> np.ndarray:
    """``s_j = activation_range_j^alpha / weight_range_j^(1 - alpha)``, shape (C,).

    Channels the formula cannot score keep the equalization's direction: one whose activation
    never fired on the calibration observations (range 0; it may fire later) gets the smallest
    scale of the others, as a channel of tiny range would, so its weights in ``Q`` grow least; one
    ``Q`` never reads (weight range 0) gets the largest, shrinking a range no output depends on.
    Raises CheckpointError when ``alpha`` is outside [0, 1] or no channel can be scored.
    """
    if not 0.0 <= alpha <= 1.0:
        raise CheckpointError(f"equalization alpha {alpha}; expected a number in [0, 1]")
    a, w = np.asarray(activation_range, np.float64), np.asarray(weight_range, np.float64)
    scored = (a > 0) & (w > 0)
    if not scored.any():
        raise CheckpointError("equalization: every channel has a zero activation or weight range")
    scales = np.empty_like(a)
    scales[scored] = a[scored] ** alpha / w[scored] ** (1.0 - alpha)
    scales[a == 0] = scales[scored].min()
    scales[(a > 0) & (w == 0)] = scales[scored].max()
    return scales


def _scaled(tensor: onnx.TensorProto, axis: int, factor: np.ndarray) -> onnx.TensorProto:
    array = numpy_helper.to_array(tensor).astype(np.float64)
    shape = [1] * array.ndim
    shape[axis] = -1
    return numpy_helper.from_array((array * factor.reshape(shape)).astype(np.float32), tensor.name)


def equalize(model: Any, pairs: list[EqualizationPair], ranges: dict[str, np.ndarray],
             alpha: float) -> dict[str, np.ndarray]:
    """Fold SmoothQuant scales into each pair of ``model`` (changed in place); returns the scales by activation."""
    graph = _Graph(model)
    applied = {}
    for pair in pairs:
        producer, consumer = graph.nodes[pair.producer], graph.nodes[pair.consumer]
        out_axis = _weight_axes(producer)[0]
        in_axis = _weight_axes(consumer)[1]
        consumer_weight = graph.initializers[consumer.input[1]]
        weights = np.abs(numpy_helper.to_array(consumer_weight))
        weight_range = np.moveaxis(weights, in_axis, -1).reshape(-1, pair.channels).max(0)
        scales = smoothquant_scales(ranges[pair.activation], weight_range, alpha)
        weight = graph.initializers[producer.input[1]]
        weight.CopyFrom(_scaled(weight, out_axis, 1.0 / scales))
        if len(producer.input) > 2 and producer.input[2]:
            bias = graph.initializers[producer.input[2]]
            bias.CopyFrom(_scaled(bias, 0, 1.0 / scales))
        consumer_weight.CopyFrom(_scaled(consumer_weight, in_axis, scales))
        applied[pair.activation] = scales
    return applied


def equalize_graph(src: Path, dst: Path, feeds: Iterable[dict[str, np.ndarray]], groups: Iterable[str],
                   alpha: float) -> int:
    """Write float graph ``src`` to ``dst`` with SmoothQuant scales folded into ``groups``' pairs.

    Ranges come from ``feeds`` (the calibration observations). Returns the number of pairs.
    ``dst`` computes the same function as ``src`` up to float32 rounding.
    """
    model = onnx.load(str(src))
    pairs = equalization_pairs(model, groups)
    equalize(model, pairs, activation_ranges(model, pairs, feeds), alpha)
    onnx.save(model, str(dst))
    return len(pairs)


def relus_next_to_producers(model: Any) -> int:
    """Swap every ``Reshape → Relu`` (the Reshape read by that Relu alone) into ``Relu → Reshape``, in place.

    The same function (ReLU is elementwise), but the ReLU now reads its Gemm's output directly, so
    ONNX Runtime's quantizer can fold it into that Gemm's INT8 output range (``[0, max]`` instead of
    the pre-ReLU ``[min, max]``, whose negative half ReLU throws away). Returns the number swapped.
    """
    graph = _Graph(model)
    position = {n.output[0]: i for i, n in enumerate(model.graph.node)}
    swapped = 0
    for reshape in list(model.graph.node):
        relu = graph.only_consumer(reshape.output[0]) if reshape.op_type == "Reshape" else None
        if relu is None or relu.op_type != "Relu":
            continue
        i, j = position[reshape.output[0]], position[relu.output[0]]
        first, second = onnx.NodeProto(), onnx.NodeProto()
        first.CopyFrom(relu)
        second.CopyFrom(reshape)
        moved = f"{reshape.input[0]}_relu"
        first.input[0], first.output[0] = reshape.input[0], moved
        second.input[0], second.output[0] = moved, relu.output[0]
        # The Relu now runs first: it takes the Reshape's place, keeping the graph topologically sorted.
        model.graph.node[i].CopyFrom(first)
        model.graph.node[j].CopyFrom(second)
        swapped += 1
    stale = {n.output[0] for n in model.graph.node if n.op_type == "Relu"}
    kept = [v for v in model.graph.value_info if v.name not in stale]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    return swapped

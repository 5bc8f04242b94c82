"""Hessian-aware rounding of the INT8 weights of a QDQ graph (GPTQ), after static quantization.

ONNX Runtime rounds each weight to the nearest step of its output channel's s8 grid. What the
network feels is not a weight's own error but its layer's output error ``(W − Ŵ) x``, and
inputs ``x`` are correlated (neighbouring pixels, the channels of a token): an error in one
weight can be offset by the weights of correlated inputs not rounded yet. GPTQ (Frantar et al.
2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
algorithm 1) rounds one input column at a time and spreads its error over the columns still
unrounded, weighted by the inverse of ``H = E[x xᵀ]``, which minimises ``E‖(W − Ŵ) x‖²`` column
by column. Columns go in order of decreasing ``H`` diagonal (its "act-order"); ``H`` gets a small
ridge (``damp`` × its mean diagonal) so that inputs the calibration never varied do not blow up.

Here ``x`` is each layer's input as its INT8 kernel receives it (the dequantized u8 activation,
from the quantized graph run on the calibration observations) and ``W`` the float weights of the
graph the QDQ graph was made from. Only the s8 values change: the per-channel scales, every
node and therefore the integer kernels ONNX Runtime runs (and the instructions they take) stay
as they were. Layers are rounded independently, each on the inputs the quantized graph gave it
before any weight was changed (one calibration pass).

Measured in benchmarks/int8_recipe.md, section 7: it removes nearly all of the weights' share of the
INT8 error (demo 96x128: 2.12 -> 0.26 % normalized relative L2 with every activation float), but what
is left is the u8 activations' rounding, and at 480x640 it helped the LeRobot-made checkpoint with 64
calibration scenes (3.79 -> 3.35 %), not the demo (3.10 -> 3.12 %), and with 32 scenes it was worse on
both, so ``Recipe.weight_rounding`` defaults to ``nearest``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from act_policy.core.errors import CheckpointError
from act_policy.export.onnx_probe import node_attribute, single_thread_session, with_outputs

S8_LIMIT = 127  # ONNX Runtime's symmetric s8 weights use [-127, 127]
MAX_COLUMNS = 4096  # input columns per layer and observation that enter H (a seeded random subset beyond)
QUANTIZED_SUFFIX = "_quantized"  # ONNX Runtime names a quantized weight after its float initializer


@dataclass
class Int8Layer:
    """An INT8 Conv/Gemm: the dequantized input it reads, its s8 weight initializer and per-channel scales."""

    node: Any
    input: str
    weight: onnx.TensorProto
    scale: np.ndarray  # (C_out,)

    @property
    def key(self) -> tuple[str, ...]:
        """Layers with the same key read the same input columns (q/k projections of one token matrix)."""
        return (self.input, *(str(node_attribute(self.node, a, None)) for a in ("kernel_shape", "strides", "pads")))


def int8_layers(model: Any) -> list[Int8Layer]:
    """The INT8 Conv/Gemm layers of QDQ ``model``: both weight and input come through a DequantizeLinear."""
    initializers = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        activation, weight = (producers.get(name) for name in node.input[:2])
        if (activation is None or weight is None or activation.op_type != "DequantizeLinear"
                or weight.op_type != "DequantizeLinear" or weight.input[0] not in initializers):
            continue  # a float layer
        layers.append(Int8Layer(node, node.input[0], initializers[weight.input[0]],
                             numpy_helper.to_array(initializers[weight.input[1]]).reshape(-1)))
    return layers


def input_columns(node: Any, x: np.ndarray) -> np.ndarray:
    """Layer ``node``'s input ``x`` as columns ``(d, L)`` such that its output is ``W.reshape(C_out, d) @ columns``.

    Conv (group 1, dilation 1): ``x`` (1, C, H, W) unfolded into ``C·kh·kw`` rows, one column per output
    pixel (im2col, in the weight's (C, kh, kw) order). Gemm (transA 0, transB 1): ``x`` (M, K) → (K, M).
    CheckpointError for a layer form this does not handle.
    """
    if node.op_type == "Gemm":
        if node_attribute(node, "transA", 0) != 0 or node_attribute(node, "transB", 0) != 1:
            raise CheckpointError(f"{node.name}: weight rounding expects Gemm(transA=0, transB=1)")
        return x.reshape(-1, x.shape[-1]).T
    if (node_attribute(node, "group", 1) != 1 or list(node_attribute(node, "dilations", [1, 1])) != [1, 1]
            or x.shape[0] != 1):
        raise CheckpointError(f"{node.name}: weight rounding expects a Conv with group 1, dilation 1, batch 1")
    kh, kw = node_attribute(node, "kernel_shape", None)
    sh, sw = node_attribute(node, "strides", [1, 1])
    top, left, bottom, right = node_attribute(node, "pads", [0, 0, 0, 0])
    padded = np.pad(x[0], ((0, 0), (top, bottom), (left, right)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    return windows.transpose(0, 3, 4, 1, 2).reshape(padded.shape[0] * kh * kw, -1)


def gptq_round(weights: np.ndarray, hessian: np.ndarray, scale: np.ndarray, damp: float = 0.01,
               block: int = 128) -> np.ndarray:
    """s8 values for float ``weights`` (C_out, d) on the grid ``scale`` (C_out,) that keep ``(W − Ŵ) x`` small.

    ``hessian``: ``E[x xᵀ]`` (d, d) of the layer's inputs. Returns int8 (C_out, d) in [-127, 127].
    With a diagonal ``hessian`` (uncorrelated inputs) nothing can be compensated and this is
    round-to-nearest.
    """
    w = weights.astype(np.float64)
    h = hessian.astype(np.float64)
    d = w.shape[1]
    dead = np.diag(h) <= 0  # inputs always zero: their weights do not matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices(d)] += damp * np.mean(np.diag(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T  # H⁻¹ = Uᵀ U, U upper triangular
    step = scale.astype(np.float64).reshape(-1)
    rounded = np.zeros_like(w)
    for start in range(0, d, block):  # GPTQ's lazy batch updates: the same arithmetic, fewer passes over w
        end = min(start + block, d)
        chunk, errors = w[:, start:end].copy(), np.zeros((w.shape[0], end - start))
        for i in range(end - start):
            q = np.clip(np.round(chunk[:, i] / step), -S8_LIMIT, S8_LIMIT) * step
            rounded[:, start + i] = q
            errors[:, i] = (chunk[:, i] - q) / upper[start + i, start + i]
            chunk[:, i:] -= np.outer(errors[:, i], upper[start + i, start + i:end])
        w[:, end:] -= errors @ upper[start:end, end:]
    restored = np.empty_like(rounded)
    restored[:, order] = rounded
    return np.clip(np.round(restored / step[:, None]), -S8_LIMIT, S8_LIMIT).astype(np.int8)


def input_hessians(quantized: Any, layers: list[Int8Layer], feeds: Iterable[dict[str, np.ndarray]]
                   ) -> dict[tuple[str, ...], np.ndarray]:
    """``E[x xᵀ]`` of each layer's input columns over ``feeds``, keyed by :attr:`Int8Layer.key`."""
    session = single_thread_session(with_outputs(quantized, [layer.input for layer in layers]))
    names = [o.name for o in session.get_outputs()]
    sums: dict[tuple[str, ...], np.ndarray] = {}
    count = 0
    for feed in feeds:
        values = dict(zip(names, session.run(None, feed), strict=True))
        for layer in {layer.key: layer for layer in layers}.values():
            x = input_columns(layer.node, values[layer.input]).astype(np.float32)
            if x.shape[1] > MAX_COLUMNS:  # the H of a big image from a random subset of its pixels
                x = x[:, np.random.default_rng(count).choice(x.shape[1], MAX_COLUMNS, replace=False)]
            h = (x @ x.T).astype(np.float64) / x.shape[1]
            sums[layer.key] = sums[layer.key] + h if layer.key in sums else h
        count += 1
    if count == 0:
        raise CheckpointError("weight rounding: no calibration observations")
    return {key: total / count for key, total in sums.items()}


def round_weights(reference: Path, quantized: Path, feeds: Iterable[dict[str, np.ndarray]], progress: Any,
                  damp: float = 0.01) -> int:
    """Re-round the s8 weights of every INT8 Conv/Gemm of QDQ graph ``quantized`` (rewritten in place) by GPTQ.

    ``reference``: the float graph ``quantized`` was made from (its weights are the ones rounded;
    CheckpointError if one is missing). Returns the number of layers re-rounded.
    """
    model = onnx.load(str(quantized))
    layers = int8_layers(model)
    floats = {t.name: t for t in onnx.load(str(reference)).graph.initializer}
    hessians = input_hessians(model, layers, feeds)
    changed = 0
    for layer in layers:
        name = layer.weight.name
        source = floats.get(name.removesuffix(QUANTIZED_SUFFIX))
        if source is None:
            raise CheckpointError(f"weight rounding: no float initializer in {reference} for {name}")
        old = numpy_helper.to_array(layer.weight)
        weights = numpy_helper.to_array(source).reshape(old.shape[0], -1)
        try:
            new = gptq_round(weights, hessians[layer.key], layer.scale, damp).reshape(old.shape)
        except np.linalg.LinAlgError as exc:  # H + ridge not positive definite: too little damping for this layer
            raise CheckpointError(f"weight rounding: {layer.node.name}: its input statistics cannot be inverted "
                                  f"({exc}); quantize with --weight-rounding nearest") from exc
        changed += int((new != old).sum())
        layer.weight.CopyFrom(numpy_helper.from_array(new, name))
    onnx.save(model, str(quantized))
    progress(f"GPTQ weight rounding: {len(layers)} INT8 layers, {changed} s8 weights changed")
    return len(layers)

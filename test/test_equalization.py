"""Float-graph rewrites before INT8: SmoothQuant activation equalization and ReLU folding."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from act_policy import load_policy
from act_policy.core.errors import CheckpointError
from act_policy.core.synthetic import synthetic_observations
from act_policy.export.bundle import FP32_GRAPH, POLICY_FILE
from act_policy.export.equalization import (
    activation_ranges,
    equalization_pairs,
    equalize,
    relus_next_to_producers,
    smoothquant_scales,
)
from act_policy.export.onnx_export import flat_inputs
from act_policy.export.quantize import Recipe, quantize_graph


def _feeds(bundle: Path, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    reference = load_policy(bundle, backend="cpu_fp32", num_threads=1)
    names = json.loads((bundle / POLICY_FILE).read_text())["graphs"]["inputs"]
    observations = synthetic_observations(reference.artifacts.spec, reference.artifacts.input_stats, count, seed=seed)
    return [dict(zip(names, flat_inputs(reference.preprocess(o)), strict=True)) for o in observations]


def _run(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, feed)[0] for feed in feeds]


def test_an_act_graph_has_one_pair_per_basic_block_and_per_feed_forward_block(tiny_bundle: Path) -> None:
    model = onnx.load(str(tiny_bundle / FP32_GRAPH))
    backbone = equalization_pairs(model, ["backbone"])
    ffn = equalization_pairs(model, ["ffn"])
    assert len(backbone) == 8  # ResNet18: 4 stages x 2 BasicBlocks
    assert all(p.producer.endswith("/conv1/Conv") and p.consumer.endswith("/conv2/Conv") for p in backbone)
    assert len(ffn) == 3  # 2 encoder layers + 1 decoder layer
    assert all("/linear1/" in p.producer and "/linear2/" in p.consumer and p.channels == 64 for p in ffn)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_equalization_leaves_the_float_graph_computing_the_same_actions(tiny_bundle: Path, alpha: float) -> None:
    model = onnx.load(str(tiny_bundle / FP32_GRAPH))
    calibration, held_out = _feeds(tiny_bundle, 4, seed=5), _feeds(tiny_bundle, 3, seed=9)
    before = _run(model, held_out)
    pairs = equalization_pairs(model, ["backbone", "ffn"])
    scales = equalize(model, pairs, activation_ranges(model, pairs, calibration), alpha)
    assert max(np.abs(np.log(s)).max() for s in scales.values()) > 0.5  # the weights really moved
    for expected, got in zip(before, _run(model, held_out), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_alpha_one_gives_every_channel_of_an_equalized_activation_the_same_range(tiny_bundle: Path) -> None:
    model = onnx.load(str(tiny_bundle / FP32_GRAPH))
    calibration = _feeds(tiny_bundle, 4, seed=5)
    pairs = equalization_pairs(model, ["backbone", "ffn"])
    before = activation_ranges(model, pairs, calibration)
    equalize(model, pairs, before, 1.0)
    after = activation_ranges(model, pairs, calibration)
    for name, ranges in after.items():
        fired = before[name] > 0
        assert np.ptp(before[name][fired]) > 0.1 * before[name].max()  # uneven before
        np.testing.assert_allclose(ranges[fired], 1.0, rtol=1e-4)  # range / s = range / range


def test_the_scale_is_smoothquants_and_unscorable_channels_keep_its_direction() -> None:
    activation = np.array([4.0, 1.0, 0.0, 9.0])
    weight = np.array([1.0, 4.0, 2.0, 0.0])
    scales = smoothquant_scales(activation, weight, 0.5)
    np.testing.assert_allclose(scales[:2], [4.0 ** 0.5 / 1.0 ** 0.5, 1.0 ** 0.5 / 4.0 ** 0.5])
    assert scales[2] == scales[:2].min()  # never fired: treated as the smallest range
    assert scales[3] == scales[:2].max()  # never read: its range shrunk the most
    np.testing.assert_allclose(smoothquant_scales(activation[:2], weight[:2], 1.0), activation[:2])
    np.testing.assert_allclose(smoothquant_scales(activation[:2], weight[:2], 0.0), 1.0 / weight[:2])
    with pytest.raises(CheckpointError, match=r"alpha 1.5; expected a number in \[0, 1\]"):
        smoothquant_scales(activation, weight, 1.5)


def _block(second_reader: bool = False, relus: int = 1) -> onnx.ModelProto:
    """conv1 -> ReLU(s) -> conv2 named like a BasicBlock; optionally conv1's output also read elsewhere."""
    prefix = "/model/backbone/layer1/layer1.0"
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32), f"w{i}") for i in (1, 2)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name=f"{prefix}/conv1/Conv")]
    tensor = "c1"
    for i in range(relus):
        nodes.append(helper.make_node("Relu", [tensor], [f"r{i}"], name=f"{prefix}/Relu_{i}"))
        tensor = f"r{i}"
    nodes.append(helper.make_node("Conv", [tensor, "w2"], ["y"], name=f"{prefix}/conv2/Conv"))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if second_reader:
        nodes.append(helper.make_node("Neg", ["c1"], ["z"], name="/model/elsewhere"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                              outputs, weights)
    return helper.make_model(graph)


@pytest.mark.parametrize(("model", "message"), [
    (_block(second_reader=True), r"'/model/backbone/layer1/layer1.0/conv1/Conv' tensor 'c1' is read by more than one"),
    (_block(relus=0), r"conv1/Conv' 0 ReLUs before '/model/backbone/layer1/layer1.0/conv2/Conv'; exactly one"),
    (_block(relus=2), r"2 ReLUs before"),
])
def test_a_layer_named_as_a_pair_but_not_foldable_is_refused_by_name(model: onnx.ModelProto, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        equalization_pairs(model, ["backbone"])


def test_a_requested_group_the_graph_does_not_have_is_refused_not_skipped() -> None:
    assert len(equalization_pairs(_block(), ["backbone"])) == 1
    with pytest.raises(CheckpointError, match=r"the graph has no ffn pair \(linear1 -> ReLU -> linear2"):
        equalization_pairs(_block(), ["backbone", "ffn"])
    with pytest.raises(CheckpointError, match=r"equalization groups \['attention'\] unknown"):
        Recipe(frozenset(), equalization=frozenset({"attention"}))


def test_relus_behind_a_reshape_move_next_to_their_gemm_without_changing_the_actions(tiny_bundle: Path) -> None:
    model = onnx.load(str(tiny_bundle / FP32_GRAPH))
    held_out = _feeds(tiny_bundle, 2, seed=9)
    before = _run(model, held_out)
    assert relus_next_to_producers(model) == 3  # one per feed-forward block
    onnx.checker.check_model(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    assert all(producers[n.input[0]].op_type in ("Conv", "Gemm", "Add") for n in model.graph.node
               if n.op_type == "Relu")
    for expected, got in zip(before, _run(model, held_out), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_folded_relus_leave_no_relu_after_an_int8_layer_and_fewer_quantize_nodes(tiny_bundle: Path,
                                                                                   tmp_path: Path) -> None:
    feeds = _feeds(tiny_bundle, 4, seed=5)
    counts, zero_points = {}, {}
    for fold in (False, True):
        graph = tmp_path / f"fold_{fold}.onnx"
        quantize_graph(tiny_bundle / FP32_GRAPH, graph, lambda: iter(feeds),
                       Recipe(frozenset({"backbone_stem"}), fold_relu=fold), 4, lambda _: None)
        model = onnx.load(str(graph))
        counts[fold] = collections.Counter(n.op_type for n in model.graph.node)
        initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        quantizers = {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
        zero_points[fold] = [int(initializers[quantizers[n.output[0]].input[2]]) for n in model.graph.node
                             if n.op_type == "Gemm" and "/linear1/" in n.name]
    assert counts[True]["Relu"] == 1  # only the stem's, after its float convolution
    assert counts[False]["Relu"] == 1 + 8 + 8 + 3  # stem, both ReLUs of each BasicBlock, each feed-forward block
    # Each BasicBlock's two ReLUs no longer need their own QuantizeLinear ...
    assert counts[True]["QuantizeLinear"] == counts[False]["QuantizeLinear"] - (8 + 8)
    # ... and each linear1's u8 output range starts at 0 (the ReLU), not at its negative minimum.
    assert zero_points[True] == [0, 0, 0]
    assert all(z > 0 for z in zero_points[False])
    for op in ("Conv", "Gemm", "Add", "MaxPool", "MatMul"):
        assert counts[True][op] == counts[False][op], op


def test_equalizing_the_backbone_still_quantizes_the_hailo_head_which_has_none(tiny_bundle: Path,
                                                                               tmp_path: Path) -> None:
    import shutil

    from act_policy.export.bundle import HEAD_INT8_GRAPH
    from act_policy.export.quantize import DEFAULT_RECIPE, quantize_bundle

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    recipe = Recipe(DEFAULT_RECIPE.float_groups, equalization=frozenset({"backbone", "ffn"}), fold_relu=True)
    record = quantize_bundle(bundle, None, 4, lambda _: None, recipe, head=True)
    assert record["recipe"]["equalization"] == ["backbone", "ffn"]
    assert (bundle / HEAD_INT8_GRAPH).exists()
    with pytest.raises(CheckpointError, match="the graph has no backbone pair"):  # alone, the head has none
        equalization_pairs(onnx.load(str(bundle / "head.onnx")), ["backbone"])

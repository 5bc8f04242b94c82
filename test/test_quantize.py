"""Calibration sources and static INT8 quantization (act-policy quantize)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import CALIBRATION_SAMPLES, tiny_policy_artifacts

from act_policy import load_policy
from act_policy.core.synthetic import synthetic_observations
from act_policy.export.bundle import (
    HEAD_GRAPH,
    HEAD_INT8_GRAPH,
    INT8_GRAPH,
    POLICY_FILE,
    WEIGHTS_FILE,
    sha256_file,
)
from act_policy.export.calibration import CalibrationError, calibration_observations, npz_observations
from act_policy.export.equalization import relus_next_to_producers
from act_policy.export.fidelity import compare, held_out_observations
from act_policy.export.onnx_export import flat_inputs
from act_policy.export.quantize import (
    DEFAULT_RECIPE,
    NODE_GROUPS,
    Recipe,
    correct_layer_biases,
    layer_output_shifts,
    node_group,
    quantize_bundle,
    quantize_graph,
)

SPEC = tiny_policy_artifacts().spec
CAMERA = SPEC.cameras[0].name
STATE = SPEC.state.name


def recorded(count: int, offset: int = 0) -> list[dict[str, np.ndarray]]:
    """Observations whose state encodes their index, so tests can tell which were chosen."""
    artifacts = tiny_policy_artifacts()
    frames = list(synthetic_observations(SPEC, artifacts.input_stats, count))
    return [{CAMERA: f[CAMERA], STATE: np.full(6, offset + i, np.float32)} for i, f in enumerate(frames)]


def write_episode(path: Path, observations: list[dict[str, np.ndarray]]) -> None:
    np.savez(path, **{k: np.stack([o[k] for o in observations]) for k in observations[0]},
             action=np.zeros((len(observations), 6), np.float32))


def copy_with_recording(bundle: Path, tmp_path: Path, steps: int = 4) -> tuple[Path, Path]:
    """A copy of ``bundle`` and a folder holding one recorded episode of ``steps`` observations."""
    calib = tmp_path / "calib"
    calib.mkdir()
    write_episode(calib / "episode.npz", recorded(steps))
    return Path(shutil.copytree(bundle, tmp_path / "bundle")), calib


@pytest.fixture
def quantized(tiny_quantized_bundle: Path) -> Path:
    return tiny_quantized_bundle


def test_per_observation_files_are_read_in_name_order(tmp_path: Path) -> None:
    for i, obs in enumerate(recorded(3)):
        np.savez(tmp_path / f"obs_{i:03d}.npz", **obs)
    states = [o[STATE][0] for o in npz_observations(tmp_path, SPEC, 3)]
    assert states == [0, 1, 2]


def test_episodes_are_sampled_evenly_across_all_files(tmp_path: Path) -> None:
    for e in range(3):
        write_episode(tmp_path / f"episode_{e}.npz", recorded(5, offset=5 * e))
    chosen = [o[STATE][0] for o in npz_observations(tmp_path, SPEC, 4)]
    assert chosen == [0, 5, 9, 14]  # round(linspace(0, 14, 4))
    first = next(iter(npz_observations(tmp_path, SPEC, 4)))
    assert first[CAMERA].shape == (64, 80, 3) and first[CAMERA].dtype == np.uint8


def test_held_out_steps_are_the_ones_calibration_does_not_use(tmp_path: Path) -> None:
    write_episode(tmp_path / "episode.npz", recorded(10))
    calibration = [o[STATE][0] for o in calibration_observations(tmp_path, SPEC, {}, 4)]
    held_out = [o[STATE][0] for o in calibration_observations(tmp_path, SPEC, {}, 4, held_out=3)]
    assert calibration == [0, 3, 6, 9]
    assert held_out == [1, 4, 8]  # evenly over the unused steps 1, 2, 4, 5, 7, 8
    assert [o[STATE][0] for o in calibration_observations(tmp_path, SPEC, {}, 10, held_out=3)] == []


def test_renamed_keys_from_the_checkpoint_rename_map_are_accepted(tmp_path: Path) -> None:
    import dataclasses

    spec = dataclasses.replace(SPEC, rename_map={"observation.images.cam0": CAMERA})
    obs = recorded(1)[0]
    np.savez(tmp_path / "a.npz", **{"observation.images.cam0": obs[CAMERA], STATE: obs[STATE]})
    assert len(list(npz_observations(tmp_path, spec, 1))) == 1


def test_too_few_observations_is_an_error_not_a_smaller_calibration(tmp_path: Path) -> None:
    write_episode(tmp_path / "episode.npz", recorded(5))
    with pytest.raises(CalibrationError, match=r"5 observations in 1 \.npz files, but 6 calibration samples"):
        list(npz_observations(tmp_path, SPEC, 6))


@pytest.mark.parametrize(("change", "message"), [
    (lambda o: {**o, CAMERA: o[CAMERA][:32]}, r"'observation.images.front' has shape \(32, 80, 3\), expected"),
    (lambda o: {**o, CAMERA: o[CAMERA].astype(np.float32)},
     "'observation.images.front' has dtype float32, expected uint8 RGB"),
    (lambda o: {STATE: o[STATE]}, r"missing keys \['observation.images.front'\]"),
    (lambda o: {**o, STATE: np.zeros(7, np.float32)}, r"'observation.state' has shape \(7,\)"),
])
def test_malformed_files_are_named_with_the_offending_key(tmp_path: Path, change, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **change(recorded(1)[0]))
    with pytest.raises(CalibrationError, match=rf"bad.npz: {message}"):
        list(npz_observations(tmp_path, SPEC, 1))


def test_episode_keys_must_agree_on_length(tmp_path: Path) -> None:
    obs = recorded(3)
    np.savez(tmp_path / "ep.npz", **{CAMERA: np.stack([o[CAMERA] for o in obs]),
                                     STATE: np.stack([o[STATE] for o in obs[:2]])})
    with pytest.raises(CalibrationError, match="disagree on the number of observations"):
        list(npz_observations(tmp_path, SPEC, 1))


def test_source_must_exist_and_be_npz_data_or_synthetic(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"nope: does not exist"):
        calibration_observations(tmp_path / "nope", SPEC, {}, 4)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CalibrationError, match=r"must be a \.npz file, a folder of \.npz files or 'synthetic'"):
        calibration_observations(tmp_path / "notes.txt", SPEC, {}, 4)


def test_synthetic_calibration_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    artifacts = tiny_policy_artifacts()
    observations = list(calibration_observations("synthetic", SPEC, artifacts.input_stats, 2))
    assert len(observations) == 2
    assert "SYNTHETIC" in caplog.text


def test_quantize_records_what_it_did_and_int8_stays_close_to_float(quantized: Path) -> None:
    record = json.loads((quantized / POLICY_FILE).read_text())["quantization"]
    assert record["calibration_samples"] == CALIBRATION_SAMPLES
    assert record["calibration_source"] == "synthetic"
    assert record["activation_type"] == "u8"
    assert INT8_GRAPH in json.loads((quantized / POLICY_FILE).read_text())["files"]
    reference = load_policy(quantized, backend="cpu_fp32", num_threads=1)
    int8 = load_policy(quantized, backend="cpu_int8", num_threads=1)
    held_out = held_out_observations(reference.artifacts, 4)
    errors = compare([reference.predict_chunk(o) for o in held_out], [int8.predict_chunk(o) for o in held_out],
                     reference.artifacts)
    assert 0 < errors["rel_l2"] < 0.10  # loose: a tiny random model on 8 samples; the real bar is benchmarked


def test_quantize_from_recorded_observations_with_too_few_samples_fails(quantized: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(quantized, tmp_path / "bundle"))
    write_episode(tmp_path / "episode.npz", recorded(3))
    with pytest.raises(CalibrationError, match="but 4 calibration samples were requested"):
        quantize_bundle(bundle, tmp_path, 4, progress=lambda _: None)


def test_a_bundle_missing_a_file_it_lists_is_refused_before_calibration_and_left_as_it_was(
        quantized: Path, tmp_path: Path) -> None:
    from act_policy.core.errors import CheckpointError

    bundle = Path(shutil.copytree(quantized, tmp_path / "bundle"))
    (bundle / HEAD_INT8_GRAPH).unlink()
    before = (bundle / POLICY_FILE).read_text()
    with pytest.raises(CheckpointError, match=rf"lists \['{HEAD_INT8_GRAPH}'\], missing from .*damaged"):
        quantize_bundle(bundle, None, 10**6, progress=lambda _: None)  # a calibration would fail: too many samples
    assert (bundle / POLICY_FILE).read_text() == before


@pytest.mark.parametrize("name", [WEIGHTS_FILE, HEAD_GRAPH, HEAD_INT8_GRAPH])
def test_a_corrupt_file_it_does_not_rewrite_is_refused_before_calibration_never_signed_again(
        quantized: Path, tmp_path: Path, name: str) -> None:
    from act_policy.core.errors import CheckpointError

    bundle = Path(shutil.copytree(quantized, tmp_path / "bundle"))
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / name).write_bytes(bytes(data))
    before = (bundle / POLICY_FILE).read_text()
    with pytest.raises(CheckpointError, match=rf"{name}: sha256 .* does not match policy.json"):
        quantize_bundle(bundle, tmp_path / "no_recording", 2, progress=lambda _: None)  # calibrating would fail
    assert (bundle / POLICY_FILE).read_text() == before


def test_quantize_again_without_head_keeps_the_int8_head_and_the_calibration_it_was_made_with(
        quantized: Path, tmp_path: Path) -> None:
    bundle, calib = copy_with_recording(quantized, tmp_path)
    head_record = json.loads((bundle / POLICY_FILE).read_text())["quantization"]["head"]
    record = quantize_bundle(bundle, calib, 4, progress=lambda _: None)
    assert record["calibration_source"] == str(calib) and record["calibration_samples"] == 4
    assert record["head"] == {**head_record, "calibration_source": "synthetic",
                              "calibration_samples": CALIBRATION_SAMPLES}
    document = json.loads((bundle / POLICY_FILE).read_text())
    assert document["files"][HEAD_INT8_GRAPH] == sha256_file(bundle / HEAD_INT8_GRAPH)
    load_policy(bundle, backend="cpu_int8")  # every file still matches what policy.json says


def test_a_lost_int8_graph_is_written_again_with_the_calibration_the_record_names(
        quantized: Path, tmp_path: Path) -> None:
    from act_policy.core.errors import CheckpointError

    bundle, calib = copy_with_recording(quantized, tmp_path)
    quantize_bundle(bundle, calib, 4, progress=lambda _: None, head=True)
    (bundle / INT8_GRAPH).unlink()
    with pytest.raises(CheckpointError) as refused:
        load_policy(bundle, backend="cpu_int8")
    hint = str(refused.value)
    assert f"run `act-policy quantize {bundle}` on the calibration it had" in hint
    assert f"{calib}, 4 samples; give it as --calib/--samples again" in hint


def test_quantize_from_recorded_observations(quantized: Path, tmp_path: Path) -> None:
    bundle, calib = copy_with_recording(quantized, tmp_path)
    (bundle / INT8_GRAPH).unlink()
    recipe = dataclasses.replace(DEFAULT_RECIPE, activation_type="s8")
    record = quantize_bundle(bundle, calib, 4, progress=lambda _: None, recipe=recipe)
    assert record["calibration_source"] == str(calib) and record["activation_type"] == "s8"
    assert record["recipe"] == recipe.describe()
    policy = load_policy(bundle, backend="cpu_int8", num_threads=1)
    assert policy.predict_chunk(recorded(1)[0]).shape == (SPEC.config.chunk_size, 6)


def test_quantize_also_writes_an_int8_head_listed_with_its_sha256(quantized: Path) -> None:
    import onnx

    document = json.loads((quantized / POLICY_FILE).read_text())
    assert document["files"][HEAD_INT8_GRAPH] == sha256_file(quantized / HEAD_INT8_GRAPH)
    assert document["quantization"]["head"]["graph"] == HEAD_INT8_GRAPH
    head, head_int8 = (onnx.load(str(quantized / name)) for name in (HEAD_GRAPH, HEAD_INT8_GRAPH))
    assert [i.name for i in head_int8.graph.input] == [i.name for i in head.graph.input]
    assert any(n.op_type == "QuantizeLinear" for n in head_int8.graph.node)
    kept = set(document["quantization"]["head"]["float_nodes"])
    assert any("action_head" in name for name in kept)  # the same float policy as act_int8.onnx


def test_int8_head_is_as_accurate_on_backbone_features_as_the_int8_whole_network(quantized: Path) -> None:
    """Calibrated on its real inputs, the head alone loses no more than act_int8.onnx does end to end."""
    import onnxruntime as ort

    reference = load_policy(quantized, backend="cpu_fp32", num_threads=1)
    graphs = json.loads((quantized / POLICY_FILE).read_text())["graphs"]
    backbone = ort.InferenceSession(str(quantized / graphs["backbones"][CAMERA]))
    sessions = {name: ort.InferenceSession(str(quantized / name))
                for name in (HEAD_GRAPH, HEAD_INT8_GRAPH, graphs["fp32"], INT8_GRAPH)}
    head_errors, whole_errors = [], []
    for obs in held_out_observations(reference.artifacts, 4):
        inputs = reference.preprocess(obs)
        head_feed = dict(zip(graphs["head_inputs"], [backbone.run(None, {"image": inputs.images[0]})[0],
                                                     inputs.state], strict=True))
        whole_feed = dict(zip(graphs["inputs"], [inputs.images[0], inputs.state], strict=True))
        for errors, feed, (fp32, int8) in ((head_errors, head_feed, (HEAD_GRAPH, HEAD_INT8_GRAPH)),
                                           (whole_errors, whole_feed, (graphs["fp32"], INT8_GRAPH))):
            a, b = (sessions[name].run(None, feed)[0] for name in (fp32, int8))
            errors.append(float(np.linalg.norm(b - a) / np.linalg.norm(a)))
    # normalized actions of a tiny random model: both around 14 %; a head calibrated on the wrong ranges is far off
    assert 0 < np.mean(head_errors) < 1.25 * np.mean(whole_errors), (head_errors, whole_errors)


def _weight_is_quantized(model, node) -> bool:
    """A Conv/Gemm runs in INT8 when its weight comes through a DequantizeLinear (QDQ format)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    producer = producers.get(node.input[1])
    return producer is not None and producer.op_type == "DequantizeLinear"


def test_every_weighted_node_belongs_to_the_group_named_by_its_module(quantized: Path) -> None:
    import onnx

    model = onnx.load(str(quantized / "act_fp32.onnx"), load_external_data=False)
    inputs = {i.name for i in model.graph.input}
    groups = {n.name: node_group(n, inputs) for n in model.graph.node if n.op_type in ("Conv", "Gemm", "Add")}
    assert set(groups.values()) == set(NODE_GROUPS)  # the tiny model has every kind of node
    assert groups["/model/backbone/conv1/Conv"] == "backbone_stem"
    assert groups["/model/encoder_img_feat_input_proj/Conv"] == "input_projections"
    assert groups["/model/encoder_robot_state_input_proj/Gemm"] == "input_projections"
    backbone = {n: g for n, g in groups.items() if "/backbone/layer" in n}
    assert all(g == ("backbone_add" if n.endswith("/Add") else "backbone") for n, g in backbone.items())
    assert "backbone_add" in backbone.values()
    assert all(g == "encoder_ffn" for n, g in groups.items() if "/encoder/" in n and "/linear" in n)


def test_the_default_recipe_keeps_exactly_its_float_groups_in_float(quantized: Path) -> None:
    import onnx

    fp32 = onnx.load(str(quantized / "act_fp32.onnx"), load_external_data=False)
    int8 = onnx.load(str(quantized / INT8_GRAPH))
    inputs = {i.name for i in fp32.graph.input}
    group = {n.name: node_group(n, inputs) for n in fp32.graph.node if n.op_type in ("Conv", "Gemm")}
    weighted = [n for n in int8.graph.node if n.op_type in ("Conv", "Gemm")]
    assert {n.name for n in weighted} == set(group)
    for node in weighted:
        expected_float = group[node.name] in DEFAULT_RECIPE.float_groups or any(
            p in node.name for p in DEFAULT_RECIPE.float_patterns)
        assert _weight_is_quantized(int8, node) != expected_float, (node.name, group[node.name])
    assert any(_weight_is_quantized(int8, n) for n in weighted)
    record = json.loads((quantized / POLICY_FILE).read_text())["quantization"]
    assert record["recipe"] == DEFAULT_RECIPE.describe()


def test_by_default_the_decoder_feed_forward_stays_float_and_the_backbone_is_int8(quantized: Path) -> None:
    """The measured default (benchmarks/int8_recipe.md section 9): on trained weights the decoder's feed-forward is
    the largest INT8 error left, for 1.9 % of the MACs; the backbone, where the speed is, is INT8."""
    import onnx

    fp32 = onnx.load(str(quantized / "act_fp32.onnx"), load_external_data=False)
    int8 = onnx.load(str(quantized / INT8_GRAPH))
    inputs = {i.name for i in fp32.graph.input}
    group = {n.name: node_group(n, inputs) for n in fp32.graph.node if n.op_type in ("Conv", "Gemm")}
    weighted = {n.name: n for n in int8.graph.node if n.op_type in ("Conv", "Gemm")}
    decoder_ffn = [weighted[n] for n, g in group.items() if g == "decoder_ffn"]
    backbone = [weighted[n] for n, g in group.items() if g == "backbone"]
    assert decoder_ffn and not any(_weight_is_quantized(int8, n) for n in decoder_ffn)
    assert backbone and all(_weight_is_quantized(int8, n) for n in backbone)


def test_bias_correction_removes_the_mean_per_joint_offset_on_the_calibration_observations(quantized: Path,
                                                                                          tmp_path: Path) -> None:
    import onnxruntime as ort

    reference = load_policy(quantized, backend="cpu_fp32", num_threads=1)
    names = json.loads((quantized / POLICY_FILE).read_text())["graphs"]["inputs"]
    observations = list(synthetic_observations(SPEC, reference.artifacts.input_stats, 6, seed=5))

    def feeds():
        return (dict(zip(names, flat_inputs(reference.preprocess(o)), strict=True)) for o in observations)

    fp32 = ort.InferenceSession(str(quantized / "act_fp32.onnx"))
    offsets = {}
    for correct in (False, True):
        recipe = Recipe(frozenset({"backbone_stem", "action_head"}), bias_correction=correct)
        graph = tmp_path / f"int8_{correct}.onnx"
        quantize_graph(quantized / "act_fp32.onnx", graph, feeds, recipe, len(observations), lambda _: None)
        int8 = ort.InferenceSession(str(graph))
        diffs = [int8.run(None, f)[0] - fp32.run(None, f)[0] for f in feeds()]
        offsets[correct] = np.abs(np.mean(diffs, axis=(0, 1, 2))).max()
    assert offsets[False] > 1e-3  # INT8 rounding leaves a per-joint offset on a tiny random model
    assert offsets[True] < 1e-5  # the float head's bias absorbs exactly that mean


def _calibration_feeds(bundle: Path, observations: list[dict[str, np.ndarray]]):
    reference = load_policy(bundle, backend="cpu_fp32", num_threads=1)
    names = json.loads((bundle / POLICY_FILE).read_text())["graphs"]["inputs"]
    return lambda: (dict(zip(names, flat_inputs(reference.preprocess(o)), strict=True)) for o in observations)


@pytest.mark.parametrize("fold_relu", [False, True])
def test_layer_bias_correction_leaves_each_int8_layer_less_than_half_a_bias_step_of_mean_shift(
        quantized: Path, tmp_path: Path, fold_relu: bool) -> None:
    import onnx
    from onnx import numpy_helper

    artifacts = load_policy(quantized, backend="cpu_fp32", num_threads=1).artifacts
    feeds = _calibration_feeds(quantized, list(synthetic_observations(SPEC, artifacts.input_stats, 4, seed=5)))
    fp32, graph = quantized / "act_fp32.onnx", tmp_path / "int8.onnx"
    if fold_relu:  # a folded ReLU's layer writes the ReLU's output name: the shift is still taken before the ReLU
        moved = onnx.load(str(fp32))
        relus_next_to_producers(moved)
        fp32 = tmp_path / "fp32_relus_moved.onnx"
        onnx.save(moved, str(fp32))
    quantize_graph(fp32, graph, feeds, Recipe(frozenset({"backbone_stem", "action_head"}), fold_relu=fold_relu), 4,
                   lambda _: None)
    before = layer_output_shifts(fp32, graph, feeds())
    assert correct_layer_biases(fp32, graph, feeds(), lambda _: None) == len(before)
    after = layer_output_shifts(fp32, graph, feeds())

    model = onnx.load(str(graph))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    steps = {n.output[0]: initializers[producers[n.input[2]].input[1]] for n in model.graph.node
             if n.op_type in ("Conv", "Gemm") and _weight_is_quantized(model, n)}
    assert set(before) == set(after) == set(steps)  # every INT8 Conv/Gemm, and only those
    assert len(steps) > 10
    assert any(np.abs(before[name] / steps[name]).max() > 1 for name in steps)  # INT8 shifts some channels
    for name, step in steps.items():
        assert np.all(np.abs(after[name]) <= 0.5 * step * (1 + 1e-3) + 1e-7), name


def test_gptq_weight_rounding_changes_only_s8_weight_values_and_lowers_the_int8_layers_output_error(
        quantized: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from act_policy.export.weight_rounding import QUANTIZED_SUFFIX, input_hessians, int8_layers

    artifacts = load_policy(quantized, backend="cpu_fp32", num_threads=1).artifacts
    feeds = _calibration_feeds(quantized, list(synthetic_observations(SPEC, artifacts.input_stats, 4, seed=5)))
    fp32 = quantized / "act_fp32.onnx"
    nearest = Recipe(frozenset({"backbone_stem", "action_head"}))
    models = {}
    for rounding in ("nearest", "gptq"):
        graph = tmp_path / f"{rounding}.onnx"
        quantize_graph(fp32, graph, feeds, dataclasses.replace(nearest, weight_rounding=rounding), 4, lambda _: None)
        models[rounding] = onnx.load(str(graph))

    def nodes(model):
        return [(n.op_type, n.name, list(n.input), list(n.output)) for n in model.graph.node]

    assert nodes(models["gptq"]) == nodes(models["nearest"])  # same graph: same INT8 kernels
    values = {k: {t.name: numpy_helper.to_array(t) for t in m.graph.initializer} for k, m in models.items()}
    assert values["gptq"].keys() == values["nearest"].keys()
    layers = int8_layers(models["nearest"])
    weights = {layer.weight.name for layer in layers}
    assert len(weights) > 10
    for name, value in values["nearest"].items():
        if name not in weights:
            np.testing.assert_array_equal(values["gptq"][name], value, err_msg=name)  # scales, biases, zero points
    assert sum(int((values["gptq"][w] != values["nearest"][w]).sum()) for w in weights) > 0

    floats = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(fp32)).graph.initializer}
    hessians = input_hessians(models["nearest"], layers, feeds())

    def output_error(rounding: str) -> float:  # sum over layers of E||(W - W_int8) x||^2, relative to E||W x||^2
        total = 0.0
        for layer in layers:
            w = floats[layer.weight.name.removesuffix(QUANTIZED_SUFFIX)].reshape(layer.scale.size, -1)
            delta = w - values[rounding][layer.weight.name].reshape(w.shape) * layer.scale[:, None]
            h = hessians[layer.key]
            total += np.trace(delta @ h @ delta.T) / np.trace(w @ h @ w.T)
        return total

    assert output_error("gptq") < 0.8 * output_error("nearest")


def test_gptq_on_input_statistics_it_cannot_invert_names_the_layer_and_the_way_out(
        quantized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from act_policy.core.errors import CheckpointError
    from act_policy.export import weight_rounding

    artifacts = load_policy(quantized, backend="cpu_fp32", num_threads=1).artifacts
    feeds = _calibration_feeds(quantized, list(synthetic_observations(SPEC, artifacts.input_stats, 2, seed=5)))

    def not_positive_definite(*args, **kwargs):
        raise np.linalg.LinAlgError("Matrix is not positive definite")
    monkeypatch.setattr(weight_rounding, "gptq_round", not_positive_definite)
    recipe = Recipe(frozenset({"backbone_stem", "action_head"}), weight_rounding="gptq")
    with pytest.raises(CheckpointError, match=r"weight rounding: \S+: its input statistics cannot be inverted "
                                              r"\(Matrix is not positive definite\); quantize with "
                                              r"--weight-rounding nearest"):
        quantize_graph(quantized / "act_fp32.onnx", tmp_path / "gptq.onnx", feeds, recipe, 2, lambda _: None)


def test_mean_minmax_ranges_are_the_mean_of_each_observations_range_so_one_outlier_does_not_stretch_them(
        quantized: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    artifacts = load_policy(quantized, backend="cpu_fp32", num_threads=1).artifacts
    observations = list(synthetic_observations(SPEC, artifacts.input_stats, 4, seed=5))
    observations[2] = {**observations[2], STATE: observations[2][STATE] * 50}  # one wild joint reading
    feeds = _calibration_feeds(quantized, observations)
    states = np.stack([f[STATE] for f in feeds()]).reshape(4, -1)
    scales = {}
    for method in ("minmax", "mean-minmax"):
        graph = tmp_path / f"{method}.onnx"
        quantize_graph(quantized / "act_fp32.onnx", graph, feeds, Recipe(frozenset({"backbone_stem"}),
                                                                          calibration=method), 4, lambda _: None)
        model = onnx.load(str(graph))
        initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == STATE)
        scales[method] = float(initializers[q.input[1]])
    low, high = states.min(1), states.max(1)  # per observation
    assert scales["minmax"] == pytest.approx((max(high.max(), 0) - min(low.min(), 0)) / 255, rel=1e-5)
    assert scales["mean-minmax"] == pytest.approx((max(high.mean(), 0) - min(low.mean(), 0)) / 255, rel=1e-5)


@pytest.mark.parametrize(("recipe", "message"), [
    (dict(float_groups=frozenset({"backbone", "attention"})), r"float groups \['attention'\] unknown"),
    (dict(float_groups=frozenset(), bias_correction=True), "keep 'action_head' in float"),
    (dict(float_groups=frozenset(), calibration="kl"), "calibration method 'kl'"),
    (dict(float_groups=frozenset(), activation_type="s16"), "activation type 's16'"),
    (dict(float_groups=frozenset(), weight_rounding="adaround"), "weight rounding 'adaround'"),
    (dict(float_groups=frozenset(), equalization=frozenset({"ffn"}), equalization_alpha=-0.1), "alpha -0.1"),
])
def test_a_bad_recipe_is_refused_before_calibration(recipe: dict, message: str) -> None:
    from act_policy.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match=message):
        Recipe(**recipe)


def test_the_cli_options_printed_for_a_recipe_select_that_recipe() -> None:
    import argparse

    from act_policy.tools.quantize import add_arguments, recipe_from_args, recipe_options

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert recipe_from_args(parser.parse_args(["bundle"])) == DEFAULT_RECIPE
    other = Recipe(frozenset({"backbone_stem", "action_head"}), ("/backbone/layer2/",), "percentile", 99.9, "s8",
                   True, not DEFAULT_RECIPE.layer_bias_correction, not DEFAULT_RECIPE.fold_relu,
                   frozenset({"backbone", "ffn"}) - DEFAULT_RECIPE.equalization, 0.25,
                   "gptq" if DEFAULT_RECIPE.weight_rounding == "nearest" else "nearest")
    assert recipe_from_args(parser.parse_args(["bundle", *recipe_options(other)])) == other

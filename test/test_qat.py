"""Distillation QAT's fake quantization (benchmarks/int8_qat.py): the INT8 graph's places and ranges, in torch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from bundle_helpers import CALIBRATION_SAMPLES, quantized_copy
from onnx import numpy_helper

from act_policy.backends.torch_fp32 import build_prepared_model
from act_policy.core.errors import CheckpointError
from act_policy.export import load_bundle, reference_policy
from act_policy.export.bundle import INT8_GRAPH
from act_policy.export.calibration import calibration_observations
from benchmarks.int8_qat import FakeQuantACT, QATSettings, finetune, stacked
from benchmarks.int8_recipe import CANDIDATES

NOT_THE_CALIBRATION_SEED = 5


def calibration_inputs(bundle: Path, count: int = CALIBRATION_SAMPLES) -> list:
    artifacts = load_bundle(bundle)
    policy = reference_policy(artifacts)
    return [policy.preprocess(o) for o in calibration_observations(None, artifacts.spec, artifacts.input_stats, count)]


def activation_ranges(graph: Path) -> set[tuple[float, int]]:
    """(scale, zero point) of every activation tensor the QDQ graph rounds to u8 (not its weights)."""
    model = onnx.load(str(graph))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {(float(initializers[n.input[1]]), int(initializers[n.input[2]])) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in initializers}


@pytest.fixture(scope="module")
def recipe_r_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_bundle`` quantized by recipe R, the recipe the student mirrors."""
    return quantized_copy(tiny_bundle, tmp_path_factory.mktemp("recipe_r") / "bundle", CANDIDATES["R O + folded ReLUs"])


def test_the_student_rounds_exactly_the_tensors_and_ranges_the_int8_graph_of_recipe_r_rounds(
        recipe_r_bundle: Path) -> None:
    student = FakeQuantACT(build_prepared_model(load_bundle(recipe_r_bundle)))
    student.calibrate(stacked([i]) for i in calibration_inputs(recipe_r_bundle))
    onnx_runtime = activation_ranges(recipe_r_bundle / INT8_GRAPH)
    ours = {(q.scale, q.zero_point) for q in student.activations.values() if q.enabled}

    def same(a: tuple[float, int], b: tuple[float, int]) -> bool:
        return a[1] == b[1] and abs(a[0] - b[0]) <= 1e-6 * b[0]

    assert all(any(same(o, r) for o in ours) for r in onnx_runtime), "a tensor ONNX Runtime rounds is float here"
    assert all(any(same(o, r) for r in onnx_runtime) for o in ours), "a tensor rounded here is float in the graph"


def test_weights_given_back_in_checkpoint_names_fold_into_the_students_weights(tiny_bundle: Path) -> None:
    artifacts = load_bundle(tiny_bundle)
    student = FakeQuantACT(build_prepared_model(artifacts))
    with torch.no_grad():  # any change to the folded weights must survive the way back through the batch norms
        for parameter in student.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    weights = student.plain_weights(dict(artifacts.weights))
    assert set(weights) == set(artifacts.weights)
    rebuilt = dict(build_prepared_model(dataclasses.replace(artifacts, weights=weights)).named_parameters())
    for name, parameter in student.model.named_parameters():
        plain = name.replace("parametrizations.", "").replace(".original", "")
        torch.testing.assert_close(rebuilt[plain], parameter.detach(), rtol=1e-5, atol=1e-6)


def test_finetuning_lowers_the_fake_quant_error_it_was_trained_on(tiny_bundle: Path) -> None:
    result = finetune(load_bundle(tiny_bundle), calibration_inputs(tiny_bundle), QATSettings(steps=30, lr=1e-6,
                      batch=4, optimizer="adam"), lambda _: None)
    record = result.record
    assert record["fake_quant_mse_after"] < 0.7 * record["fake_quant_mse_before"]
    assert record["observations"] == CALIBRATION_SAMPLES and record["steps"] == 30
    assert np.isfinite(record["float_drift_rel_l2_normalized"]) and record["float_drift_rel_l2_normalized"] > 0


@pytest.mark.parametrize(("settings", "message"), [({"steps": 0}, "positive"), ({"steps": 5, "lr": 0.0}, "positive"),
                                                   ({"steps": 5, "optimizer": "lbfgs"}, "'adam' or 'sgd'")])
def test_settings_that_cannot_train_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        QATSettings(**settings)

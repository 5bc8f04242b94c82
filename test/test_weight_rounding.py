"""GPTQ weight rounding of INT8 layers (act_policy.export.weight_rounding)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from act_policy.core.errors import CheckpointError
from act_policy.export.weight_rounding import S8_LIMIT, gptq_round, input_columns


def _output_error(weights: np.ndarray, s8: np.ndarray, scale: np.ndarray, hessian: np.ndarray) -> float:
    """E‖(W − Ŵ) x‖² for inputs of second moment ``hessian``."""
    delta = weights - s8 * scale[:, None]
    return float(np.trace(delta @ hessian @ delta.T))


def _layer(rows: int = 24, columns: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.1, (rows, columns))
    return weights, np.abs(weights).max(1) / S8_LIMIT  # ONNX Runtime's symmetric per-channel scale


def test_with_uncorrelated_inputs_gptq_is_round_to_nearest() -> None:
    weights, scale = _layer()
    hessian = np.diag(np.random.default_rng(1).uniform(0.5, 2.0, weights.shape[1]))
    nearest = np.clip(np.round(weights / scale[:, None]), -S8_LIMIT, S8_LIMIT)
    np.testing.assert_array_equal(gptq_round(weights, hessian, scale, damp=0.0), nearest)


def test_with_correlated_inputs_gptq_halves_the_layer_output_error_of_round_to_nearest() -> None:
    weights, scale = _layer()
    rng = np.random.default_rng(2)
    d = weights.shape[1]  # inputs correlated like neighbouring pixels: 8 shared factors plus a little noise
    x = rng.normal(size=(d, 8)) @ rng.normal(size=(8, 4000)) + 0.1 * rng.normal(size=(d, 4000))
    hessian = x @ x.T / x.shape[1]
    nearest = np.clip(np.round(weights / scale[:, None]), -S8_LIMIT, S8_LIMIT)
    rounded = gptq_round(weights, hessian, scale)
    assert rounded.dtype == np.int8 and np.abs(rounded.astype(int)).max() <= S8_LIMIT
    assert np.abs(rounded - nearest).max() >= 1  # some weights moved off their nearest step
    assert _output_error(weights, rounded, scale, hessian) < 0.5 * _output_error(weights, nearest, scale, hessian)


def test_inputs_never_seen_nonzero_do_not_break_the_rounding() -> None:
    weights, scale = _layer()
    hessian = np.eye(weights.shape[1])
    hessian[5, 5] = 0.0  # a dead input channel (a ReLU that never fired)
    rounded = gptq_round(weights, hessian, scale)
    assert rounded[:, 5].tolist() == [0] * weights.shape[0]
    assert np.all(np.isfinite(rounded))


def _node(op: str, **attributes) -> onnx.NodeProto:
    return onnx.helper.make_node(op, ["x", "w"], ["y"], name=f"/test/{op}", **attributes)


@pytest.mark.parametrize(("stride", "pads"), [(1, [1, 1, 1, 1]), (2, [3, 3, 3, 3]), (2, [0, 1, 0, 1])])
def test_conv_input_columns_times_the_weight_matrix_is_the_convolution(stride: int, pads: list[int]) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 5, 11, 13)).astype(np.float32)
    w = rng.normal(size=(7, 5, 3, 3)).astype(np.float32)
    node = _node("Conv", kernel_shape=[3, 3], strides=[stride, stride], pads=pads)
    top, left, bottom, right = pads
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.from_numpy(x), (left, right, top, bottom)),
                                          torch.from_numpy(w), stride=stride).numpy()
    got = w.reshape(7, -1) @ input_columns(node, x)
    np.testing.assert_allclose(got, expected.reshape(7, -1), rtol=1e-4, atol=1e-4)


def test_gemm_input_columns_are_the_tokens() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    w = np.ones((2, 4), np.float32)
    node = _node("Gemm", transA=0, transB=1)
    np.testing.assert_array_equal(w @ input_columns(node, x), (x @ w.T).T)


def test_layer_forms_it_cannot_unfold_are_refused_by_name() -> None:
    with pytest.raises(CheckpointError, match=r"/test/Conv: .*group 1"):
        input_columns(_node("Conv", kernel_shape=[3, 3], group=2), np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(CheckpointError, match=r"/test/Gemm: .*transB=1"):
        input_columns(_node("Gemm", transB=0), np.zeros((3, 4), np.float32))

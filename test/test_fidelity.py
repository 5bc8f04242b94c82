"""The one fidelity function every tool reports: errors in normalized action units (σ) and per joint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from bundle_helpers import tiny_policy_artifacts

from act_policy.core.config import NormMode
from act_policy.export.fidelity import compare, summary_line

CHUNKS, STEPS, JOINTS = 3, 10, 6


def _reference(artifacts) -> tuple[np.ndarray, np.ndarray]:
    """Chunks at mean + 1 σ on every joint (the normalized reference is exactly 1 everywhere), and σ."""
    stats = artifacts.action_stats["action"]
    mean, std = stats["mean"].astype(np.float64), stats["std"].astype(np.float64)
    return np.tile(mean + std, (CHUNKS, STEPS, 1)), std


def test_bias_rms_and_relative_l2_in_sigma_per_joint() -> None:
    artifacts = tiny_policy_artifacts()
    reference, std = _reference(artifacts)
    actual = reference.copy()
    actual[..., 0] += 0.02 * std[0]  # a constant offset of 0.02 σ on joint 0
    actual[..., 1] += 0.1 * std[1] * np.where(np.arange(STEPS) % 2 == 0, 1.0, -1.0)  # ±0.1 σ noise, no bias
    errors = compare(list(reference), list(actual), artifacts, [f"j{i}" for i in range(JOINTS)])

    joints = errors["per_joint"]
    assert joints["j0"]["bias"] == pytest.approx(0.02, abs=1e-5)
    assert joints["j0"]["rms"] == pytest.approx(0.02, abs=1e-5)
    assert joints["j1"]["bias"] == pytest.approx(0.0, abs=1e-5)
    assert joints["j1"]["rms"] == pytest.approx(0.1, abs=1e-5)
    assert joints["j1"]["rel_l2"] == pytest.approx(0.1, abs=1e-5)  # the normalized reference is 1
    assert all(joints[f"j{i}"]["rms"] == pytest.approx(0.0, abs=1e-5) for i in range(2, JOINTS))
    assert errors["max_abs_bias_normalized"] == pytest.approx(0.02, abs=1e-5)
    # ‖Δn‖ / ‖n(ref)‖ = sqrt((0.02² + 0.1²) / 6) over all chunks, steps and joints
    assert errors["rel_l2_normalized"] == pytest.approx(np.sqrt((0.02 ** 2 + 0.1 ** 2) / JOINTS), rel=1e-4)
    assert errors["max_abs_normalized"] == pytest.approx(0.1, abs=1e-5)
    assert errors["observations"] == CHUNKS
    assert "max |bias| 0.020 sigma (j0)" in summary_line(errors)


def test_raw_relative_l2_is_diluted_by_the_dataset_mean_and_the_normalized_one_is_not() -> None:
    artifacts = tiny_policy_artifacts()
    reference, std = _reference(artifacts)
    errors = compare(reference, reference + 0.05 * std, artifacts)
    expected_raw = np.linalg.norm(np.broadcast_to(0.05 * std, reference.shape)) / np.linalg.norm(reference)
    assert errors["rel_l2"] == pytest.approx(expected_raw, rel=1e-4)
    assert errors["rel_l2_normalized"] == pytest.approx(0.05, rel=1e-4)
    assert errors["max_abs"] == pytest.approx(0.05 * std.max(), rel=1e-4)


def test_min_max_actions_are_measured_in_half_ranges() -> None:
    artifacts = tiny_policy_artifacts()
    action = dataclasses.replace(artifacts.spec.action, norm_mode=NormMode.MIN_MAX)
    artifacts = dataclasses.replace(artifacts, spec=dataclasses.replace(artifacts.spec, action=action))
    stats = artifacts.action_stats["action"]
    half_range = (stats["max"].astype(np.float64) - stats["min"]) / 2
    reference = np.tile(stats["max"].astype(np.float64), (STEPS, 1))  # normalized: exactly 1
    errors = compare(reference, reference - 0.03 * half_range, artifacts)
    assert errors["max_abs_bias_normalized"] == pytest.approx(0.03, abs=1e-5)
    assert errors["per_joint"]["joint_0"]["bias"] == pytest.approx(-0.03, abs=1e-5)
    assert errors["rel_l2_normalized"] == pytest.approx(0.03, rel=1e-4)


def test_a_replayed_trajectory_is_one_observation() -> None:
    artifacts = tiny_policy_artifacts()
    trajectory = np.zeros((25, JOINTS))
    assert compare(trajectory, trajectory, artifacts)["observations"] == 1


@pytest.mark.parametrize(("reference", "actual", "names", "message"), [
    ((STEPS, JOINTS + 1), (STEPS, JOINTS + 1), None, r"must match and end in 6 \(the action size\)"),
    ((STEPS, JOINTS), (STEPS + 1, JOINTS), None, "must match"),
    ((STEPS, JOINTS), (STEPS, JOINTS), ["a", "b"], "2 joint names for 6 action entries"),
])
def test_mismatched_inputs_are_refused(reference: tuple, actual: tuple, names, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare(np.zeros(reference), np.zeros(actual), tiny_policy_artifacts(), names)

"""Normalization matches LeRobot's formulas exactly, for every mode, both directions."""

from __future__ import annotations

import numpy as np
import pytest

from act_policy.core.config import Feature, FeatureType, NormMode
from act_policy.core.errors import CheckpointError
from act_policy.core.normalization import Normalizer, affine_map

EPS = 1e-8
rng = np.random.default_rng(0)
X = rng.normal(0, 10, 5).astype(np.float32)
STATS = {
    "mean": rng.normal(0, 5, 5), "std": rng.uniform(0.5, 3, 5),
    "min": np.array([-3.0, -1, 0, 2, 5]), "max": np.array([4.0, 1, 0, 9, 5]),  # two zero ranges
    "q01": np.array([-2.0, -1, 0, 1, 2]), "q99": np.array([2.0, 1, 0, 3, 4]),
    "q10": np.array([-1.0, -0.5, 0, 0.5, 1]), "q90": np.array([1.0, 0.5, 0, 1.5, 2]),
}


def lerobot_normalize(mode: NormMode, x: np.ndarray, s: dict) -> np.ndarray:
    """The formulas as written in LeRobot's NormalizerProcessorStep (float64 here)."""
    x = x.astype(np.float64)
    if mode is NormMode.MEAN_STD:
        return (x - s["mean"]) / (s["std"] + EPS)
    lo, hi = {NormMode.MIN_MAX: ("min", "max"), NormMode.QUANTILES: ("q01", "q99"),
              NormMode.QUANTILE10: ("q10", "q90")}[mode]
    denom = np.where(s[hi] - s[lo] == 0, EPS, s[hi] - s[lo])
    return 2 * (x - s[lo]) / denom - 1


def lerobot_unnormalize(mode: NormMode, y: np.ndarray, s: dict) -> np.ndarray:
    y = y.astype(np.float64)
    if mode is NormMode.MEAN_STD:
        return y * s["std"] + s["mean"]
    lo, hi = {NormMode.MIN_MAX: ("min", "max"), NormMode.QUANTILES: ("q01", "q99"),
              NormMode.QUANTILE10: ("q10", "q90")}[mode]
    denom = np.where(s[hi] - s[lo] == 0, EPS, s[hi] - s[lo])
    return (y + 1) / 2 * denom + s[lo]


@pytest.mark.parametrize("mode", [NormMode.MEAN_STD, NormMode.MIN_MAX, NormMode.QUANTILES, NormMode.QUANTILE10])
def test_each_mode_matches_lerobot_formula_both_ways(mode: NormMode) -> None:
    m = affine_map(mode, STATS)
    np.testing.assert_allclose(m.normalize(X), lerobot_normalize(mode, X, STATS), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.unnormalize(X), lerobot_unnormalize(mode, X, STATS), rtol=1e-5, atol=1e-4)


def test_zero_range_min_max_maps_min_to_minus_one_like_lerobot() -> None:
    m = affine_map(NormMode.MIN_MAX, STATS)
    assert m.normalize(np.array([0.0, -1, 0, 2, 5], np.float32))[[2, 4]] == pytest.approx([-1.0, -1.0])


def test_legacy_min_max_uses_lerobot_0_3_epsilon_in_the_denominator() -> None:
    s = {"min": np.array([0.0]), "max": np.array([2.0])}
    m = affine_map(NormMode.MIN_MAX, s, legacy=True)
    assert m.normalize(np.array([2.0], np.float32))[0] == pytest.approx(2 * 2 / (2 + EPS) - 1, abs=1e-7)
    assert m.unnormalize(np.array([1.0], np.float32))[0] == pytest.approx(2.0)


def test_identity_passes_values_through_and_a_normalized_feature_without_stats_is_refused() -> None:
    np.testing.assert_array_equal(affine_map(NormMode.IDENTITY, STATS).normalize(X), X)
    # loaders map LeRobot's pass-through of a feature without stats to IDENTITY (and record it);
    # a normalized mode reaching the normalizer without stats is a broken file, never a silent identity
    with pytest.raises(CheckpointError, match=r"policy.json: x: MEAN_STD normalization but no statistics"):
        affine_map(NormMode.MEAN_STD, None, where="policy.json: x")


def test_missing_stat_is_named() -> None:
    with pytest.raises(CheckpointError, match=r"stats.json: x.*needs stat 'std'"):
        affine_map(NormMode.MEAN_STD, {"mean": np.zeros(5)}, where="stats.json: x")


def test_nan_stat_is_named() -> None:
    with pytest.raises(CheckpointError, match=r"f\.max: statistics contain NaN"):
        affine_map(NormMode.MIN_MAX, {"min": np.zeros(2), "max": np.array([1.0, np.nan])}, where="f")


def test_stats_of_the_wrong_size_are_refused() -> None:
    feature = Feature("observation.state", FeatureType.STATE, (6,), NormMode.MEAN_STD)
    with pytest.raises(CheckpointError, match=r"observation.state.mean: statistics have shape \(5,\), expected \(6,\)"):
        Normalizer((feature,), {"observation.state": {"mean": np.zeros(5), "std": np.ones(5)}})


def test_image_goes_from_uint8_hwc_to_normalized_chw_like_lerobot() -> None:
    feature = Feature("observation.images.top", FeatureType.VISUAL, (3, 4, 5), NormMode.MEAN_STD)
    stats = {"mean": np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1), "std": np.array([0.229, 0.224, 0.225])}
    image = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    out = Normalizer((feature,), {feature.name: stats}).image_to_input(feature.name, image)
    chw = image.transpose(2, 0, 1).astype(np.float64) / 255.0
    expected = (chw - stats["mean"]) / (stats["std"].reshape(3, 1, 1) + EPS)
    assert out.shape == (1, 3, 4, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], expected, atol=1e-5)


def test_stats_the_mode_does_not_use_may_have_any_shape() -> None:
    feature = Feature("observation.state", FeatureType.STATE, (2,), NormMode.MEAN_STD)
    stats = {"observation.state": {"mean": np.zeros(2), "std": np.ones(2), "count": np.array([500])}}
    np.testing.assert_allclose(Normalizer((feature,), stats).normalize("observation.state", np.ones(2)), 1.0)

"""LeRobot's feature normalization, in NumPy so every backend shares one implementation.

Formulas (LeRobot ≥ 0.4 ``NormalizerProcessorStep``, eps = 1e-8 unless the checkpoint says):

* MEAN_STD:   ``(x - mean) / (std + eps)``;     inverse ``x * std + mean``
* MIN_MAX:    ``2 (x - min) / d - 1``, d = max - min, or eps where d == 0;  inverse ``(x + 1) / 2 · d + min``
* QUANTILES:  as MIN_MAX with (q01, q99);  QUANTILE10: with (q10, q90)
* IDENTITY: unchanged (a checkpoint loader maps LeRobot's pass-through of a feature without
  stats to IDENTITY and records it in ``PolicyArtifacts.missing_stats``).

LeRobot ≤ 0.3 (``normalize.py``) differed only in MIN_MAX: ``2 (x - min) / (max - min + 1e-8) - 1``
and inverse ``(x + 1) / 2 · (max - min) + min``; ``legacy=True`` selects that.

Every mode is an affine map ``x · scale + offset`` per element, so the class stores that pair
once and applies one fused multiply-add — which also lets images go from uint8 HWC to the
normalized CHW float tensor in a single pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from act_policy.core.config import Feature, FeatureType, NormMode
from act_policy.core.errors import CheckpointError

DEFAULT_EPS = 1e-8
REQUIRED_STATS = {
    NormMode.MEAN_STD: ("mean", "std"),
    NormMode.MIN_MAX: ("min", "max"),
    NormMode.QUANTILES: ("q01", "q99"),
    NormMode.QUANTILE10: ("q10", "q90"),
}

Stats = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class AffineMap:
    """``normalize(x) = (x - center) · scale + offset``; ``unnormalize(y) = y · inv_scale + inv_offset``.

    Subtracting ``center`` first keeps LeRobot's exactness where a stat range is zero (a
    gripper that never moved in the dataset): ``scale`` is then 2/eps and a fused
    ``x · scale + c`` would cancel catastrophically. The inverse is stored separately because
    LeRobot's inverse of MEAN_STD multiplies by ``std``, not ``std + eps``.
    """

    center: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    inv_scale: np.ndarray
    inv_offset: np.ndarray

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.center) * self.scale + self.offset).astype(np.float32, copy=False)

    def unnormalize(self, y: np.ndarray) -> np.ndarray:
        return (y * self.inv_scale + self.inv_offset).astype(np.float32, copy=False)


def affine_map(mode: NormMode, stats: dict[str, np.ndarray] | None, eps: float = DEFAULT_EPS,
               where: str = "", legacy: bool = False) -> AffineMap:
    """Build the affine map for one feature; raises naming ``where`` if stats are missing or NaN."""
    if mode is NormMode.IDENTITY:
        one, zero = np.float32(1.0), np.float32(0.0)
        return AffineMap(zero, one, zero, one, zero)
    if stats is None:  # loaders turn a LeRobot pass-through into IDENTITY; anything else is a broken file
        raise CheckpointError(f"{where}: {mode.value} normalization but no statistics for this feature")
    lo_name, hi_name = REQUIRED_STATS[mode]
    for name in (lo_name, hi_name):
        if name not in stats:
            raise CheckpointError(f"{where}: {mode.value} normalization needs stat {name!r}, found {sorted(stats)}")
        if not np.all(np.isfinite(stats[name])):
            raise CheckpointError(f"{where}.{name}: statistics contain NaN or infinity")
    a = np.asarray(stats[lo_name], np.float64)
    b = np.asarray(stats[hi_name], np.float64)
    if mode is NormMode.MEAN_STD:
        parts = (a, 1.0 / (b + eps), 0.0, b, a)
    elif legacy:
        parts = (a, 2.0 / (b - a + eps), -1.0, (b - a) / 2.0, a + (b - a) / 2.0)
    else:
        denom = np.where(b - a == 0, eps, b - a)
        parts = (a, 2.0 / denom, -1.0, denom / 2.0, a + denom / 2.0)
    return AffineMap(*(np.asarray(v, np.float32) for v in parts))


class Normalizer:
    """Per-feature affine maps for a policy's inputs and its action."""

    def __init__(self, features: tuple[Feature, ...], stats: Stats, eps: float = DEFAULT_EPS,
                 source: str = "stats", legacy: bool = False) -> None:
        self.maps: dict[str, AffineMap] = {}
        for f in features:
            # Images are normalized per channel: LeRobot stores (3, 1, 1) or (3,) stats.
            target = (f.shape[0], 1, 1) if f.type is FeatureType.VISUAL else f.shape
            feature_stats = stats.get(f.name)
            if feature_stats is not None:  # only the stats this mode uses ('count' has shape (1,))
                feature_stats = {k: _reshaped(v, target, f"{source}: {f.name}.{k}")
                                 for k, v in feature_stats.items() if k in REQUIRED_STATS.get(f.norm_mode, ())}
            self.maps[f.name] = affine_map(f.norm_mode, feature_stats, eps, f"{source}: {f.name}", legacy)

    def normalize(self, name: str, x: np.ndarray) -> np.ndarray:
        return self.maps[name].normalize(x)

    def unnormalize(self, name: str, y: np.ndarray) -> np.ndarray:
        return self.maps[name].unnormalize(y)

    def image_to_input(self, name: str, image_hwc_uint8: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB → normalized float32 (1, 3, H, W), as LeRobot: /255, CHW, normalize."""
        m = self.maps[name]  # image stds are never ~0, so one fused multiply-add is exact enough
        chw = np.ascontiguousarray(image_hwc_uint8.transpose(2, 0, 1), dtype=np.float32)
        chw *= m.scale / np.float32(255.0)
        chw += m.offset - m.center * m.scale
        return chw[None]


def _reshaped(value: np.ndarray, target: tuple[int, ...], where: str) -> np.ndarray:
    value = np.asarray(value)
    if value.size == 1 and len(target) == 3:
        return value.reshape(())
    if value.size != int(np.prod(target)):
        raise CheckpointError(f"{where}: statistics have shape {value.shape}, expected {target}")
    return value.reshape(target)

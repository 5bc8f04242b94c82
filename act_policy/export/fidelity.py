"""How far a backend's actions are from the float32 reference, on observations it never saw.

One function, :func:`compare`, gives the numbers every tool reports (``act-policy benchmark``,
``quantize``, ``replay``), so a figure means the same thing wherever it is printed.

Errors are given in **normalized action units** — the unit the network predicts in: the
dataset's σ per joint for MEAN_STD actions, half the dataset's range for MIN_MAX (the units
the checkpoint's own normalizer maps to ±1) — and **per joint**. Raw action units hide errors
behind the dataset means (a joint at 120° with a 0.5° error looks like 0.4 %, even when that
joint's σ is 2°), and a constant per-joint offset (a bias) is the error a robot notices most:
it shifts every commanded position the same way.

Held-out observations are synthetic scenes with their own seed and time step, and skip t = 0,
so none coincides with a calibration scene (:mod:`act_policy.export.calibration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.synthetic import synthetic_observations

HELD_OUT_SEED = 202
HELD_OUT_DT = 0.0731
NORMALIZED_UNIT = "normalized action units (dataset sigma for MEAN_STD, half range for MIN_MAX)"


def held_out_observations(artifacts: PolicyArtifacts, count: int) -> list[dict[str, np.ndarray]]:
    scenes = synthetic_observations(artifacts.spec, artifacts.input_stats, count + 1, seed=HELD_OUT_SEED,
                                    dt=HELD_OUT_DT)
    return list(scenes)[1:]


def _ratio(num: float, den: float) -> float:
    return float(num / max(den, 1e-12))


def compare(reference: Sequence[np.ndarray] | np.ndarray, actual: Sequence[np.ndarray] | np.ndarray,
            artifacts: PolicyArtifacts, joint_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Errors of ``actual`` actions vs ``reference`` actions, both in action units, last axis = joints.

    Inputs: any matching shapes ``(..., A)``, e.g. a list of ``(chunk, A)`` chunks or a replayed
    ``(T, A)`` trajectory. With ``d`` the error and ``n(·)`` the checkpoint's action normalizer
    (so ``n(a) − n(b)`` is the error in σ for MEAN_STD):

    * ``rel_l2`` = ‖d‖₂ / ‖reference‖₂ in action units (diluted by the dataset mean; kept for
      comparison with older reports), ``max_abs`` / ``mean_abs`` in action units;
    * ``rel_l2_normalized`` = ‖n(actual) − n(reference)‖₂ / ‖n(reference)‖₂, the headline figure;
    * ``max_abs_normalized``: largest single error, normalized (export parity tolerance 1e-4);
    * ``per_joint[name]``: ``bias`` = mean normalized error (signed), ``rms`` = its root mean
      square, ``rel_l2`` = that joint's normalized relative L2;
    * ``max_abs_bias_normalized`` = max over joints of |bias|: a systematic offset in σ.

    Raises ValueError when the shapes differ or the last axis is not the policy's action size.
    """
    ref, out = np.asarray(reference, np.float64), np.asarray(actual, np.float64)
    action_dim = artifacts.spec.action_dim
    if ref.shape != out.shape or ref.shape[-1] != action_dim:
        raise ValueError(f"compare: reference {ref.shape} and actual {out.shape} must match and end in "
                         f"{action_dim} (the action size)")
    names = list(joint_names) if joint_names is not None else [f"joint_{i}" for i in range(action_dim)]
    if len(names) != action_dim:
        raise ValueError(f"compare: {len(names)} joint names for {action_dim} action entries")
    name = artifacts.spec.action.name
    norm = artifacts.action_normalizer()
    ref_n = norm.normalize(name, ref.astype(np.float32)).astype(np.float64).reshape(-1, action_dim)
    out_n = norm.normalize(name, out.astype(np.float32)).astype(np.float64).reshape(-1, action_dim)
    diff, diff_n = out - ref, out_n - ref_n
    bias = diff_n.mean(0)
    rms = np.sqrt((diff_n ** 2).mean(0))
    joint_rel = [_ratio(np.linalg.norm(diff_n[:, j]), np.linalg.norm(ref_n[:, j])) for j in range(action_dim)]
    return {
        "max_abs": float(np.abs(diff).max()),
        "max_abs_normalized": float(np.abs(diff_n).max()),
        "mean_abs": float(np.abs(diff).mean()),
        "rel_l2": _ratio(np.linalg.norm(diff), np.linalg.norm(ref)),
        "rel_l2_normalized": _ratio(np.linalg.norm(diff_n), np.linalg.norm(ref_n)),
        "max_abs_bias_normalized": float(np.abs(bias).max()),
        "per_joint": {n: {"bias": float(b), "rms": float(r), "rel_l2": rel}
                      for n, b, r, rel in zip(names, bias, rms, joint_rel, strict=True)},
        "observations": int(ref.shape[0]) if ref.ndim == 3 else 1,
        "normalized_unit": NORMALIZED_UNIT,
    }


def summary_line(errors: dict[str, Any]) -> str:
    """One line for a console: normalized relative L2, worst per-joint bias (σ), raw relative L2."""
    worst = max(errors["per_joint"].items(), key=lambda item: abs(item[1]["bias"]))
    return (f"relative L2 {errors['rel_l2_normalized'] * 100:.2f} % normalized "
            f"({errors['rel_l2'] * 100:.2f} % in action units), max |bias| {errors['max_abs_bias_normalized']:.3f} "
            f"sigma ({worst[0]}), max abs {errors['max_abs_normalized']:.3g} sigma")

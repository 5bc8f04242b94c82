"""How far a backend's actions are from the float32 torch reference, on observations it never saw.

Held-out observations are synthetic scenes with their own seed and time step, and skip t = 0,
so none coincides with a calibration scene (:mod:`act_policy.export.calibration`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.synthetic import synthetic_observations

HELD_OUT_SEED = 202
HELD_OUT_DT = 0.0731


def held_out_observations(artifacts: PolicyArtifacts, count: int) -> list[dict[str, np.ndarray]]:
    scenes = synthetic_observations(artifacts.spec, artifacts.input_stats, count + 1, seed=HELD_OUT_SEED,
                                    dt=HELD_OUT_DT)
    return list(scenes)[1:]


def compare(reference: Sequence[np.ndarray], actual: Sequence[np.ndarray], artifacts: PolicyArtifacts) -> dict:
    """Errors of ``actual`` chunks vs ``reference`` chunks (both in action units).

    ``rel_l2`` = ‖actual − reference‖₂ / ‖reference‖₂ over all chunks, in action units: the
    headline number. Action units include the dataset mean, which can make this look small, so
    ``rel_l2_normalized`` gives the same ratio in the network's normalized action space, and
    ``max_abs_normalized`` is comparable with the export's parity tolerance (1e-4).
    """
    ref, out = np.stack(reference).astype(np.float64), np.stack(actual).astype(np.float64)
    name = artifacts.spec.action.name
    norm = artifacts.action_normalizer()
    ref_n, out_n = norm.normalize(name, ref).astype(np.float64), norm.normalize(name, out).astype(np.float64)
    diff = out - ref
    return {
        "max_abs": float(np.abs(diff).max()),
        "max_abs_normalized": float(np.abs(out_n - ref_n).max()),
        "mean_abs": float(np.abs(diff).mean()),
        "rel_l2": float(np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-12)),
        "rel_l2_normalized": float(np.linalg.norm(out_n - ref_n) / max(np.linalg.norm(ref_n), 1e-12)),
        "observations": len(reference),
    }

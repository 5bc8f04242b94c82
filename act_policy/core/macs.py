"""Multiply-accumulate count of one inference, measured on the deployed graph.

Counting needs torch (the model is run under ``FlopCounterMode``), so ``act-policy export`` counts
once and records the figure in the bundle's ``policy.json`` (``macs_per_inference``): a torch-free
robot reads it back. A bundle written before that record existed can be counted only with torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.dependencies import available

if TYPE_CHECKING:  # torch is imported where the model is run: a bundle's MACs are read without it
    from act_policy.core.model import ACT


def count_macs(model: ACT) -> int:
    """MACs of one batch-1 forward of a prepared model (torch counts 2 FLOPs per MAC).

    Counted by running the model under ``FlopCounterMode`` rather than by formula, so the
    figure always matches the network actually executed (precomputed parts excluded).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = model.spec
    device = next(model.parameters()).device
    images = [torch.zeros(1, *f.shape, device=device) for f in spec.cameras]
    state = torch.zeros(1, *spec.state.shape, device=device) if spec.state else None
    env = torch.zeros(1, *spec.env_state.shape, device=device) if spec.env_state else None
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(images, state, env)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class MacCount:
    """MACs of one inference at the trained resolution, or None; ``source`` says where the figure
    came from, or why there is none."""

    macs: int | None
    source: str


def macs_per_inference(artifacts: PolicyArtifacts, progress: Callable[[str], None] = lambda _: None) -> MacCount:
    """The bundle's recorded count; else counted on the torch model (a LeRobot checkpoint, the demo, a
    bundle exported before the count was recorded); else None with the reason (such a bundle, no torch).

    ``progress`` is told when counting starts (it builds and runs the float32 model: seconds).
    """
    if artifacts.macs_per_inference is not None:
        return MacCount(artifacts.macs_per_inference, "recorded in policy.json at export")
    if not available("torch"):
        return MacCount(None, "unknown: this bundle was exported before act_policy recorded MACs in policy.json, "
                              "and counting them needs torch; export the bundle again to record them")
    from act_policy.backends.torch_fp32 import build_prepared_model

    progress("counting MACs")
    return MacCount(count_macs(build_prepared_model(artifacts)), "counted on the torch model")

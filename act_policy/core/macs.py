"""Multiply-accumulate count of one inference, measured on the deployed graph."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from act_policy.core.model import ACT


def count_macs(model: ACT) -> int:
    """MACs of one batch-1 forward of a prepared model (torch counts 2 FLOPs per MAC).

    Counted by running the model under ``FlopCounterMode`` rather than by formula, so the
    figure always matches the network actually executed (precomputed parts excluded).
    """
    spec = model.spec
    device = next(model.parameters()).device
    images = [torch.zeros(1, *f.shape, device=device) for f in spec.cameras]
    state = torch.zeros(1, *spec.state.shape, device=device) if spec.state else None
    env = torch.zeros(1, *spec.env_state.shape, device=device) if spec.env_state else None
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(images, state, env)
    return counter.get_total_flops() // 2

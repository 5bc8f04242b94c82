"""The in-memory form of a loaded policy, whatever it was loaded from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from act_policy.core.config import PolicySpec
from act_policy.core.normalization import DEFAULT_EPS, Normalizer, Stats


@dataclass
class PolicyArtifacts:
    """A policy as backends see it: spec, lean-model weights, normalization, origin.

    ``weights`` uses the lean model's names (LeRobot's ``model.*`` keys without the prefix).
    ``source`` is the checkpoint or bundle folder; backends that run exported graphs look
    for their files there.
    """

    spec: PolicySpec
    weights: dict[str, torch.Tensor]
    input_stats: Stats
    action_stats: Stats
    source: Path | None = None
    input_eps: float = DEFAULT_EPS
    action_eps: float = DEFAULT_EPS
    legacy_normalization: bool = False

    def input_normalizer(self) -> Normalizer:
        return Normalizer(self.spec.inputs, self.input_stats, self.input_eps,
                          f"{self.source}: input stats", self.legacy_normalization)

    def action_normalizer(self) -> Normalizer:
        return Normalizer((self.spec.action,), self.action_stats, self.action_eps,
                          f"{self.source}: action stats", self.legacy_normalization)

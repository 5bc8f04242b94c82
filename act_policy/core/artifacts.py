"""The in-memory form of a loaded policy, whatever it was loaded from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from act_policy.core.config import PolicySpec
from act_policy.core.errors import CheckpointError
from act_policy.core.normalization import DEFAULT_EPS, Normalizer, Stats


@dataclass
class PolicyArtifacts:
    """A policy as backends see it: spec, lean-model weights, normalization, origin.

    ``weights`` uses the lean model's names (LeRobot's ``model.*`` keys without the prefix).
    ``source`` is the checkpoint or bundle folder; backends that run exported graphs look
    for their files there. ``missing_stats`` maps each feature whose training config normalizes
    it but whose checkpoint has no statistics for it to the configured mode: such a feature
    passes through unnormalized (LeRobot does the same, with a warning), which deployment
    tools refuse unless the user allows it (:meth:`require_complete_stats`).
    """

    spec: PolicySpec
    weights: dict[str, torch.Tensor]
    input_stats: Stats
    action_stats: Stats
    source: Path | None = None
    input_eps: float = DEFAULT_EPS
    action_eps: float = DEFAULT_EPS
    legacy_normalization: bool = False
    missing_stats: dict[str, str] = field(default_factory=dict)

    def require_complete_stats(self, allowed: bool, how_to_allow: str) -> None:
        """Raise CheckpointError when a normalized feature has no stats, unless ``allowed``.

        ``how_to_allow`` names the switch that accepts it (a CLI flag or node parameter).
        """
        if self.missing_stats and not allowed:
            listed = ", ".join(f"{name!r} ({mode})" for name, mode in sorted(self.missing_stats.items()))
            raise CheckpointError(
                f"{self.source}: normalization configured for {listed} but the checkpoint has no statistics "
                "for it, so it would run unnormalized and the actions would not be in the units the policy was "
                f"trained on; add the stats to the checkpoint, or pass {how_to_allow} to run it anyway")

    def input_normalizer(self) -> Normalizer:
        return Normalizer(self.spec.inputs, self.input_stats, self.input_eps,
                          f"{self.source}: input stats", self.legacy_normalization)

    def action_normalizer(self) -> Normalizer:
        return Normalizer((self.spec.action,), self.action_stats, self.action_eps,
                          f"{self.source}: action stats", self.legacy_normalization)

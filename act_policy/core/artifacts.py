"""The in-memory form of a loaded policy, whatever it was loaded from."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from act_policy.core.config import PolicySpec
from act_policy.core.errors import CheckpointError
from act_policy.core.normalization import DEFAULT_EPS, Normalizer, Stats

if TYPE_CHECKING:  # weights are torch tensors, but only torch backends and export ever read them
    import torch


class LazyWeights(Mapping[str, "torch.Tensor"]):
    """Weights read from disk on first access.

    A deploy bundle's ONNX and Hailo backends never touch the torch weights, so loading a bundle
    neither needs torch nor holds the float32 weights in memory; ``cpu_fp32`` and export read
    (and check) them when they first ask.
    """

    def __init__(self, load: Callable[[], dict[str, torch.Tensor]]) -> None:
        self._load = load
        self._weights: dict[str, torch.Tensor] | None = None

    def _loaded(self) -> dict[str, torch.Tensor]:
        if self._weights is None:
            self._weights = self._load()
        return self._weights

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


@dataclass
class PolicyArtifacts:
    """A policy as backends see it: spec, lean-model weights, normalization, origin.

    ``weights`` uses the lean model's names (LeRobot's ``model.*`` keys without the prefix); a
    bundle's are :class:`LazyWeights`, read only by the backends that need them.
    ``source`` is the checkpoint or bundle folder; backends that run exported graphs look
    for their files there. ``missing_stats`` maps each feature whose training config normalizes
    it but whose checkpoint has no statistics for it to the configured mode: such a feature
    passes through unnormalized (LeRobot does the same, with a warning), which deployment
    tools refuse unless the user allows it (:meth:`require_complete_stats`).
    ``macs_per_inference`` is the count a bundle's ``policy.json`` recorded at export (None when
    loaded from elsewhere, or from a bundle exported before it was recorded; see
    :func:`act_policy.core.macs.macs_per_inference`).
    """

    spec: PolicySpec
    weights: Mapping[str, torch.Tensor]  # a dict, or LazyWeights for a bundle
    input_stats: Stats
    action_stats: Stats
    source: Path | None = None
    input_eps: float = DEFAULT_EPS
    action_eps: float = DEFAULT_EPS
    legacy_normalization: bool = False
    missing_stats: dict[str, str] = field(default_factory=dict)
    macs_per_inference: int | None = None

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

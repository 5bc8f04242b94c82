"""What a trained ACT policy is: its architecture and its input/output features.

Parsed from LeRobot's ``config.json`` in both the current layout (``input_features``,
``normalization_mapping``) and the pre-2025 one (``input_shapes``,
``input_normalization_modes``), so everything downstream sees one shape of data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from act_policy.core.errors import CheckpointError

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.image"
SUPPORTED_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # backbone.RESNETS's names


class FeatureType(str, Enum):
    VISUAL = "VISUAL"
    STATE = "STATE"
    ENV = "ENV"
    ACTION = "ACTION"


class NormMode(str, Enum):
    IDENTITY = "IDENTITY"
    MEAN_STD = "MEAN_STD"
    MIN_MAX = "MIN_MAX"
    QUANTILES = "QUANTILES"
    QUANTILE10 = "QUANTILE10"


@dataclass(frozen=True)
class Feature:
    """One named tensor the policy consumes or produces (shape without batch; images CHW)."""

    name: str
    type: FeatureType
    shape: tuple[int, ...]
    norm_mode: NormMode = NormMode.IDENTITY


@dataclass(frozen=True)
class ACTConfig:
    """Architecture hyper-parameters, with LeRobot's defaults."""

    chunk_size: int = 100
    n_action_steps: int = 100
    vision_backbone: str = "resnet18"
    replace_final_stride_with_dilation: bool = False
    pre_norm: bool = False
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    use_vae: bool = True
    latent_dim: int = 32
    temporal_ensemble_coeff: float | None = None


@dataclass(frozen=True)
class PolicySpec:
    """Everything needed to build, feed and interpret the network, independent of the runtime."""

    config: ACTConfig
    inputs: tuple[Feature, ...]
    action: Feature
    rename_map: dict[str, str] = field(default_factory=dict)
    fps: float | None = None

    @property
    def cameras(self) -> tuple[Feature, ...]:
        """Image features in the order the encoder consumes them (config order)."""
        return tuple(f for f in self.inputs if f.type is FeatureType.VISUAL)

    @property
    def state(self) -> Feature | None:
        return next((f for f in self.inputs if f.type is FeatureType.STATE), None)

    @property
    def env_state(self) -> Feature | None:
        return next((f for f in self.inputs if f.type is FeatureType.ENV), None)

    @property
    def action_dim(self) -> int:
        return self.action.shape[0]

    def feature(self, name: str) -> Feature:
        for f in (*self.inputs, self.action):
            if f.name == name:
                return f
        raise KeyError(name)

    def with_norm_modes(self, modes: dict[str, NormMode]) -> PolicySpec:
        """Copy with per-feature normalization modes replaced (used when stats files say otherwise)."""
        def update(f: Feature) -> Feature:
            return dataclasses.replace(f, norm_mode=modes.get(f.name, f.norm_mode))

        return dataclasses.replace(
            self, inputs=tuple(update(f) for f in self.inputs), action=update(self.action)
        )


def feature_type_from_name(name: str) -> FeatureType:
    """Infer a feature's type from LeRobot's naming convention (pre-2025 configs carry no type)."""
    if name.startswith(IMAGE_PREFIX):
        return FeatureType.VISUAL
    if name == STATE_KEY:
        return FeatureType.STATE
    if name == ENV_STATE_KEY:
        return FeatureType.ENV
    if name == ACTION_KEY:
        return FeatureType.ACTION
    raise KeyError(name)


def _norm_mode(value: str, where: str) -> NormMode:
    try:
        return NormMode(str(value).upper())
    except ValueError:
        allowed = ", ".join(m.value for m in NormMode)
        raise CheckpointError(f"{where}: unknown normalization mode {value!r}; expected one of {allowed}")


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in value):
        raise CheckpointError(f"{where}: expected a list of positive integers, got {value!r}")
    return tuple(value)


def _parse_features(raw: dict[str, Any], path: Path) -> tuple[list[Feature], list[Feature]]:
    """Return (inputs, outputs) from either config layout."""
    mapping = raw.get("normalization_mapping") or {}
    if "input_features" in raw:
        groups = []
        for group in ("input_features", "output_features"):
            features = []
            for name, spec in (raw.get(group) or {}).items():
                where = f"{path}: {group}.{name}"
                if not isinstance(spec, dict) or "type" not in spec or "shape" not in spec:
                    raise CheckpointError(f"{where}: expected {{'type': ..., 'shape': [...]}}")
                try:
                    ftype = FeatureType(spec["type"])
                except ValueError:
                    raise CheckpointError(f"{where}.type: unknown feature type {spec['type']!r}")
                mode = _norm_mode(mapping.get(ftype.value, "IDENTITY"), f"{path}: normalization_mapping")
                features.append(Feature(name, ftype, _shape(spec["shape"], f"{where}.shape"), mode))
            groups.append(features)
        return groups[0], groups[1]
    if "input_shapes" in raw:
        groups = []
        for shapes_key, modes_key in (
            ("input_shapes", "input_normalization_modes"),
            ("output_shapes", "output_normalization_modes"),
        ):
            modes = raw.get(modes_key) or {}
            features = []
            for name, shape in (raw.get(shapes_key) or {}).items():
                where = f"{path}: {shapes_key}.{name}"
                try:
                    ftype = feature_type_from_name(name)
                except KeyError:
                    raise CheckpointError(f"{where}: unknown feature name (not an ACT input or output)")
                mode = _norm_mode(modes.get(name, "IDENTITY"), f"{path}: {modes_key}.{name}")
                features.append(Feature(name, ftype, _shape(shape, where), mode))
            groups.append(features)
        return groups[0], groups[1]
    raise CheckpointError(f"{path}: neither 'input_features' nor 'input_shapes' present")


def parse_lerobot_config(raw: dict[str, Any], path: Path) -> PolicySpec:
    """Build a PolicySpec from a parsed LeRobot ``config.json``; never touches the network."""
    policy_type = raw.get("type", "act")
    if policy_type != "act":
        raise CheckpointError(f"{path}: 'type' is {policy_type!r}; act_policy runs only 'act' policies")
    inputs, outputs = _parse_features(raw, path)
    actions = [f for f in outputs if f.type is FeatureType.ACTION]
    if len(actions) != 1 or len(actions[0].shape) != 1:
        raise CheckpointError(f"{path}: expected exactly one 1-D 'action' output feature, got {outputs}")
    for f in inputs:
        if f.type is FeatureType.ACTION:
            raise CheckpointError(f"{path}: input feature {f.name!r} has type ACTION")
        expected_rank = 3 if f.type is FeatureType.VISUAL else 1
        if len(f.shape) != expected_rank or (f.type is FeatureType.VISUAL and f.shape[0] != 3):
            what = "(3, H, W)" if f.type is FeatureType.VISUAL else "(N,)"
            raise CheckpointError(f"{path}: feature {f.name!r} has shape {f.shape}; expected {what}")
    if not any(f.type in (FeatureType.VISUAL, FeatureType.ENV) for f in inputs):
        raise CheckpointError(f"{path}: ACT needs at least one image or 'observation.environment_state' input")

    values = {f.name: raw[f.name] for f in dataclasses.fields(ACTConfig) if raw.get(f.name) is not None}
    try:
        config = ACTConfig(**values)
    except TypeError as exc:
        raise CheckpointError(f"{path}: {exc}")
    _check_config(config, path)
    return PolicySpec(config=config, inputs=tuple(inputs), action=actions[0])


def _check_config(c: ACTConfig, path: Path) -> None:
    problems = []
    if c.n_action_steps > c.chunk_size or c.n_action_steps < 1:
        problems.append(f"n_action_steps={c.n_action_steps} must be in [1, chunk_size={c.chunk_size}]")
    if c.dim_model % c.n_heads:
        problems.append(f"dim_model={c.dim_model} is not divisible by n_heads={c.n_heads}")
    if c.temporal_ensemble_coeff is not None and c.n_action_steps != 1:
        problems.append("temporal_ensemble_coeff requires n_action_steps=1 (as in LeRobot)")
    if c.replace_final_stride_with_dilation:
        problems.append("replace_final_stride_with_dilation=true is not supported (act_policy runs the standard "
                        "stride-32 ResNet)")
    if c.vision_backbone not in SUPPORTED_BACKBONES:
        problems.append(f"vision_backbone={c.vision_backbone!r}; expected one of {', '.join(SUPPORTED_BACKBONES)}")
    if c.feedforward_activation not in ("relu", "gelu", "glu"):
        problems.append(f"feedforward_activation={c.feedforward_activation!r}; expected relu, gelu or glu")
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))

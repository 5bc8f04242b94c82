"""Reading LeRobot ACT checkpoints (``pretrained_model/`` folders) without LeRobot.

Two layouts exist:

* LeRobot ≥ 0.4: ``config.json``, ``model.safetensors`` (network only),
  ``policy_preprocessor.json`` / ``policy_postprocessor.json`` whose normalizer steps name
  their statistics file in ``state_file`` (flat keys ``<feature>.<stat>``), and an optional
  ``rename_map`` in the rename step.
* LeRobot ≤ 0.3: statistics live inside ``model.safetensors`` as buffers
  ``normalize_inputs.buffer_<feature with '.'→'_'>.<stat>`` and
  ``unnormalize_outputs.buffer_action.<stat>``.

Weights are read with safetensors only (or ``torch.load(weights_only=True)`` for a bare
``.pth``), never unpickled; ``pretrained_backbone_weights`` in the config is ignored because
the checkpoint already holds the trained backbone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.config import Feature, FeatureType, NormMode, PolicySpec, parse_lerobot_config
from act_policy.core.errors import CheckpointError
from act_policy.core.normalization import DEFAULT_EPS, Stats

if TYPE_CHECKING:  # torch is imported where tensors are made: read_json must work on a torch-free robot
    import torch

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PTH_FILES = ("model.pth", "pytorch_model.pth", "pytorch_model.bin")
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
IGNORED_PREFIXES = ("vae_encoder",)  # training-only; latent is zero at inference
LEGACY_STAT_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object at top level")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file (truncated or corrupt?): {exc}")


def _read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    path = folder / WEIGHTS_FILE
    if path.is_file():
        return read_safetensors(path), path
    for name in PTH_FILES:
        pth = folder / name
        if pth.is_file():
            import torch

            try:
                state = torch.load(pth, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises several types for bad/unsafe pickles
                raise CheckpointError(f"{pth}: cannot load as a plain state dict "
                                      f"(weights_only=True refuses pickled objects): {exc}")
            if not isinstance(state, dict):
                raise CheckpointError(f"{pth}: expected a state dict, got {type(state).__name__}")
            return state, pth
    raise CheckpointError(f"{folder}: no {WEIGHTS_FILE} (or {', '.join(PTH_FILES)}) found")


def _split_stats(flat: dict[str, torch.Tensor], source: Path) -> Stats:
    stats: Stats = {}
    for key, tensor in flat.items():
        if "." not in key:
            raise CheckpointError(f"{source}: key {key!r} is not '<feature>.<stat>'")
        feature, stat = key.rsplit(".", 1)
        stats.setdefault(feature, {})[stat] = tensor.float().numpy()
    return stats


def _processor_step(processor: dict[str, Any], registry_name: str, path: Path) -> dict[str, Any] | None:
    steps = processor.get("steps")
    if not isinstance(steps, list):
        raise CheckpointError(f"{path}: 'steps' must be a list")
    matches = [s for s in steps if isinstance(s, dict) and s.get("registry_name") == registry_name]
    if len(matches) > 1:
        raise CheckpointError(f"{path}: more than one {registry_name!r} step")
    return matches[0] if matches else None


def _normalizer_from_processor(folder: Path, file: str, registry_name: str, features: tuple[Feature, ...]
                               ) -> tuple[Stats, dict[str, NormMode], float, dict[str, str]]:
    """Stats, effective per-feature modes, eps, and the normalized features without stats, of one step."""
    path = folder / file
    step = _processor_step(read_json(path), registry_name, path)
    if step is None:
        log.warning("%s: no %s step; features pass through unnormalized", path, registry_name)
        return {}, {f.name: NormMode.IDENTITY for f in features}, DEFAULT_EPS, {}
    cfg = step.get("config") or {}
    state_file = step.get("state_file")
    if not state_file:
        raise CheckpointError(f"{path}: step {registry_name!r} has no 'state_file'")
    stats_path = folder / state_file
    stats = _split_stats(read_safetensors(stats_path), stats_path)
    norm_map = cfg.get("norm_map") or {}
    step_features = cfg.get("features")
    only = cfg.get("normalize_observation_keys")
    modes: dict[str, NormMode] = {}
    missing: dict[str, str] = {}
    for f in features:
        mode = NormMode(str(norm_map.get(f.type.value, "IDENTITY")).upper())
        listed = step_features is None or f.name in step_features
        selected = only is None or f.type is FeatureType.ACTION or f.name in only
        if not (listed and selected):
            mode = NormMode.IDENTITY
        elif mode is not NormMode.IDENTITY and f.name not in stats:
            # LeRobot passes such a feature through unchanged; say so, since it is rarely intended.
            log.warning("%s: %s normalization configured for %r but %s has no stats for it; "
                        "it passes through unnormalized (as in LeRobot)", path, mode.value, f.name, stats_path)
            missing[f.name] = mode.value
            mode = NormMode.IDENTITY
        modes[f.name] = mode
    return stats, modes, float(cfg.get("eps", DEFAULT_EPS)), missing


def _legacy_stats(weights: dict[str, torch.Tensor], spec: PolicySpec, path: Path) -> tuple[Stats, Stats]:
    """Pull ``normalize_inputs.*`` / ``unnormalize_outputs.*`` buffers out of ``weights``.

    Buffer names flatten '.' to '_' (``buffer_observation_images_cam_high``), which is
    ambiguous, so names are matched against the config's features rather than un-flattened.
    """
    by_flat = {"buffer_" + f.name.replace(".", "_"): f.name for f in (*spec.inputs, spec.action)}
    groups: dict[str, Stats] = {p: {} for p in LEGACY_STAT_PREFIXES}
    for key in [k for k in weights if k.startswith(LEGACY_STAT_PREFIXES)]:
        prefix, rest = key.split(".", 1)
        buffer, _, stat = rest.rpartition(".")
        if buffer not in by_flat:
            raise CheckpointError(f"{path}: statistics key {key!r} matches no feature in config.json "
                                  f"(known: {sorted(by_flat)})")
        groups[prefix + "."].setdefault(by_flat[buffer], {})[stat] = weights.pop(key).float().numpy()
    return groups["normalize_inputs."], groups["unnormalize_outputs."]


def expected_shapes(spec: PolicySpec) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every tensor the lean model needs (built on the meta device: free)."""
    import torch

    from act_policy.core.model import ACT

    with torch.device("meta"):
        model = ACT(spec)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_weights(weights: dict[str, torch.Tensor], spec: PolicySpec, path: Path) -> dict[str, torch.Tensor]:
    """Return float32 weights with exactly the lean model's names; raise naming the first problem."""
    import torch

    expected = expected_shapes(spec)
    missing = sorted(set(expected) - set(weights))
    unknown = sorted(set(weights) - set(expected))
    if missing:
        raise CheckpointError(f"{path}: missing {len(missing)} tensors the config requires, e.g. "
                              f"{missing[:5]} (is config.json from the same training run?)")
    if unknown:
        raise CheckpointError(f"{path}: {len(unknown)} tensors not used by an ACT with this config, e.g. {unknown[:5]}")
    out = {}
    for name, shape in expected.items():
        tensor = weights[name]
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                  f"config.json implies {shape}")
        tensor = tensor.float()
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name!r} contains NaN or infinity")
        out[name] = tensor
    return out


def _check_folder(folder: Path) -> None:
    """Say what is wrong with a path that is not a checkpoint folder, before reading any file."""
    if not folder.exists():
        raise CheckpointError(f"{folder}: does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: is a file; expected a LeRobot pretrained_model folder or an act_policy "
                              "deploy bundle (a folder)")
    if not (folder / CONFIG_FILE).is_file():
        if any(folder.glob("*.onnx")):
            raise CheckpointError(f"{folder}: has ONNX graphs but no policy.json, so it is not a complete act_policy "
                                  "bundle (an interrupted export?); export it again")
        raise CheckpointError(f"{folder}: neither a LeRobot pretrained_model folder (no {CONFIG_FILE}) nor an "
                              "act_policy deploy bundle (no policy.json)")


def _require_legacy_stats(spec: PolicySpec, input_stats: Stats, action_stats: Stats, folder: Path,
                          weights_path: Path) -> None:
    """A folder without processor files is LeRobot ≤ 0.3 only if its weights hold the stats its config needs.

    LeRobot ≥ 0.4 keeps the stats beside the weights, in files named by ``policy_preprocessor.json``:
    a ≥ 0.4 folder that lost that file has no buffers and must not load as an unnormalized policy.
    """
    found = {**input_stats, **action_stats}
    needed = [f for f in (*spec.inputs, spec.action) if f.norm_mode is not NormMode.IDENTITY]
    absent = [f.name for f in needed if f.name not in found]
    if not absent:
        return
    if not found:
        present = [p.name for p in folder.glob("policy_*processor*")]
        raise CheckpointError(
            f"{folder / PREPROCESSOR_FILE}: file not found. {CONFIG_FILE} normalizes {absent}, and the statistics "
            f"are neither in {PREPROCESSOR_FILE} (LeRobot >= 0.4 layout) nor as normalize_inputs.* / "
            f"unnormalize_outputs.* buffers in {weights_path.name} (LeRobot <= 0.3 layout)"
            + (f"; found {sorted(present)} of the >= 0.4 layout: copy the whole pretrained_model folder"
               if present else ""))
    raise CheckpointError(f"{weights_path}: LeRobot <= 0.3 checkpoint without normalization buffers for {absent} "
                          f"(expected normalize_inputs.buffer_<feature>.* / unnormalize_outputs.buffer_action.*)")


def load_lerobot_checkpoint(path: str | Path) -> PolicyArtifacts:
    """Load a LeRobot ACT ``pretrained_model`` folder of either layout.

    The layout is decided by ``policy_preprocessor.json`` (≥ 0.4); without it the folder is read
    as ≤ 0.3 only when the weights hold the normalization buffers the config needs. Errors:
    :class:`CheckpointError` naming the missing or malformed file.
    """
    folder = Path(path)
    _check_folder(folder)
    config_path = folder / CONFIG_FILE
    spec = parse_lerobot_config(read_json(config_path), config_path)
    raw, weights_path = _read_weights(folder)
    weights = {k.removeprefix("model."): v for k, v in raw.items()}
    weights = {k: v for k, v in weights.items() if not k.startswith(IGNORED_PREFIXES)}

    if (folder / PREPROCESSOR_FILE).is_file():
        input_stats, input_modes, input_eps, missing = _normalizer_from_processor(
            folder, PREPROCESSOR_FILE, "normalizer_processor", spec.inputs)
        action_stats, action_modes, action_eps, missing_action = _normalizer_from_processor(
            folder, POSTPROCESSOR_FILE, "unnormalizer_processor", (spec.action,))
        missing.update(missing_action)
        spec = spec.with_norm_modes({**input_modes, **action_modes})
        rename = _processor_step(read_json(folder / PREPROCESSOR_FILE), "rename_observations_processor",
                                 folder / PREPROCESSOR_FILE)
        rename_map = dict(((rename or {}).get("config") or {}).get("rename_map") or {})
        legacy = False
        for key in [k for k in weights if k.startswith(LEGACY_STAT_PREFIXES)]:
            del weights[key]  # stale copies from a migrated checkpoint; the processors are authoritative
    else:
        input_stats, action_stats = _legacy_stats(weights, spec, weights_path)
        _require_legacy_stats(spec, input_stats, action_stats, folder, weights_path)
        input_eps = action_eps = DEFAULT_EPS
        rename_map, legacy, missing = {}, True, {}
    _check_renames(rename_map, spec, folder / PREPROCESSOR_FILE)
    spec = dataclasses.replace(spec, rename_map=rename_map)
    return PolicyArtifacts(
        spec=spec,
        weights=check_weights(weights, spec, weights_path),
        input_stats=input_stats,
        action_stats=action_stats,
        source=folder,
        input_eps=input_eps,
        action_eps=action_eps,
        legacy_normalization=legacy,
        missing_stats=missing,
    )


def _check_renames(rename_map: dict[str, str], spec: PolicySpec, path: Path) -> None:
    names = {f.name for f in spec.inputs}
    for src, dst in rename_map.items():
        if dst not in names:
            raise CheckpointError(f"{path}: rename_map maps {src!r} to {dst!r}, which is not an input feature")

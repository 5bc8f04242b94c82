"""The deploy bundle: one self-describing folder a robot can run without the training checkpoint.

Layout (all names fixed, listed with their sha256 in ``policy.json``)::

    policy.json          schema_version, features (camera order = input order), shapes,
                         normalization modes + stats + eps, ACT config, fps, rename_map,
                         source checkpoint hash, graph names, per-file sha256, and
                         macs_per_inference (counted on the torch model at export; optional:
                         bundles written before it was added load without it)
    model.safetensors    lean-model weights (torch backends)
    act_fp32.onnx        whole network, static shapes (onnx_fp32)
    act_int8.onnx        statically quantized network (cpu_int8; written by ``act-policy quantize``)
    backbone_HxW.onnx    normalized image → projected feature map, per camera resolution (Hailo)
    head.onnx            state + feature maps → normalized action chunk (Hailo hybrid path)
    head_int8.onnx       statically quantized head (hailo hybrid, head=int8; written by ``act-policy quantize``)

Every file is hashed when written and checked when read, so a truncated copy to the robot
fails at load time with the file's name instead of producing wrong actions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from act_policy.core.artifacts import LazyWeights, PolicyArtifacts
from act_policy.core.checkpoint import CONFIG_FILE, check_weights, read_json, read_safetensors
from act_policy.core.config import ACTConfig, Feature, FeatureType, NormMode, PolicySpec
from act_policy.core.errors import CheckpointError
from act_policy.core.normalization import Stats

SCHEMA_VERSION = 1
FORMAT = "act_policy.bundle"
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
FP32_GRAPH = "act_fp32.onnx"
INT8_GRAPH = "act_int8.onnx"
HEAD_GRAPH = "head.onnx"
HEAD_INT8_GRAPH = "head_int8.onnx"
ACTION_OUTPUT = "action_chunk"
MACS_FIELD = "macs_per_inference"  # optional in schema 1: a torch-free robot reads it, `info` and `benchmark` show it


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / POLICY_FILE).is_file()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(folder: Path) -> str:
    """One hash over every file of a checkpoint folder (relative name + content hash, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def graph_input_names(spec: PolicySpec) -> list[str]:
    """ONNX input names of the whole-network graph: cameras in encoder order, then state, env state."""
    return [f.name for f in spec.cameras] + [f.name for f in (spec.state, spec.env_state) if f is not None]


def backbone_file(height: int, width: int) -> str:
    return f"backbone_{height}x{width}.onnx"


def _feature_json(f: Feature) -> dict[str, Any]:
    return {"name": f.name, "type": f.type.value, "shape": list(f.shape), "norm_mode": f.norm_mode.value}


def _stats_json(stats: Stats) -> dict[str, Any]:
    return {feature: {stat: {"shape": list(np.shape(v)), "values": np.asarray(v, np.float32).ravel().tolist()}
                      for stat, v in by_stat.items()}
            for feature, by_stat in stats.items()}


def policy_document(artifacts: PolicyArtifacts, source_sha256: str | None) -> dict[str, Any]:
    """``policy.json`` content for ``artifacts`` (without the file list, added as files are written)."""
    spec = artifacts.spec
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "config": dataclasses.asdict(spec.config),
        "inputs": [_feature_json(f) for f in spec.inputs],
        "action": _feature_json(spec.action),
        "camera_order": [f.name for f in spec.cameras],
        "fps": spec.fps,
        "rename_map": dict(spec.rename_map),
        "normalization": {
            "input_eps": artifacts.input_eps,
            "action_eps": artifacts.action_eps,
            "legacy_min_max": artifacts.legacy_normalization,
            "missing_stats": dict(artifacts.missing_stats),
            "input_stats": _stats_json(artifacts.input_stats),
            "action_stats": _stats_json(artifacts.action_stats),
        },
        "source": {"path": None if artifacts.source is None else str(artifacts.source), "sha256": source_sha256},
        "graphs": {},
        "files": {},
    }


def _damaged_hint(folder: Path, missing: Collection[str], document: dict[str, Any] | None = None) -> str:
    """What brings back files policy.json lists but ``folder`` lacks: the INT8 graphs are ``act-policy
    quantize``'s to write again — with the calibration its ``quantization`` record names, not the synthetic
    default — any other file ``act-policy export``'s."""
    quantized = {INT8_GRAPH: "", HEAD_INT8_GRAPH: " --head"}
    if set(missing) <= set(quantized):
        flags = "".join(sorted({quantized[name] for name in missing}))
        record = (document or {}).get("quantization") or {}
        calibration = (f" on the calibration it had (policy.json's quantization record: "
                       f"{record.get('calibration_source')}, {record.get('calibration_samples')} samples; give it "
                       f"as --calib/--samples again)" if record.get("calibration_source") not in (None, "synthetic")
                       else "")
        return (f"the bundle is damaged: copy it again, or run `act-policy quantize {folder}{flags}`{calibration} "
                "to write it again")
    return "the bundle is damaged: copy it again, or export it again (and quantize it again if it was)"


def require_listed_files(folder: Path, document: dict[str, Any], rewritten: Collection[str] = ()) -> None:
    """CheckpointError naming every file ``document['files']`` lists that ``folder`` lacks (a damaged bundle),
    except those in ``rewritten`` (about to be written again)."""
    missing = sorted(name for name in document["files"] if name not in rewritten and not (folder / name).is_file())
    if missing:
        raise CheckpointError(f"{folder / POLICY_FILE}: lists {missing}, missing from {folder}: "
                              f"{_damaged_hint(folder, missing, document)}")


def verify_listed_files(folder: Path, document: dict[str, Any], rewritten: Collection[str] = ()) -> None:
    """Every file ``document['files']`` lists, except those in ``rewritten``, present and with its recorded
    sha256 (:func:`verified_file`): what a command that updates a bundle checks before and when it signs it
    again, so that a corrupt file is never signed as good. CheckpointError naming the first bad file."""
    require_listed_files(folder, document, rewritten)
    for name in sorted(set(document["files"]) - set(rewritten)):
        verified_file(folder, name, document)


def write_policy_document(folder: Path, document: dict[str, Any], rewritten: Collection[str] | None = None) -> None:
    """Write policy.json with the sha256 of the files named in ``document['files']``.

    ``rewritten`` None (a new bundle): every listed file is hashed. Otherwise only the files in ``rewritten``
    are hashed again; every other listed file must still match its recorded hash (see
    :func:`verify_listed_files`). CheckpointError (and policy.json left as it was) when a file is missing or,
    for an update, does not match."""
    if rewritten is None:
        require_listed_files(folder, document)
        rewritten = document["files"]
    else:
        verify_listed_files(folder, document, rewritten)
    document["files"] = {name: sha256_file(folder / name) if name in rewritten else document["files"][name]
                         for name in sorted(document["files"])}
    tmp = folder / (POLICY_FILE + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(folder / POLICY_FILE)


def write_weights(artifacts: PolicyArtifacts, folder: Path) -> None:
    from safetensors.torch import save

    # Not save_file: in safetensors 0.8 it writes a 0600 temporary file and renames it, so a robot's service
    # account could not read the weights. A plain write gets the umask's mode, like every other bundle file.
    (folder / WEIGHTS_FILE).write_bytes(save({k: v.contiguous() for k, v in artifacts.weights.items()}))


def read_policy_document(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / POLICY_FILE
    if not Path(folder).exists():
        raise CheckpointError(f"{folder}: does not exist")
    if not path.is_file() and (Path(folder) / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path}: file not found: {folder} is a LeRobot checkpoint, not a deploy bundle; "
                              f"run `act-policy export {folder} --out BUNDLE` first")
    doc = read_json(path)
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: 'format' is {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: schema_version {doc.get('schema_version')!r} is not supported "
                              f"(this act_policy reads {SCHEMA_VERSION}); re-export the bundle")
    if not isinstance(doc.get("files"), dict):
        raise CheckpointError(f"{path}: 'files' must map file names to sha256")
    return doc


def verified_file(folder: str | Path, name: str, document: dict[str, Any] | None = None) -> Path:
    """Path of bundle file ``name`` after checking it is listed, present and unmodified."""
    folder = Path(folder)
    doc = document or read_policy_document(folder)
    path = folder / name
    if name not in doc["files"]:
        hint = " (run `act-policy quantize` on the bundle first)" if name in (INT8_GRAPH, HEAD_INT8_GRAPH) else ""
        raise CheckpointError(f"{folder / POLICY_FILE}: bundle has no {name!r}{hint}; it lists {sorted(doc['files'])}")
    if not path.is_file():
        raise CheckpointError(f"{path}: file listed in {POLICY_FILE} is missing: "
                              f"{_damaged_hint(folder, [name], doc)}")
    actual = sha256_file(path)
    if actual != doc["files"][name]:
        raise CheckpointError(f"{path}: sha256 {actual} does not match {POLICY_FILE} ({doc['files'][name]}); "
                              "the file is corrupt or was changed after export")
    return path


def parameter_count(folder: str | Path) -> int:
    """Number of weights in the bundle's model.safetensors (checked by sha256), from the tensor shapes
    in its header: no torch, no tensor data read."""
    from safetensors import SafetensorError, safe_open

    path = verified_file(folder, WEIGHTS_FILE)
    try:
        with safe_open(str(path), framework="numpy") as weights:
            names = weights.keys()  # a safe_open handle is not iterable
            return sum(math.prod(weights.get_slice(name).get_shape()) for name in names)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file (truncated or corrupt?): {exc}")


def _recorded_macs(doc: dict[str, Any], where: Path) -> int | None:
    value = doc.get(MACS_FIELD)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise CheckpointError(f"{where}: {MACS_FIELD!r} must be a whole number >= 0 (or absent), got {value!r}")
    return value


def _field(doc: dict[str, Any], key: str, where: Path) -> Any:
    if key not in doc:
        raise CheckpointError(f"{where}: missing field {key!r}")
    return doc[key]


def _feature(raw: Any, where: str) -> Feature:
    try:
        return Feature(raw["name"], FeatureType(raw["type"]), tuple(int(v) for v in raw["shape"]),
                       NormMode(raw["norm_mode"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: expected {{name, type, shape, norm_mode}}, got {raw!r} ({exc})")


def _stats(raw: Any, where: str) -> Stats:
    try:
        return {feature: {stat: np.asarray(v["values"], np.float32).reshape(v["shape"]) for stat, v in by_stat.items()}
                for feature, by_stat in raw.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: expected {{feature: {{stat: {{shape, values}}}}}} ({exc})")


def load_bundle(folder: str | Path) -> PolicyArtifacts:
    """Read a bundle written by :func:`act_policy.export.export_bundle` (weights checked by sha256)."""
    folder = Path(folder)
    path = folder / POLICY_FILE
    doc = read_policy_document(folder)
    try:
        config = ACTConfig(**_field(doc, "config", path))
    except TypeError as exc:
        raise CheckpointError(f"{path}: config: {exc}")
    norm = _field(doc, "normalization", path)
    spec = PolicySpec(
        config=config,
        inputs=tuple(_feature(f, f"{path}: inputs") for f in _field(doc, "inputs", path)),
        action=_feature(_field(doc, "action", path), f"{path}: action"),
        rename_map=dict(doc.get("rename_map") or {}),
        fps=doc.get("fps"),
    )

    def weights() -> dict[str, Any]:  # checked and read only when a torch backend or export asks, like a graph
        path = verified_file(folder, WEIGHTS_FILE, doc)
        return check_weights(read_safetensors(path), spec, path)

    return PolicyArtifacts(
        spec=spec,
        weights=LazyWeights(weights),
        input_stats=_stats(_field(norm, "input_stats", path), f"{path}: normalization.input_stats"),
        action_stats=_stats(_field(norm, "action_stats", path), f"{path}: normalization.action_stats"),
        source=folder,
        input_eps=float(_field(norm, "input_eps", path)),
        action_eps=float(_field(norm, "action_eps", path)),
        legacy_normalization=bool(norm.get("legacy_min_max", False)),
        missing_stats=dict(norm.get("missing_stats") or {}),
        macs_per_inference=_recorded_macs(doc, path),
    )

"""Describe a checkpoint or bundle: features, shapes, normalization, size and MACs per inference."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.macs import macs_per_inference
from act_policy.core.policy import load_artifacts
from act_policy.export.bundle import is_bundle, parameter_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="LeRobot pretrained_model folder or deploy bundle, or 'demo'")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def parameters(artifacts: PolicyArtifacts, path: str | Path) -> int:
    """Weights of the lean model: a bundle's from its safetensors header (a robot has no torch to read
    the tensors with), a checkpoint's from its tensors' shapes."""
    if is_bundle(path):
        return parameter_count(path)
    return sum(math.prod(t.shape) for t in artifacts.weights.values())


def run(args: argparse.Namespace) -> int:
    artifacts = load_artifacts(args.path)
    spec = artifacts.spec
    macs = macs_per_inference(artifacts)
    info = {
        "path": str(args.path),
        "features": [{"name": f.name, "type": f.type.value, "shape": list(f.shape),
                      "normalization": f.norm_mode.value,
                      **({"configured_without_stats": artifacts.missing_stats[f.name]}
                         if f.name in artifacts.missing_stats else {})}
                     for f in (*spec.inputs, spec.action)],
        "cameras": [f.name for f in spec.cameras],
        "rename_map": spec.rename_map,
        "fps": spec.fps,
        "config": spec.config.__dict__,
        "parameters": parameters(artifacts, args.path),
        "macs_per_inference": macs.macs,
        "macs_source": macs.source,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"ACT policy at {info['path']}")
    print(f"{'feature':<36}{'type':<8}{'shape':<16}normalization")
    for f in info["features"]:
        missing = f.get("configured_without_stats")
        note = f" ({missing} configured, no stats)" if missing else ""
        print(f"{f['name']:<36}{f['type']:<8}{tuple(f['shape'])!s:<16}{f['normalization']}{note}")
    c = spec.config
    print(f"architecture: {c.vision_backbone}, dim_model {c.dim_model}, {c.n_heads} heads, "
          f"ff {c.dim_feedforward} ({c.feedforward_activation}), {c.n_encoder_layers} encoder / "
          f"{c.n_decoder_layers} decoder layers, {'pre' if c.pre_norm else 'post'}-norm")
    print(f"chunk_size {c.chunk_size}, n_action_steps {c.n_action_steps}, "
          f"temporal_ensemble_coeff {c.temporal_ensemble_coeff}, fps {spec.fps or 'unknown'}")
    if spec.rename_map:
        print(f"rename_map: {spec.rename_map}")
    print(f"parameters (inference): {info['parameters'] / 1e6:.2f} M")
    if macs.macs is None:
        print(f"MACs per inference: {macs.source}")
    else:
        print(f"MACs per inference: {macs.macs / 1e9:.2f} G at the trained resolution ({macs.source})")
    return 0

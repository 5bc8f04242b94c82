"""Deterministic stand-ins for a trained policy and a robot: seeded weights, stats and scenes.

Used by the embedded demo (no checkpoint, no robot, no network), by benchmarks and by the
LeRobot parity fixtures. Every tensor is drawn from its own NumPy ``Generator`` keyed by
(seed, CRC32 of the parameter name), so the result is identical on every machine and
independent of the order in which parameters are visited.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator

import numpy as np

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.config import (
    ACTION_KEY,
    STATE_KEY,
    ACTConfig,
    Feature,
    FeatureType,
    NormMode,
    PolicySpec,
)
from act_policy.core.dependencies import needs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEMO_CAMERA = "observation.images.front"
DEMO_NAME = "demo"  # accepted wherever a checkpoint path is: the seeded default-size policy (demo_artifacts)


def demo_spec(height: int = 480, width: int = 640, n_joints: int = 6,
              config: ACTConfig | None = None) -> PolicySpec:
    """LeRobot's default ACT for a 6-joint arm with one camera (SO-101-like)."""
    return PolicySpec(
        config=config or ACTConfig(),
        inputs=(
            Feature(STATE_KEY, FeatureType.STATE, (n_joints,), NormMode.MEAN_STD),
            Feature(DEMO_CAMERA, FeatureType.VISUAL, (3, height, width), NormMode.MEAN_STD),
        ),
        action=Feature(ACTION_KEY, FeatureType.ACTION, (n_joints,), NormMode.MEAN_STD),
        fps=30.0,
    )


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def seeded_tensor(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A float32 tensor for parameter/buffer ``name`` that keeps activations well scaled.

    Frozen batch-norm statistics are plausible (variance near 1, small means); weights use
    fan-in scaling (He for convolutions, LeCun otherwise); norms start near identity;
    learned embeddings are unit normal like ``nn.Embedding``.
    """
    rng = _rng(seed, name)
    leaf = name.rsplit(".", 1)[-1]
    is_norm = ".bn" in name or "downsample.1" in name or ".norm" in name or name.startswith("norm")
    if leaf == "running_var":
        out = rng.uniform(0.5, 1.5, shape)
    elif leaf == "running_mean":
        out = rng.normal(0.0, 0.1, shape)
    elif is_norm and leaf == "weight" and ".norm" not in name and not name.startswith("norm"):
        out = rng.uniform(0.6, 1.0, shape)  # batch norm scale
    elif is_norm and leaf == "weight":
        out = 1.0 + rng.normal(0.0, 0.05, shape)  # layer norm scale
    elif leaf in ("bias", "in_proj_bias"):
        out = rng.normal(0.0, 0.02, shape)
    elif "embed" in name:
        out = rng.normal(0.0, 1.0, shape)
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        gain = 2.0 if len(shape) == 4 else 1.0
        out = rng.normal(0.0, np.sqrt(gain / fan_in), shape)
    return np.asarray(out, dtype=np.float32)


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Seeded tensors for every name in ``shapes`` (e.g. ``{k: v.shape for k, v in model.state_dict()}``)."""
    return {name: seeded_tensor(name, tuple(shape), seed) for name, shape in shapes.items()}


def demo_artifacts(spec: PolicySpec | None = None, seed: int = 0) -> PolicyArtifacts:
    """A complete in-memory policy with seeded weights and stats: the embedded default (needs torch)."""
    from act_policy.core.checkpoint import expected_shapes

    spec = spec or demo_spec()
    with needs("the seeded demo policy (its weights are torch tensors; a deploy bundle runs without torch)"):
        import torch

        shapes = expected_shapes(spec)
    weights = {k: torch.from_numpy(v) for k, v in seeded_state_dict(shapes, seed).items()}
    stats = seeded_stats(spec, seed)
    return PolicyArtifacts(spec=spec, weights=weights, action_stats={spec.action.name: stats[spec.action.name]},
                           input_stats={f.name: stats[f.name] for f in spec.inputs})


def state_dict_sha256(tensors: dict[str, np.ndarray]) -> str:
    """Order-independent fingerprint of named arrays: ``name|dtype|shape\\n`` then raw bytes, names sorted.

    Proves that weights regenerated from a seed are the ones another program ran (the LeRobot
    parity fixtures store LeRobot's value of it).
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}|{array.dtype.str}|{','.join(map(str, array.shape))}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def seeded_stats(spec: PolicySpec, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Dataset statistics in LeRobot's layout ({feature: {stat: array}}); images get ImageNet stats."""
    stats: dict[str, dict[str, np.ndarray]] = {}
    for feature in (*spec.inputs, spec.action):
        if feature.type is FeatureType.VISUAL:
            shape = (3, 1, 1)
            mean = np.array(IMAGENET_MEAN, np.float32).reshape(shape)
            std = np.array(IMAGENET_STD, np.float32).reshape(shape)
            lo, hi = np.zeros(shape, np.float32), np.ones(shape, np.float32)
        else:
            rng = _rng(seed, "stats." + ("action" if feature.type is FeatureType.ACTION else feature.name))
            mean = rng.uniform(-60.0, 60.0, feature.shape).astype(np.float32)
            std = rng.uniform(5.0, 25.0, feature.shape).astype(np.float32)
            lo, hi = mean - 2.5 * std, mean + 2.5 * std
        stats[feature.name] = {
            "mean": mean, "std": std, "min": lo, "max": hi,
            "q01": mean - 2.0 * std, "q99": mean + 2.0 * std,
            "q10": mean - 1.2 * std, "q90": mean + 1.2 * std,
        }
    return stats


def synthetic_frame(height: int, width: int, t: float, seed: int = 0) -> np.ndarray:
    """A structured RGB uint8 scene (table, moving arm-like bar, object) rather than noise.

    Quantization calibration and fidelity checks need image statistics like a real camera's:
    large smooth regions, edges, and a little sensor noise.
    """
    rng = _rng(seed, f"frame.{t:.6f}")
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = yy / height, xx / width
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 150 + 40 * y + 10 * np.sin(6 * x)  # warm, lit from above
    img[..., 1] = 120 + 30 * y
    img[..., 2] = 90 + 20 * x
    table = y > 0.6
    img[table] = (img[table] * 0.6 + np.array([120.0, 90.0, 60.0]) * 0.4)
    cx, cy = 0.5 + 0.25 * np.sin(t), 0.7 + 0.05 * np.cos(1.3 * t)  # object on the table
    img[(x - cx) ** 2 + ((y - cy) * 1.3) ** 2 < 0.004] = (30.0, 160.0, 60.0)
    angle = 0.8 * np.sin(0.7 * t)  # arm link from the top edge
    d = np.abs((x - 0.5) * np.cos(angle) - (y - 0.0) * np.sin(angle))
    along = (x - 0.5) * np.sin(angle) + y * np.cos(angle)
    img[(d < 0.03) & (along > 0) & (along < 0.55)] = (200.0, 200.0, 210.0)
    img += rng.normal(0.0, 3.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_observations(spec: PolicySpec, stats: dict[str, dict[str, np.ndarray]],
                           steps: int, seed: int = 0, dt: float = 1 / 30) -> Iterator[dict[str, np.ndarray]]:
    """Observation dicts of a slowly moving arm seen by every camera of ``spec``."""
    for i in range(steps):
        t = i * dt
        obs: dict[str, np.ndarray] = {}
        for feature in spec.inputs:
            if feature.type is FeatureType.VISUAL:
                _, h, w = feature.shape
                obs[feature.name] = synthetic_frame(h, w, t, seed + zlib.crc32(feature.name.encode()) % 997)
            else:
                s = stats[feature.name]
                phase = np.arange(feature.shape[0], dtype=np.float32)
                obs[feature.name] = (s["mean"] + s["std"] * np.sin(t + phase)).astype(np.float32)
        yield obs

"""What is compiled for the Hailo NPU, what each HEF is called, and how its input relates to LeRobot's.

The compile kit and the ``hailo`` backend both use this module, so a HEF compiled from a kit is
found and fed the way it was calibrated.

Normalization choice: every image input is compiled with the model-script command
``normalization(mean, std)`` so the NPU receives raw RGB pixels (0–255, NHWC) and normalizes
on chip. LeRobot normalizes ``x/255`` per channel as ``(x/255 - center) · scale + offset``
(any of its modes is affine), which equals Hailo's ``(x - mean) / std`` with
``mean = 255 · (center - offset / scale)`` and ``std = 255 / scale``. Calibration data is
therefore raw pixels, and the backend turns the policy's normalized image back into exact
uint8 pixels (the inverse is exact to well under half a grey level).

Cameras are grouped by resolution and normalization: one backbone HEF serves every camera
of a group (ACT shares one backbone between cameras).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from act_policy.core.artifacts import PolicyArtifacts

HEF_DIR = "hailo"  # inside the bundle: where the backend looks for compiled HEFs by default
FULL_MODEL = "act_full"
SIDECAR_SUFFIX = ".json"  # <name>.hef.json, written by hailo_compile.sh next to each HEF

# Which HailoRT release each Dataflow Compiler release was made for (hailo-ai/hailo_model_zoo v2.18,
# docs/CHANGELOG.rst lines 19-22, 34-37, 48-51, 61-64, 97-100, 132-135). A HEF from a DFC newer than the
# robot's HailoRT is refused (HAILO_HEF_NOT_SUPPORTED; HAILO_INVALID_HEF before 4.21).
HAILORT_OF_DFC = {(3, 28): (4, 18), (3, 29): (4, 19), (3, 30): (4, 20), (3, 31): (4, 21), (3, 32): (4, 22),
                  (3, 33): (4, 23)}


def release(version: str) -> tuple[int, int] | None:
    """``"3.33.1"`` → ``(3, 33)``; None for anything without two leading numbers (e.g. "Not Installed")."""
    match = re.match(r"\s*v?(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class PixelNormalization:
    """Per-channel ``(pixel - mean) / std`` on 0–255 pixels, equal to the policy's image normalization."""

    mean: np.ndarray  # (3,) float64, 0–255 units
    std: np.ndarray  # (3,) float64

    @classmethod
    def for_camera(cls, artifacts: PolicyArtifacts, camera: str) -> PixelNormalization:
        m = artifacts.input_normalizer().maps[camera]
        scale = np.broadcast_to(np.asarray(m.scale, np.float64).reshape(-1), (3,))
        center = np.broadcast_to(np.asarray(m.center, np.float64).reshape(-1), (3,))
        offset = np.broadcast_to(np.asarray(m.offset, np.float64).reshape(-1), (3,))
        return cls(mean=255.0 * (center - offset / scale), std=255.0 / scale)

    def to_pixels(self, normalized: np.ndarray) -> np.ndarray:
        """Normalized (1, 3, H, W) or (3, H, W) → float32 (H, W, 3) pixel values in 0–255 units."""
        chw = normalized.reshape(normalized.shape[-3:])
        hwc = chw.transpose(1, 2, 0).astype(np.float64) * self.std + self.mean
        return hwc.astype(np.float32)

    def to_uint8(self, normalized: np.ndarray) -> np.ndarray:
        """Normalized image → C-contiguous uint8 (H, W, 3) RGB: the exact camera pixels."""
        return np.ascontiguousarray(np.clip(np.rint(self.to_pixels(normalized)), 0, 255).astype(np.uint8))

    def model_script_line(self, layer: str, input_layer: str | None = None) -> str:
        """The ``.alls`` command that puts this normalization on chip (``input_layer`` for multi-input nets)."""
        values = [", ".join(f"{v:.6f}" for v in arr) for arr in (self.mean, self.std)]
        target = f", {input_layer}" if input_layer else ""
        return f"{layer} = normalization([{values[0]}], [{values[1]}]{target})"

    def same_as(self, other: PixelNormalization) -> bool:
        return bool(np.allclose(self.mean, other.mean, atol=1e-4) and np.allclose(self.std, other.std, atol=1e-4))


@dataclass(frozen=True)
class BackboneGroup:
    """Cameras that share one backbone HEF: same resolution, same normalization."""

    name: str  # "backbone_480x640", or "backbone_480x640_2" for a second normalization at that size
    height: int
    width: int
    cameras: tuple[str, ...]  # in encoder order
    pixels: PixelNormalization


def backbone_groups(artifacts: PolicyArtifacts) -> list[BackboneGroup]:
    """Group the policy's cameras into backbone HEFs, in order of first appearance."""
    groups: list[BackboneGroup] = []
    for camera in artifacts.spec.cameras:
        _, h, w = camera.shape
        pixels = PixelNormalization.for_camera(artifacts, camera.name)
        for i, g in enumerate(groups):
            if (g.height, g.width) == (h, w) and g.pixels.same_as(pixels):
                groups[i] = BackboneGroup(g.name, h, w, (*g.cameras, camera.name), g.pixels)
                break
        else:
            same_size = sum((g.height, g.width) == (h, w) for g in groups)
            suffix = f"_{same_size + 1}" if same_size else ""
            groups.append(BackboneGroup(f"backbone_{h}x{w}{suffix}", h, w, (camera.name,), pixels))
    return groups


def default_hef(bundle: Path, name: str) -> Path:
    return bundle / HEF_DIR / f"{name}.hef"

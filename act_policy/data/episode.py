"""One recorded episode in act_policy's observation format, whatever it was recorded with.

Both readers (LeRobot datasets, rosbag2) produce an :class:`Episode`, so replay and INT8
calibration consume recorded data one way. Joint vectors are small and held in memory;
camera frames are decoded lazily, step by step, because a 30 s episode of one 480x640
camera is ~800 MB decoded — more than a Raspberry Pi should hold per replayed backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from act_policy.core.config import FeatureType, PolicySpec
from act_policy.core.errors import ActPolicyError


class DatasetError(ActPolicyError, ValueError):
    """Recorded data is missing, malformed, or does not fit the policy; names the file, field or topic."""


@dataclass(frozen=True)
class CameraStream:
    """Frames of one camera feature, decoded on demand.

    ``frames()`` starts a fresh pass and yields one uint8 (height, width, 3) RGB frame per
    episode step; ``source`` names the file or topic in error messages.
    """

    height: int
    width: int
    source: str
    frames: Callable[[], Iterator[np.ndarray]]


@dataclass(frozen=True)
class Episode:
    """Per-step observations, recorded actions and timestamps of one episode.

    Feature names are the recording's own (a policy's ``rename_map`` is applied by the
    policy). ``timestamps`` are seconds since the episode's first step.
    """

    source: str
    index: int
    fps: float
    timestamps: np.ndarray  # (T,) float64
    vectors: Mapping[str, np.ndarray]  # "observation.state" etc. → (T, N) float32
    cameras: Mapping[str, CameraStream]  # "observation.images.<cam>" → lazily decoded frames
    actions: np.ndarray | None = None  # (T, A) float32, what was commanded at each step
    joint_names: tuple[str, ...] | None = None  # names of the action / state entries, when recorded
    notes: tuple[str, ...] = field(default_factory=tuple)  # how the data was aligned or selected

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def head(self, steps: int) -> Episode:
        """The first ``steps`` steps (camera streams are simply not read further)."""
        steps = max(0, min(steps, len(self)))
        return replace(self, timestamps=self.timestamps[:steps],
                       vectors={k: v[:steps] for k, v in self.vectors.items()},
                       actions=None if self.actions is None else self.actions[:steps],
                       notes=(*self.notes, f"first {steps} steps"))

    def observations(self) -> Iterator[dict[str, np.ndarray]]:
        """Observation dicts (``Policy.select_action`` input), one per step, decoding frames as it goes."""
        streams = {name: (cam, cam.frames()) for name, cam in self.cameras.items()}
        for step in range(len(self)):
            obs = {name: values[step] for name, values in self.vectors.items()}
            for name, (cam, frames) in streams.items():
                frame = next(frames, None)
                if frame is None:
                    raise DatasetError(f"{cam.source}: ran out of frames for {name!r} at step {step}; "
                                       f"the episode has {len(self)} steps")
                if frame.shape != (cam.height, cam.width, 3) or frame.dtype != np.uint8:
                    raise DatasetError(f"{cam.source}: frame {step} of {name!r} is {frame.dtype} {frame.shape}; "
                                       f"expected uint8 ({cam.height}, {cam.width}, 3)")
                obs[name] = frame
            yield obs


def recorded_name(spec: PolicySpec, policy_name: str) -> str:
    """The name a recording uses for a policy feature (inverse of the policy's ``rename_map``)."""
    return next((src for src, dst in spec.rename_map.items() if dst == policy_name), policy_name)


def check_features(spec: PolicySpec, available: Mapping[str, tuple[int, ...]], source: str,
                   need_action: bool = True) -> None:
    """Fail early, before any decoding, if a recording cannot feed ``spec``.

    ``available`` maps recorded feature names to shapes: ``(N,)`` for vectors and
    ``(H, W, 3)`` for cameras. Extra recorded features are fine (they are not loaded).
    """
    listed = ", ".join(f"{k} {tuple(v)}" for k, v in available.items()) or "none"
    wanted = [*spec.inputs, spec.action] if need_action else list(spec.inputs)
    for feature in wanted:
        name = recorded_name(spec, feature.name)
        if name not in available:
            renamed = f" (policy name {feature.name!r})" if name != feature.name else ""
            raise DatasetError(f"{source}: the policy needs feature {name!r}{renamed}, which is not recorded; "
                               f"recorded features: {listed}")
        shape = tuple(available[name])
        if feature.type is FeatureType.VISUAL:
            _, h, w = feature.shape
            if shape != (h, w, 3):
                raise DatasetError(f"{source}: resolution mismatch for {name!r}: the policy expects {h}x{w} (HxW) "
                                   f"RGB, the recording has shape {shape}; act_policy does not resize recorded data")
        elif shape != feature.shape:
            raise DatasetError(f"{source}: {name!r} has shape {shape} but the policy expects {feature.shape}")


def describe_indices(indices: list[int]) -> str:
    """Compact list of episode indices for error messages: ``0-4, 7, 9-12``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"

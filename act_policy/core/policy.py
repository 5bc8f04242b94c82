"""The user-facing policy: observation dict in, action in dataset units out.

Pipeline per inference (LeRobot ≥ 0.4 order): rename → validate → normalize → backend →
unnormalize → schedule (queue or temporal ensembling).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from act_policy.backends import Backend, BackendOptions, ModelInputs, create_backend
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.config import Feature, FeatureType, PolicySpec
from act_policy.core.dependencies import needs
from act_policy.core.errors import ObservationError, SettingError
from act_policy.core.scheduling import ChunkAggregator, TemporalEnsembler

Observation = Mapping[str, np.ndarray]


@dataclass
class StageTimes:
    """Wall-clock milliseconds of the last inference, per stage."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0


class Policy:
    """A loaded ACT policy bound to one backend.

    ``select_action`` follows LeRobot's ``select_action`` (queue of ``n_action_steps`` or
    temporal ensembling); ``predict_chunk`` is side-effect free. ``chunk_aggregation`` (see
    :class:`~act_policy.core.scheduling.ChunkAggregator`) merges a new chunk with the tail of the
    previous one where they overlap (``n_action_steps < chunk_size``); the default ``latest`` is
    LeRobot's behaviour, ``aggregation_coeff`` is ``weighted``'s ACT coefficient.
    """

    def __init__(self, artifacts: PolicyArtifacts, backend: Backend,
                 n_action_steps: int | None = None, temporal_ensemble_coeff: float | None = None,
                 chunk_aggregation: str = "latest", blend_steps: int = 0,
                 aggregation_coeff: float = 0.01) -> None:
        self.artifacts = artifacts
        self.spec: PolicySpec = artifacts.spec
        self.backend = backend
        self._input_norm = artifacts.input_normalizer()
        self._action_norm = artifacts.action_normalizer()
        c = self.spec.config
        coeff = c.temporal_ensemble_coeff if temporal_ensemble_coeff is None else temporal_ensemble_coeff
        self.n_action_steps = n_action_steps or (1 if coeff is not None else c.n_action_steps)
        if not 1 <= self.n_action_steps <= c.chunk_size:
            raise SettingError(f"n_action_steps: expected 1 to chunk_size={c.chunk_size}, got {self.n_action_steps}")
        if coeff is not None and self.n_action_steps != 1:
            raise SettingError(f"n_action_steps: temporal ensembling (coefficient {coeff}) infers every step, so it "
                               f"must be 1 (as in LeRobot), got {self.n_action_steps}")
        self.temporal_ensemble_coeff = coeff
        self._chunks = ChunkAggregator(chunk_aggregation, aggregation_coeff, blend_steps)
        self._step = 0  # select_action calls since reset
        self._ensembler = TemporalEnsembler(coeff, c.chunk_size) if coeff is not None else None
        self.last_times = StageTimes()
        self.inferred_last_step = False  # whether the last select_action ran the network

    # ----------------------------------------------------------------- metadata
    @property
    def input_features(self) -> tuple[Feature, ...]:
        return self.spec.inputs

    @property
    def action_feature(self) -> Feature:
        return self.spec.action

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Image feature names in the order the network consumes them."""
        return tuple(f.name for f in self.spec.cameras)

    @property
    def chunk_size(self) -> int:
        return self.spec.config.chunk_size

    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    @property
    def fps(self) -> float | None:
        return self.spec.fps

    @property
    def rename_map(self) -> dict[str, str]:
        return dict(self.spec.rename_map)

    # ----------------------------------------------------------------- inference
    def reset(self) -> None:
        """Start a new episode: forget queued actions and ensembling history."""
        self._chunks.reset()
        self._step = 0
        if self._ensembler is not None:
            self._ensembler.reset()

    def check_observation(self, obs: Observation) -> dict[str, np.ndarray]:
        """The policy's input features of ``obs`` (rename_map applied), checked; nothing is normalized.

        Images must be uint8 (H, W, 3) RGB at the trained size (so always finite); state vectors
        float-convertible, of the trained shape and finite. ObservationError names the feature and what
        was expected. Every observation the policy takes passes here, including those of a
        :meth:`select_action` that serves a queued action: the cost is a dtype/shape look at each image and
        one pass over the state (microseconds), not a normalization.
        """
        obs = {self.spec.rename_map.get(k, k): v for k, v in obs.items()}
        checked = {f.name: _checked_image(obs, f) for f in self.spec.cameras}
        for f in (self.spec.state, self.spec.env_state):
            if f is not None:
                checked[f.name] = _checked_vector(obs, f)
        return checked

    def preprocess(self, obs: Observation) -> ModelInputs:
        """Validate an observation (:meth:`check_observation`) and turn it into normalized network inputs."""
        return self._network_inputs(self.check_observation(obs))

    def _network_inputs(self, checked: Mapping[str, np.ndarray]) -> ModelInputs:
        images = [self._input_norm.image_to_input(f.name, checked[f.name]) for f in self.spec.cameras]
        vectors = {f.type: self._input_norm.normalize(f.name, checked[f.name])[None]
                   for f in (self.spec.state, self.spec.env_state) if f is not None}
        return ModelInputs(images, vectors.get(FeatureType.STATE), vectors.get(FeatureType.ENV))

    def predict_chunk(self, obs: Observation) -> np.ndarray:
        """Whole predicted chunk, float32 (chunk_size, action_dim) in action units; no side effects.

        ObservationError (see :meth:`check_observation`) for an observation the policy cannot take."""
        t0 = time.perf_counter()
        return self._chunk(self.check_observation(obs), t0)

    def _chunk(self, checked: Mapping[str, np.ndarray], t0: float) -> np.ndarray:
        """Infer on checked features; ``t0`` is when checking them started (it counts as preprocessing)."""
        inputs = self._network_inputs(checked)
        t1 = time.perf_counter()
        normalized = self.backend.infer(inputs)
        t2 = time.perf_counter()
        chunk = self._action_norm.unnormalize(self.spec.action.name, normalized)
        t3 = time.perf_counter()
        self.last_times = StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return chunk

    def select_action(self, obs: Observation) -> np.ndarray:
        """Next action, float32 (action_dim,), inferring a new chunk only when LeRobot would.

        ``obs`` is checked on every call, also when the action comes from the queue: an observation the
        policy cannot take raises ObservationError (see :meth:`check_observation`) and changes nothing (the
        queue and the step count stay as they were), so no action is ever returned alongside one.
        """
        t0 = time.perf_counter()
        checked = self.check_observation(obs)
        step = self._step
        self._step += 1
        self.inferred_last_step = self._ensembler is not None or not self._chunks.remaining(step)
        if self._ensembler is not None:
            return self._ensembler.update(self._chunk(checked, t0))
        if self.inferred_last_step:
            self._chunks.add(self._chunk(checked, t0), step, step, step + self.n_action_steps)
        return self._chunks.action(step)

    def close(self) -> None:
        self.backend.close()

    def describe(self) -> dict[str, Any]:
        return {**self.backend.describe(), "chunk_size": self.chunk_size,
                "n_action_steps": self.n_action_steps, "temporal_ensemble_coeff": self.temporal_ensemble_coeff,
                "chunk_aggregation": self._chunks.mode}


def _checked_image(obs: Mapping[str, Any], f: Feature) -> np.ndarray:
    _, h, w = f.shape
    if f.name not in obs:
        raise ObservationError(f"observation is missing {f.name!r}: expected uint8 RGB image of shape ({h}, {w}, 3)")
    image = np.asarray(obs[f.name])
    if image.dtype != np.uint8 or image.shape != (h, w, 3):
        raise ObservationError(f"observation {f.name!r}: expected uint8 RGB image of shape ({h}, {w}, 3), "
                               f"got {image.dtype} {image.shape}")
    return image


def _checked_vector(obs: Mapping[str, Any], f: Feature) -> np.ndarray:
    if f.name not in obs:
        raise ObservationError(f"observation is missing {f.name!r}: expected float32 vector of shape {f.shape}")
    try:
        vector = np.asarray(obs[f.name], dtype=np.float32)
    except (TypeError, ValueError) as exc:  # e.g. None, strings, ragged lists
        raise ObservationError(f"observation {f.name!r}: expected a float32 vector of shape {f.shape}, "
                               f"got {type(obs[f.name]).__name__} ({exc})") from exc
    if vector.shape != f.shape:
        raise ObservationError(f"observation {f.name!r}: expected shape {f.shape}, got {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise ObservationError(f"observation {f.name!r} contains NaN or infinity: {vector}")
    return vector


def load_artifacts(path: str | Path) -> PolicyArtifacts:
    """Load a LeRobot checkpoint folder (either layout), an act_policy deploy bundle, or ``demo``
    (the seeded default-size policy, :data:`act_policy.core.synthetic.DEMO_NAME`).

    A bundle loads with numpy alone (its torch weights are read only if a torch backend asks);
    a LeRobot checkpoint and the demo need torch, and say so with a :class:`MissingDependencyError`.
    """
    from act_policy.core.checkpoint import load_lerobot_checkpoint
    from act_policy.core.synthetic import DEMO_NAME, demo_artifacts
    from act_policy.export.bundle import is_bundle, load_bundle

    if is_bundle(path):
        return load_bundle(path)
    with needs("reading a LeRobot checkpoint or the demo (a deploy bundle from `act-policy export` needs no torch)"):
        if str(path) == DEMO_NAME and not Path(path).exists():
            return demo_artifacts()
        return load_lerobot_checkpoint(path)


def load_policy(path: str | Path, backend: str = "cpu_fp32", *, num_threads: int | None = None,
                device: str = "cpu", n_action_steps: int | None = None,
                temporal_ensemble_coeff: float | None = None,
                backend_options: Mapping[str, Any] | None = None, chunk_aggregation: str = "latest",
                blend_steps: int = 0) -> Policy:
    """Load ``path`` and bind it to ``backend`` (see ``act_policy.backends.BACKENDS``).

    ``n_action_steps`` and ``temporal_ensemble_coeff`` override the checkpoint's values;
    ``chunk_aggregation`` and ``blend_steps`` are :class:`Policy`'s.
    """
    artifacts = load_artifacts(path)
    options = BackendOptions(num_threads=num_threads, device=device, extra=dict(backend_options or {}))
    return Policy(artifacts, create_backend(backend, artifacts, options), n_action_steps, temporal_ensemble_coeff,
                  chunk_aggregation, blend_steps)

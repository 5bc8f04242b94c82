"""The one small interface every inference backend implements.

A backend maps normalized network inputs to a normalized action chunk. Everything around
that — validation, normalization, scheduling, safety — is shared code, so a new runtime
only has to implement :meth:`Backend.infer` and add one line to the registry.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError, BackendOptionsError


@dataclass
class ModelInputs:
    """Normalized float32 network inputs with a batch dimension of 1."""

    images: list[np.ndarray]  # (1, 3, H, W) each, in PolicySpec.cameras order
    state: np.ndarray | None = None  # (1, S)
    env_state: np.ndarray | None = None  # (1, E)


def flat_inputs(inputs: ModelInputs) -> list[np.ndarray]:
    """Inputs in the exported graphs' order: cameras, then state and env state when present."""
    return [*inputs.images, *(v for v in (inputs.state, inputs.env_state) if v is not None)]


def default_num_threads() -> int:
    """All cores up to four: a Pi 5 has four, and more rarely helps a batch-1 model."""
    return max(1, min(4, os.cpu_count() or 1))


def no_spinning(session_options: Any) -> None:
    """Make ONNX Runtime's pool threads sleep when idle instead of busy-waiting (its default): spinning threads
    take the CPU the control loop and the camera/arm drivers need. ``session_options``: an
    ``onnxruntime.SessionOptions``; the keys are ORT's documented session config entries."""
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session_options.add_session_config_entry("session.inter_op.allow_spinning", "0")


@dataclass(frozen=True)
class BackendOptions:
    num_threads: int | None = None  # None: default_num_threads()
    device: str = "cpu"  # torch backends only: "cpu", "cuda", "cuda:1", ...
    extra: Mapping[str, Any] = field(default_factory=dict)  # backend-specific settings

    def __post_init__(self) -> None:
        threads = self.num_threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise BackendError(f"num_threads: expected a positive number of threads, or None for all cores up "
                               f"to 4, got {threads!r}")

    @property
    def threads(self) -> int:
        return self.num_threads or default_num_threads()


class Backend(ABC):
    """Runs the ACT network. Subclasses take ``(artifacts, options)`` in their constructor."""

    name: str = ""

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions) -> None:
        self.artifacts = artifacts
        self.options = options

    @abstractmethod
    def infer(self, inputs: ModelInputs) -> np.ndarray:
        """Return the normalized action chunk, float32 (chunk_size, action_dim)."""

    @classmethod
    def check_options(cls, extra: Mapping[str, Any]) -> None:
        """Raise BackendOptionsError for settings in ``extra`` this backend does not take (by default: any),
        so a typo is refused before work starts instead of leaving a default silently in place."""
        if extra:
            raise BackendOptionsError(f"backend {cls.name!r} takes no backend options, got {sorted(extra)}: these "
                                      "look like another backend's options, which do not carry over; give none")

    def describe(self) -> dict[str, Any]:
        """Facts for logs, diagnostics and benchmark reports."""
        return {"backend": self.name, "threads": self.options.threads, "device": self.options.device}

    def cancel(self) -> None:  # noqa: B027 - optional hook; torch offers no way to stop a forward pass
        """Ask a running :meth:`infer` (on another thread) to stop early; it then raises. Backends that cannot
        stop leave it running, and its result is discarded when it arrives. Thread-safe."""

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing to release
        """Release devices and threads; the backend is unusable afterwards."""


def backend_label(facts: Mapping[str, Any]) -> str:
    """The backend as reports name it, from its ``describe()`` facts: ``hailo (fallback cpu_int8)`` when
    another backend does the work, so no log, diagnostic or table credits the NPU with CPU latency."""
    name = str(facts.get("backend"))
    return f"{name} (fallback {facts['fallback_backend']})" if facts.get("fallback_backend") else name


def calibration_warning(facts: Mapping[str, Any]) -> str | None:
    """Why an INT8 backend's accuracy on the robot is unknown, if it is: calibrated on synthetic scenes (its
    ``describe()`` names the ``calibration_source`` the bundle's quantization record gives)."""
    if facts.get("calibration_source") != "synthetic":
        return None
    return ("INT8 graph calibrated on synthetic scenes, not on this robot's camera images: its accuracy here is "
            "unknown; quantize the bundle with `act-policy quantize BUNDLE --calib RECORDING` (docs/deploy.md)")


def fallback_warning(facts: Mapping[str, Any]) -> str | None:
    """Why the configured backend is not the one doing the work (a Hailo NPU that is missing), if so."""
    if not facts.get("fallback_backend"):
        return None
    return f"running on fallback {facts['fallback_backend']}: {facts.get('fallback_reason')}"

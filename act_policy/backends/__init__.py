"""Backend registry: name → class, imported lazily so unused runtimes need not be installed."""

from __future__ import annotations

import importlib

from act_policy.backends.base import (
    Backend,
    BackendOptions,
    ModelInputs,
    backend_label,
    calibration_warning,
    fallback_warning,
)
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.dependencies import available, missing_dependency
from act_policy.core.errors import BackendError

BACKENDS: dict[str, str] = {
    "cpu_fp32": "act_policy.backends.torch_fp32:TorchFP32Backend",
    "onnx_fp32": "act_policy.backends.onnx_runtime:OnnxFP32Backend",
    "cpu_int8": "act_policy.backends.onnx_runtime:CpuInt8Backend",
    "torch_dynamic_int8": "act_policy.backends.torch_dynamic_int8:TorchDynamicInt8Backend",
    "hailo": "act_policy.backends.hailo:HailoBackend",
    "openvino_fp16": "act_policy.backends.openvino:OpenVinoFP16Backend",
    "openvino_fp32": "act_policy.backends.openvino:OpenVinoFP32Backend",
}


def reference_backend() -> str:
    """The float32 backend other backends are judged against: ``cpu_fp32`` (torch), or on a torch-free
    install ``onnx_fp32`` — the bundle's float graph, checked against torch when it was exported."""
    return "cpu_fp32" if available("torch") else "onnx_fp32"


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; an unknown name raises BackendError, a missing runtime
    MissingDependencyError naming what to install."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise missing_dependency(exc, f"backend {name!r}") from exc
    return getattr(module, class_name)


def create_backend(name: str, artifacts: PolicyArtifacts, options: BackendOptions | None = None) -> Backend:
    """Instantiate backend ``name``; unknown names, missing runtimes and options the backend does not
    take (``options.extra``, see :meth:`Backend.check_options`) raise BackendError (a missing runtime:
    MissingDependencyError)."""
    cls = backend_class(name)
    options = options or BackendOptions()
    cls.check_options(options.extra)
    return cls(artifacts, options)


__all__ = ["BACKENDS", "Backend", "BackendOptions", "ModelInputs", "backend_class", "backend_label",
           "calibration_warning", "create_backend", "fallback_warning", "reference_backend"]

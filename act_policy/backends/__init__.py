"""Backend registry: name → class, imported lazily so unused runtimes need not be installed."""

from __future__ import annotations

import importlib

from act_policy.backends.base import Backend, BackendOptions, ModelInputs, backend_label, fallback_warning
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError

BACKENDS: dict[str, str] = {
    "cpu_fp32": "act_policy.backends.torch_fp32:TorchFP32Backend",
    "onnx_fp32": "act_policy.backends.onnx_runtime:OnnxFP32Backend",
    "cpu_int8": "act_policy.backends.onnx_runtime:CpuInt8Backend",
    "torch_dynamic_int8": "act_policy.backends.torch_dynamic_int8:TorchDynamicInt8Backend",
    "hailo": "act_policy.backends.hailo:HailoBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; unknown names and missing runtimes raise BackendError."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} needs a package that is not installed: {exc}") from exc
    return getattr(module, class_name)


def create_backend(name: str, artifacts: PolicyArtifacts, options: BackendOptions | None = None) -> Backend:
    """Instantiate backend ``name``; unknown names, missing runtimes and options the backend does not
    take (``options.extra``, see :meth:`Backend.check_options`) raise BackendError."""
    cls = backend_class(name)
    options = options or BackendOptions()
    cls.check_options(options.extra)
    return cls(artifacts, options)


__all__ = ["BACKENDS", "Backend", "BackendOptions", "ModelInputs", "backend_class", "backend_label", "create_backend",
           "fallback_warning"]

"""``torch_dynamic_int8``: the seed project's CPU recipe, kept as the baseline INT8 path to beat.

``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``: weights int8, activations
quantized on the fly. The ResNet backbone (most of the MACs) and the attention input
projections (``F.linear`` on slices of ``in_proj_weight``, not ``nn.Linear``) stay float32,
which is why this recipe gains little; ``cpu_int8`` is the recommended path.

torch 2.13 marks ``torch.ao.quantization`` deprecated (its successor, PT2E in ``torchao``,
pays off only after ``torch.compile``). The recipe still works; its deprecation warnings are
suppressed here, and only those, and ``describe()`` reports ``deprecated_api``.
"""

from __future__ import annotations

import platform
import warnings
from typing import Any

import torch
from torch import nn

from act_policy.backends.base import BackendOptions
from act_policy.backends.torch_fp32 import TorchFP32Backend
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError

ARM_MACHINES = ("aarch64", "arm64", "armv7l")
DEPRECATION_MESSAGES = (r"torch\.ao\.quantization is deprecated", r".*quantized tensor creation functions")


def quantized_engine(machine: str | None = None, supported: list[str] | None = None) -> str:
    """QNNPACK on ARM (what the Pi's wheels support), x86/fbgemm elsewhere (defaults: this machine)."""
    machine = (machine or platform.machine()).lower()
    supported = torch.backends.quantized.supported_engines if supported is None else supported
    preferred = ("qnnpack",) if machine in ARM_MACHINES else ("x86", "fbgemm")
    engine = next((e for e in preferred if e in supported), None)
    if engine is None:
        raise BackendError(f"this torch build supports quantized engines {supported}, none of {preferred}")
    return engine


class TorchDynamicInt8Backend(TorchFP32Backend):
    name = "torch_dynamic_int8"

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions) -> None:
        if options.device != "cpu":
            raise BackendError(f"torch_dynamic_int8 runs on the CPU only, got device {options.device!r}")
        super().__init__(artifacts, options)
        self.engine = quantized_engine()
        torch.backends.quantized.engine = self.engine  # process-wide setting, as torch defines it
        with warnings.catch_warnings():
            for message in DEPRECATION_MESSAGES:  # deprecation notices only; see module docstring
                warnings.filterwarnings("ignore", message=message)
            from torch.ao.quantization import quantize_dynamic

            self.model = quantize_dynamic(self.model, {nn.Linear}, dtype=torch.qint8)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "quantized_engine": self.engine, "quantized": "nn.Linear weights (dynamic)",
                "deprecated_api": "torch.ao.quantization.quantize_dynamic (warnings suppressed)"}

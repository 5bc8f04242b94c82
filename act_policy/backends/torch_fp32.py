"""``cpu_fp32``: the lean torch network in float32 — the reference every other backend is judged by.

Despite the name it also runs on a GPU (``device="cuda"``), so the same ROS node can serve
the policy from a workstation in the same ROS 2 domain when the robot's CPU is not enough.
"""

from __future__ import annotations

import numpy as np
import torch

from act_policy.backends.base import Backend, BackendOptions, ModelInputs
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError
from act_policy.core.model import ACT


def build_prepared_model(artifacts: PolicyArtifacts) -> ACT:
    """Lean ACT with the artifacts' weights, batch norms folded, constants precomputed."""
    model = ACT(artifacts.spec)
    model.load_state_dict(artifacts.weights)
    sizes = [tuple(f.shape[1:]) for f in artifacts.spec.cameras]
    return model.eval().prepare(sizes)


class TorchFP32Backend(Backend):
    name = "cpu_fp32"

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions) -> None:
        super().__init__(artifacts, options)
        try:
            self.device = torch.device(options.device)
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise BackendError(f"device {options.device!r} requested but torch sees no CUDA device")
        except RuntimeError as exc:
            raise BackendError(f"invalid torch device {options.device!r}: {exc}") from exc
        torch.set_num_threads(options.threads)
        self.model = build_prepared_model(artifacts).to(self.device)

    def _tensor(self, array: np.ndarray | None) -> torch.Tensor | None:
        return None if array is None else torch.from_numpy(array).to(self.device)

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        with torch.inference_mode():
            chunk = self.model([self._tensor(i) for i in inputs.images],
                               self._tensor(inputs.state), self._tensor(inputs.env_state))
        return chunk[0].float().cpu().numpy()

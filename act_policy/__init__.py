"""act_policy: LeRobot ACT policies on a Raspberry Pi 5 (CPU INT8 or Hailo NPU), with a ROS 2 node.

The ROS-free core is importable on any machine::

    import act_policy
    policy = act_policy.load_policy("outputs/train/act_so101/checkpoints/last/pretrained_model")
    action = policy.select_action(obs)

Names are imported lazily: ROS tools import the generated ``act_policy.msg`` subpackage, which
must not drag torch in (``ros2 topic echo`` runs with the system Python, outside any venv).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ActPolicyError": "act_policy.core.errors",
    "BackendError": "act_policy.core.errors",
    "CheckpointError": "act_policy.core.errors",
    "ObservationError": "act_policy.core.errors",
    "SettingError": "act_policy.core.errors",
    "Policy": "act_policy.core.policy",
    "StageTimes": "act_policy.core.policy",
    "load_artifacts": "act_policy.core.policy",
    "load_policy": "act_policy.core.policy",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'act_policy' has no attribute {name!r}")

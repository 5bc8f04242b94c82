"""act_policy: LeRobot ACT policies on a Raspberry Pi 5 (CPU INT8 or Hailo NPU), with a ROS 2 node.

The ROS-free core is importable on any machine::

    import act_policy
    policy = act_policy.load_policy("outputs/train/act_so101/checkpoints/last/pretrained_model")
    action = policy.select_action(obs)
"""

from act_policy.core.errors import ActPolicyError, BackendError, CheckpointError, ObservationError
from act_policy.core.policy import Policy, StageTimes, load_artifacts, load_policy

__version__ = "0.1.0"

__all__ = [
    "ActPolicyError",
    "BackendError",
    "CheckpointError",
    "ObservationError",
    "Policy",
    "StageTimes",
    "__version__",
    "load_artifacts",
    "load_policy",
]

"""`ros2 launch act_policy pi5_cpu.launch.py`: the policy node with the CPU backend settings of
config/pi5_cpu.yaml, plus an optional arm driver and camera driver. Arguments: act_policy_common.ARGUMENTS
(`ros2 launch act_policy pi5_cpu.launch.py --show-args`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared module installed next to this file

from act_policy_common import generate


def generate_launch_description():
    return generate("pi5_cpu.yaml")

"""The thin rclpy adapter (needs ROS 2 Jazzy): ``node.py`` is ``act_policy_node``, ``conversions.py``
maps messages to the ROS-free runtime in ``act_policy.runtime``."""

import os

# libgomp's worker threads (torch's intra-op pool) busy-wait between parallel regions unless told otherwise;
# set before torch is first imported (act_policy.ros.node imports it), only if the user has not chosen
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

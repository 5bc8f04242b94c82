"""The thin rclpy adapter (needs ROS 2 Jazzy): ``node.py`` is ``act_policy_node``, ``conversions.py``
maps messages to the ROS-free runtime in ``act_policy.runtime``."""

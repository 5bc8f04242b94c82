"""ROS-free runtime of the ROS 2 node: parameters, observation cache, control scheduling, safety,
recording and health.

Everything the node decides lives here as plain Python so it is unit-tested without ROS; the
rclpy adapter in ``act_policy.ros`` only moves messages in and out.
"""

# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""trajectory_msgs/msg (fields from ros2/common_interfaces trajectory_msgs/msg/*.msg, Jazzy)."""

import builtin_interfaces.msg  # noqa: F401 - registers the nested types
import std_msgs.msg  # noqa: F401
from _fake_message import Message


class JointTrajectoryPoint(Message):
    _type = "trajectory_msgs/JointTrajectoryPoint"
    _fields_and_field_types = {"positions": "sequence<double>", "velocities": "sequence<double>",
                               "accelerations": "sequence<double>", "effort": "sequence<double>",
                               "time_from_start": "builtin_interfaces/Duration"}


class JointTrajectory(Message):
    _type = "trajectory_msgs/JointTrajectory"
    _fields_and_field_types = {"header": "std_msgs/Header", "joint_names": "sequence<string>",
                               "points": "sequence<trajectory_msgs/JointTrajectoryPoint>"}

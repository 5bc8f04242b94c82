"""ROS messages ↔ the runtime's plain types. Nothing else; the decisions live in act_policy.runtime.

Generated rclpy messages refuse NumPy arrays in sequence fields and ints in float fields, so
everything leaving here is a list of Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension, MultiArrayLayout
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from act_policy.core.image_messages import RawImage
from act_policy.runtime.health import Report

COMMAND_MESSAGES = {"float64_multi_array": Float64MultiArray, "joint_state": JointState,
                    "joint_trajectory": JointTrajectory}


def raw_image(msg: Image | CompressedImage) -> RawImage:
    """The message buffer itself (no copy); CompressedImage's ``format`` goes into ``encoding``."""
    return RawImage.from_message(msg, compressed=isinstance(msg, CompressedImage))


def duration(seconds: float) -> Duration:
    ns = round(seconds * 1e9)
    return Duration(sec=ns // 10**9, nanosec=ns % 10**9)


def command_message(command_type: str, joint_names: Sequence[str], positions: np.ndarray, stamp: Time,
                    period_s: float) -> Float64MultiArray | JointState | JointTrajectory:
    """One joint-position command; a trajectory gets one point reached one control period from now.

    The trajectory's header stamp stays zero, which trajectory controllers read as "start now".
    """
    values = [float(v) for v in positions]
    if command_type == "float64_multi_array":
        return Float64MultiArray(data=values)
    if command_type == "joint_state":
        return JointState(header=Header(stamp=stamp), name=list(joint_names), position=values)
    point = JointTrajectoryPoint(positions=values, time_from_start=duration(period_s))
    return JointTrajectory(joint_names=list(joint_names), points=[point])


def chunk_message(chunk: np.ndarray) -> Float64MultiArray:
    """A (steps, joints) chunk, row-major, with the layout naming both dimensions."""
    steps, joints = chunk.shape
    layout = MultiArrayLayout(dim=[MultiArrayDimension(label="step", size=steps, stride=steps * joints),
                                   MultiArrayDimension(label="joint", size=joints, stride=joints)])
    return Float64MultiArray(layout=layout, data=[float(v) for v in chunk.ravel()])


def diagnostic_array(report: Report, name: str, hardware_id: str, stamp: Time) -> DiagnosticArray:
    status = DiagnosticStatus(level=bytes([int(report.level)]), name=name, message=report.message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in report.values])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])

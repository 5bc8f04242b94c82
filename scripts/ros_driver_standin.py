#!/usr/bin/env python3
"""Stand-in for the camera and arm drivers, to try act_policy_node on a real ROS 2 without a robot.

Publishes a moving test pattern on each ``--camera`` topic (``sensor_msgs/Image`` as rgb8, bgr8 or
yuyv, or a JPEG ``CompressedImage``) and ``sensor_msgs/JointState`` with the joints in *reverse*
order (the node must match them by name). The simulated arm reaches each
``std_msgs/Float64MultiArray`` command at once, so the loop is closed. At the end it reports what a
robot would have received: command rate and gaps between commands, NaN/Inf, commands outside the
limits and the largest step. This is how the real-ROS trial in docs/ros.md was run, e.g.::

    ros2 launch act_policy pi5_cpu.launch.py model_path:=$BUNDLE params_file:=$ONE_CAMERA_SO101_YAML &
    ros2 run act_policy driver_standin --camera /camera/image_raw --duration 90

(colcon installs this file as ``driver_standin``; from a checkout, ``python3 scripts/ros_driver_standin.py``.)

Needs rclpy (a sourced ROS 2) and NumPy; OpenCV only for ``yuyv`` and ``jpeg``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray

SO101_JOINTS = "shoulder_pan,shoulder_lift,elbow_flex,wrist_flex,wrist_roll,gripper"
SO101_LOWER = "-1.9,-1.75,-1.7,-1.75,-2.8,0.0"  # config/so101_follower.yaml
SO101_UPPER = "1.9,1.75,1.6,1.75,2.8,1.75"


def floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(",")])


def stripes(height: int, width: int, t: float) -> np.ndarray:
    """RGB stripes that drift with time, so consecutive frames differ."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    row = 127 + 100 * np.sin(6 * x + t)
    return np.repeat(row[None, :, None], height, axis=0).repeat(3, axis=2).astype(np.uint8)


def encode(frame: np.ndarray, fmt: str) -> Image | CompressedImage:
    """The frame as the message a camera driver publishing ``fmt`` would send."""
    height, width, _ = frame.shape
    if fmt == "jpeg":
        import cv2

        return CompressedImage(format="jpeg", data=cv2.imencode(".jpg", frame[:, :, ::-1])[1].tobytes())
    msg = Image(height=height, width=width, encoding=fmt)
    if fmt == "yuyv":  # packed 4:2:2: Y0 U Y1 V
        import cv2

        yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV)
        packed = np.empty((height, width, 2), np.uint8)
        packed[:, :, 0] = yuv[:, :, 0]
        packed[:, 0::2, 1], packed[:, 1::2, 1] = yuv[:, 0::2, 1], yuv[:, 1::2, 2]
        msg.step, msg.data = width * 2, packed.tobytes()
    else:
        msg.step, msg.data = width * 3, (frame if fmt == "rgb8" else frame[:, :, ::-1]).tobytes()
    return msg


class DriverStandIn(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("driver_standin")
        self.args = args
        self.names = args.joints.split(",")
        self.lower, self.upper = floats(args.lower), floats(args.upper)
        self.position = np.zeros(len(self.names))
        self.start = time.monotonic()
        self.arrivals: list[float] = []
        self.non_finite = self.outside = 0
        self.max_step = 0.0
        self.last: np.ndarray | None = None
        kind = CompressedImage if args.format == "jpeg" else Image
        self.cameras = [self.create_publisher(kind, t, qos_profile_sensor_data) for t in args.camera]
        self.joints = self.create_publisher(JointState, args.joint_state_topic, 10)
        self.create_subscription(Float64MultiArray, args.command_topic, self.on_command, 10)
        self.create_timer(1.0 / args.camera_hz, self.publish_images)
        if args.joint_hz > 0:
            self.create_timer(1.0 / args.joint_hz, self.publish_joints)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def on_command(self, msg: Float64MultiArray) -> None:
        self.arrivals.append(self.elapsed())
        command = np.asarray(msg.data, np.float64)
        if not np.all(np.isfinite(command)):
            self.non_finite += 1
            return
        self.outside += int(np.any(command < self.lower - 1e-9) or np.any(command > self.upper + 1e-9))
        if self.last is not None:
            self.max_step = max(self.max_step, float(np.max(np.abs(command - self.last))))
        self.last = command
        self.position[:] = command  # the simulated arm reaches its command within one tick

    def publish_images(self) -> None:
        t = self.elapsed()
        if self.args.stop_camera_after and t > self.args.stop_camera_after:
            return
        msg = encode(stripes(self.args.height, self.args.width, t), self.args.format)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "camera"
        for publisher in self.cameras:
            publisher.publish(msg)

    def publish_joints(self) -> None:
        msg = JointState(name=self.names[::-1], position=[float(v) for v in self.position[::-1]])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.joints.publish(msg)

    def report(self) -> str:
        lines = [f"commands: NaN/Inf {self.non_finite}, outside limits {self.outside}, "
                 f"largest step {self.max_step:.4f}"]
        if len(self.arrivals) > 2:
            t = np.asarray(self.arrivals)
            gaps = np.diff(t)
            lines.insert(0, f"commands: {len(t)} in {t[-1] - t[0]:.1f} s = {(len(t) - 1) / (t[-1] - t[0]):.1f} Hz; "
                            f"gap p50 {1e3 * np.median(gaps):.1f} ms, p99 {1e3 * np.percentile(gaps, 99):.1f} ms, "
                            f"max {1e3 * gaps.max():.1f} ms")
            late = [(round(float(at), 1), round(1e3 * float(g))) for at, g in zip(t[1:], gaps, strict=True) if g > 0.1]
            lines.insert(1, f"gaps > 100 ms (at s, ms): {late}")
        return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--camera", action="append", default=[], help="image topic to publish; repeat per camera")
    p.add_argument("--format", default="rgb8", choices=["rgb8", "bgr8", "yuyv", "jpeg"])
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--camera-hz", type=float, default=30.0)
    p.add_argument("--joint-hz", type=float, default=100.0, help="0: publish no joint states")
    p.add_argument("--joint-state-topic", default="/joint_states")
    p.add_argument("--joints", default=SO101_JOINTS, help="comma-separated joint names")
    p.add_argument("--lower", default=SO101_LOWER, help="comma-separated lower limits the commands must respect")
    p.add_argument("--upper", default=SO101_UPPER, help="comma-separated upper limits")
    p.add_argument("--command-topic", default="/forward_position_controller/commands")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--stop-camera-after", type=float, default=0.0, help="seconds; stop the images (watchdog test)")
    args = p.parse_args()
    rclpy.init()
    node = DriverStandIn(args)
    try:
        while rclpy.ok() and node.elapsed() < args.duration:
            rclpy.spin_once(node, timeout_sec=0.05)
        print(node.report())
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

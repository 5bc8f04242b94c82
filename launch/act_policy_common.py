"""Shared body of pi5_cpu.launch.py and pi5_hailo.launch.py (they differ only in the backend params file).

Starts, in this order of parameter precedence (later wins): the backend params file
(``config/pi5_<backend>.yaml``), the robot params file (``params_file``, default the SO-101
example), then the launch arguments ``model_path``, ``backend`` and ``use_sim_time``. Optionally
includes the arm driver's launch file and starts one camera driver whose image topic is remapped onto
``camera_topic`` — the topic that the policy's ``camera_topics`` entry for that camera names.

The lifecycle node is configured and activated with ChangeState events (configure at start,
activate once that configure reaches ``inactive``, never after a later configure by hand), because
``LifecycleNode(autostart=True)`` only exists from launch_ros 0.26.7 and older Jazzy installs reject
it. Set ``autostart:=false`` to drive the transitions yourself (``ros2 lifecycle set /act_policy
configure``).
"""

from __future__ import annotations

import launch.logging
import lifecycle_msgs.msg
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
    UnregisterEventHandler,
)
from launch.events import matches_action
from launch.launch_description_sources import AnyLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

PACKAGE = "act_policy"
NODE_NAME = "act_policy"
CAMERA_DRIVERS = ("none", "camera_ros", "usb_cam", "v4l2_camera")

# driver → (package, executable, the image topic it publishes, its resolution parameters)
DRIVER_NODES = {
    "camera_ros": ("camera_ros", "camera_node", "~/image_raw", lambda w, h: {"width": w, "height": h}),
    "usb_cam": ("usb_cam", "usb_cam_node_exe", "image_raw", lambda w, h: {"image_width": w, "image_height": h}),
    # v4l2_camera grabs YUYV by default; ask it for rgb8 so the policy needs no colour conversion
    "v4l2_camera": ("v4l2_camera", "v4l2_camera_node", "image_raw",
                    lambda w, h: {"image_size": [w, h], "output_encoding": "rgb8"}),
}

ARGUMENTS = (
    ("model_path", "", "LeRobot pretrained_model folder or act_policy bundle (overrides the params files)"),
    ("backend", "", "inference backend, e.g. cpu_int8 (overrides the params files); empty = the backend params "
                    "file's"),
    ("params_file", "", "robot params file (joint names, cameras, limits); default config/so101_follower.yaml"),
    ("backend_params_file", "", "backend params file; default the one of this launch file"),
    ("namespace", "", "namespace of the policy node"),
    ("use_sim_time", "false", "use /clock for message stamps (control timing always uses the steady clock)"),
    ("log_level", "info", "log level of the policy node"),
    ("autostart", "true", "configure and activate the node automatically"),
    ("arm_launch_package", "", "package of the arm driver launch file to include; empty = none"),
    ("arm_launch_file", "", "launch file (in that package's launch/ folder) of the arm driver"),
    ("camera_driver", "none", "camera driver to start: " + ", ".join(CAMERA_DRIVERS)),
    ("camera_topic", "/camera/image_raw", "topic the driver's image is remapped to; must match camera_topics"),
    ("camera_width", "640", "camera driver resolution: width"),
    ("camera_height", "480", "camera driver resolution: height"),
)


def generate(backend_params: str) -> LaunchDescription:
    """The launch description for one backend params file in config/ (e.g. ``pi5_cpu.yaml``)."""
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup, args=[backend_params])])


def _config(name: str):
    return PathJoinSubstitution([FindPackageShare(PACKAGE), "config", name])


def _setup(context: LaunchContext, backend_params: str) -> list:
    arg = context.launch_configurations.get
    _warn_about_unknown_arguments(context.argv)
    use_sim_time = arg("use_sim_time", "false").lower() in ("true", "1", "yes")
    overrides = {"use_sim_time": use_sim_time}
    for name in ("model_path", "backend"):
        if arg(name):
            overrides[name] = arg(name)
    node = LifecycleNode(
        package=PACKAGE, executable="act_policy_node", name=NODE_NAME, namespace=arg("namespace", ""),
        parameters=[arg("backend_params_file") or _config(backend_params),
                    arg("params_file") or _config("so101_follower.yaml"), overrides],
        arguments=["--ros-args", "--log-level", arg("log_level", "info")], output="screen")
    actions: list = [node]
    if arg("autostart", "true").lower() in ("true", "1", "yes"):
        actions += _autostart(node)
    actions += _arm_driver(arg("arm_launch_package", ""), arg("arm_launch_file", ""), use_sim_time)
    actions += _camera_driver(arg("camera_driver", "none"), arg("camera_topic", ""), int(arg("camera_width", "640")),
                              int(arg("camera_height", "480")), use_sim_time)
    return actions


def _warn_about_unknown_arguments(argv: list[str]) -> None:
    """ros2 launch drops a ``name:=value`` no launch file declares without a word — e.g. a node parameter given
    as a launch argument, which then silently keeps its params-file value. A warning, not an error: a launch
    file that includes this one may take arguments of its own."""
    unknown = sorted({a.split(":=", 1)[0] for a in argv if ":=" in a} - {name for name, _, _ in ARGUMENTS})
    if unknown:
        launch.logging.get_logger("launch").warning(
            f"not launch arguments of act_policy: {', '.join(unknown)} (passed on only to an included launch file "
            f"such as the arm driver's; node parameters go in params_file, live ones with `ros2 param set`); "
            f"see --show-args")


def _autostart(node: LifecycleNode) -> list:
    """Configure once, and activate only after that first configure: a later configure by hand (after a
    ``cleanup``, say to change a read-only parameter) must leave the node inactive, not set the arm moving."""
    def change(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    # whichever of the two fires first (handle_once) disarms the other
    activate = OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive", handle_once=True,
        entities=[change(lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE),
                  OpaqueFunction(function=lambda _: [UnregisterEventHandler(give_up)])])
    # a failed first configure ends in unconfigured (directly, or through errorprocessing)
    give_up = OnStateTransition(target_lifecycle_node=node, goal_state="unconfigured", handle_once=True,
                                entities=[UnregisterEventHandler(activate)])
    return [RegisterEventHandler(activate), RegisterEventHandler(give_up),
            change(lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE)]


def _arm_driver(package: str, launch_file: str, use_sim_time: bool) -> list:
    if not package and not launch_file:
        return []
    if not package or not launch_file:
        raise RuntimeError("arm driver: set both arm_launch_package and arm_launch_file (or neither)")
    source = AnyLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare(package), "launch", launch_file]))
    return [IncludeLaunchDescription(source, launch_arguments={"use_sim_time": str(use_sim_time).lower()}.items())]


def _camera_driver(driver: str, topic: str, width: int, height: int, use_sim_time: bool) -> list:
    if driver == "none":
        return []
    if driver not in DRIVER_NODES:
        raise RuntimeError(f"camera_driver: expected one of {', '.join(CAMERA_DRIVERS)}, got {driver!r}")
    package, executable, published, resolution = DRIVER_NODES[driver]
    return [Node(package=package, executable=executable, name="camera", output="screen",
                 parameters=[{**resolution(width, height), "use_sim_time": use_sim_time}],
                 remappings=[(published, topic)])]

"""The ROS 2 package around the node: package.xml, CMakeLists.txt, msg/, config/*.yaml and launch/.

msg files and package.xml are checked with Debian's real ROS tooling (python3-rosidl,
python3-empy, python3-catkin-pkg, installed by scripts/test.sh) run by /usr/bin/python3, because
those packages live in Debian's Python, not in the test venv.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ros_fakes
import yaml

from act_policy.runtime.parameters import NODE_NAME, SPECS, coerce, validate

ROOT = ros_fakes.ROOT
SYSTEM_PYTHON = "/usr/bin/python3"
ROS_TOOLING = "import catkin_pkg, em, rosidl_adapter, rosidl_parser"


@pytest.fixture(scope="module")
def tooling_report() -> dict:
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run([SYSTEM_PYTHON, "-c", ROS_TOOLING],
                                                          capture_output=True).returncode:
        pytest.skip("Debian's ROS tooling is missing: apt-get install python3-rosidl python3-empy "
                    "python3-catkin-pkg (scripts/test.sh installs them)")
    run = subprocess.run([SYSTEM_PYTHON, str(Path(__file__).parent / "ros_tooling_check.py"), str(ROOT)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def ros_imports(paths: list[Path]) -> set[str]:
    """Top-level modules imported by these files that are neither stdlib, numpy nor act_policy: ROS packages."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"numpy", "act_policy", "act_policy_common"}


def test_every_msg_file_goes_through_rosidl_and_matches_the_fake(tooling_report):
    messages = tooling_report["messages"]
    assert set(messages) == {p.stem for p in (ROOT / "msg").glob("*.msg")} == {"InferenceLatency"}
    for name, report in messages.items():
        assert report["namespaced_type"] == f"act_policy/msg/{name}"
        assert list(report["members"]) == list(ros_fakes.parse_msg((ROOT / "msg" / f"{name}.msg").read_text()))


def test_package_xml_is_valid_and_declares_what_the_code_imports(tooling_report):
    package = tooling_report["package"]
    assert (package["name"], package["format"], package["build_type"]) == ("act_policy", 3, "ament_cmake")
    assert "rosidl_interface_packages" in package["member_of_groups"]
    assert {"ament_cmake", "rosidl_default_generators"} <= set(package["buildtool_depends"])
    code = [*(ROOT / "act_policy" / "ros").glob("*.py"), *(ROOT / "launch").glob("*.py")]
    imported = ros_imports(code)
    assert {"rclpy", "sensor_msgs", "launch_ros"} <= imported
    assert imported <= set(package["depends"]), imported - set(package["depends"])
    assert {"rosidl_default_runtime", "python3-numpy"} <= set(package["depends"])


def test_cmake_installs_the_python_package_beside_the_generated_interfaces():
    cmake = re.sub(r"#.*", "", (ROOT / "CMakeLists.txt").read_text())
    assert "ament_python_install_package" not in cmake  # collides with rosidl's own call (rosidl_python#141)
    generate = cmake.index("rosidl_generate_interfaces(${PROJECT_NAME}")
    install_pkg = cmake.index('install(DIRECTORY act_policy/\n  DESTINATION "${PYTHON_INSTALL_DIR}/${PROJECT_NAME}"')
    assert generate < install_pkg  # our __init__.py must replace the generator's empty one
    for msg in (ROOT / "msg").glob("*.msg"):
        assert f'"msg/{msg.name}"' in cmake
    assert "install(PROGRAMS bin/act_policy_node DESTINATION lib/${PROJECT_NAME})" in cmake
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in cmake
    entry = ROOT / "bin" / "act_policy_node"
    assert entry.stat().st_mode & 0o111 and "from act_policy.ros.node import main" in entry.read_text()


def config_parameters(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert list(data) == ["/**"], f"{path.name}: use the /** wildcard so any node name/namespace matches"
    return data["/**"]["ros__parameters"]


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_parameter_in_the_config_files_is_declared_with_a_valid_value(path):
    for name, value in config_parameters(path).items():
        assert name in SPECS, f"{path.name}: {name} is not a parameter of the node"
        coerce(SPECS[name], value)


@pytest.mark.parametrize("backend_file", ["pi5_cpu.yaml", "pi5_hailo.yaml"])
def test_backend_and_robot_files_combine_into_a_valid_configuration(backend_file):
    merged = {**config_parameters(ROOT / "config" / backend_file),
              **config_parameters(ROOT / "config" / "so101_follower.yaml")}
    settings = validate(merged)
    assert len(settings["joint_names"]) == len(settings["joint_scale"]) == 6


def test_the_demo_config_runs_the_seeded_policy_on_a_topic_no_controller_listens_to():
    from act_policy.runtime.session import build_runtime, load_node_policy

    settings = validate({**config_parameters(ROOT / "config" / "pi5_cpu.yaml"),  # as the launch file merges them
                         **config_parameters(ROOT / "config" / "demo.yaml")})
    assert settings["command_topic"] == "/act_policy_demo/commands"
    rt = build_runtime(settings, load_node_policy(settings))
    try:
        assert rt.backend == "cpu_fp32" and rt.cache.allow_resize
    finally:
        rt.close()


# --------------------------------------------------------------------------- launch files
def load_launch_file(name: str):
    """Import a launch file the way `ros2 launch` does (a module loaded from its path)."""
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_launch(name: str, **arguments: str) -> tuple[list, list]:
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchContext

    description = load_launch_file(name).generate_launch_description()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    context = LaunchContext()
    context.launch_configurations.update({d.name: d.default_value for d in declared})
    unknown = set(arguments) - set(context.launch_configurations)
    assert not unknown, f"not launch arguments: {unknown}"
    context.launch_configurations.update(arguments)
    [setup] = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return declared, setup.execute(context)


@pytest.mark.parametrize(("launch_file", "backend_file"), [("pi5_cpu.launch.py", "pi5_cpu.yaml"),
                                                            ("pi5_hailo.launch.py", "pi5_hailo.yaml")])
def test_launch_files_start_the_lifecycle_node_and_drive_it_to_active(launch_file, backend_file):
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch_ros.actions import LifecycleNode
    from lifecycle_msgs.msg import Transition

    declared, actions = run_launch(launch_file, model_path="/models/act_so101", namespace="arm1",
                                   use_sim_time="true", log_level="debug")
    assert {"model_path", "params_file", "namespace", "use_sim_time", "log_level", "arm_launch_package",
            "arm_launch_file", "camera_driver", "camera_topic"} <= {d.name for d in declared}
    [node] = [a for a in actions if isinstance(a, LifecycleNode)]
    assert (node.package, node.executable, node.name, node.namespace) == ("act_policy", "act_policy_node",
                                                                          NODE_NAME, "arm1")
    backend_params, robot_params, overrides = node.kwargs["parameters"]
    assert backend_params.substitutions[-1] == backend_file and robot_params.substitutions[-1] == "so101_follower.yaml"
    assert overrides == {"use_sim_time": True, "model_path": "/models/act_so101"}
    assert node.kwargs["arguments"] == ["--ros-args", "--log-level", "debug"]
    [configure] = [a for a in actions if isinstance(a, EmitEvent)]
    assert configure.event.transition_id == Transition.TRANSITION_CONFIGURE
    assert configure.event.lifecycle_node_matcher(node)
    [handler] = [a.event_handler for a in actions if isinstance(a, RegisterEventHandler)]
    assert handler.target_lifecycle_node is node and handler.goal_state == "inactive"
    [activate] = handler.entities
    assert activate.event.transition_id == Transition.TRANSITION_ACTIVATE


def test_launch_without_autostart_leaves_the_transitions_to_the_user():
    from launch.actions import EmitEvent, RegisterEventHandler

    _, actions = run_launch("pi5_cpu.launch.py", autostart="false")
    assert not [a for a in actions if isinstance(a, (EmitEvent, RegisterEventHandler))]


@pytest.mark.parametrize(("driver", "published"), [("camera_ros", "~/image_raw"), ("usb_cam", "image_raw"),
                                                   ("v4l2_camera", "image_raw")])
def test_camera_driver_topic_is_remapped_onto_the_policy_camera_topic(driver, published):
    from launch_ros.actions import LifecycleNode, Node

    _, actions = run_launch("pi5_cpu.launch.py", camera_driver=driver, camera_topic="/camera/image_raw",
                            camera_width="320", camera_height="240")
    [camera] = [a for a in actions if isinstance(a, Node) and not isinstance(a, LifecycleNode)]
    assert camera.package == driver and camera.kwargs["remappings"] == [(published, "/camera/image_raw")]
    params = camera.kwargs["parameters"][0]
    assert 320 in (params.get("width"), params.get("image_width"), params.get("image_size", [None])[0])


def test_arm_driver_launch_is_included_only_when_named():
    from launch.actions import IncludeLaunchDescription

    _, actions = run_launch("pi5_hailo.launch.py", arm_launch_package="so101_bringup",
                            arm_launch_file="follower.launch.py")
    [include] = [a for a in actions if isinstance(a, IncludeLaunchDescription)]
    location = include.launch_description_source.location.substitutions
    assert location[0].package == "so101_bringup" and location[1:] == ["launch", "follower.launch.py"]
    _, actions = run_launch("pi5_hailo.launch.py")
    assert not [a for a in actions if isinstance(a, IncludeLaunchDescription)]
    with pytest.raises(RuntimeError, match="set both arm_launch_package and arm_launch_file"):
        run_launch("pi5_hailo.launch.py", arm_launch_package="so101_bringup")
    with pytest.raises(RuntimeError, match="camera_driver: expected one of"):
        run_launch("pi5_hailo.launch.py", camera_driver="gstreamer")


def test_launch_files_share_one_implementation():
    for name in ("pi5_cpu.launch.py", "pi5_hailo.launch.py"):
        text = (ROOT / "launch" / name).read_text()
        assert "from act_policy_common import generate" in text and len(text.splitlines()) < 20

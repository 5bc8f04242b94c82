"""package.xml as ROS's own catkin_pkg reads it: valid, and declaring every ROS package the code imports
(what rosdep installs on a Pi). A colcon build does not check the second part."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]


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


def test_package_xml_is_valid_and_declares_what_the_code_imports():
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert (package.name, package.package_format, package.get_build_type()) == ("act_policy", 3, "ament_cmake")
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]
    assert {"ament_cmake", "rosidl_default_generators"} <= {d.name for d in package.buildtool_depends}
    depends = {d.name for d in (*package.build_depends, *package.exec_depends)}
    imported = ros_imports([*(ROOT / "act_policy" / "ros").glob("*.py"), *(ROOT / "launch").glob("*.py")])
    assert {"rclpy", "sensor_msgs", "launch_ros"} <= imported
    assert imported <= depends, imported - depends
    assert {"rosidl_default_runtime", "python3-numpy"} <= depends

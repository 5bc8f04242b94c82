"""The ROS 2 params files in config/, checked against the parameter table without ROS.

What needs the ROS tools — package.xml (catkin_pkg), msg/ (rosidl, through colcon), the installed
package and the launch files — is tested in test/real_ros (bash scripts/test.sh).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from act_policy.runtime.parameters import SPECS, coerce, validate

ROOT = Path(__file__).resolve().parents[1]


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

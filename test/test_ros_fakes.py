"""The ROS test doubles match the real Jazzy interfaces and reject what real rclpy messages reject.

Field names and types of every fake message are compared with the Jazzy definitions shipped
by ``rosbags`` (``Stores.ROS2_JAZZY``); rosbags has no services, so std_srvs is compared with
the .srv texts of ros2/common_interfaces (jazzy branch) quoted below.
"""

from __future__ import annotations

import array

import numpy as np
import pytest
import ros_fakes
from _fake_message import REGISTRY

ros_fakes.install_interface_module()

import diagnostic_msgs.msg  # noqa: E402 - every fake module registers its classes
import lifecycle_msgs.msg  # noqa: E402
import rcl_interfaces.msg  # noqa: E402, F401
import sensor_msgs.msg  # noqa: E402
import std_msgs.msg  # noqa: E402
import std_srvs.srv  # noqa: E402
import trajectory_msgs.msg  # noqa: E402, F401

rosbags_typesys = pytest.importorskip("rosbags.typesys", reason="pip install rosbags (test extra)")

RCLPY_NAMES = {"float64": "double", "float32": "float", "bool": "boolean", "byte": "octet", "char": "uint8"}

# ros2/common_interfaces (jazzy) std_srvs/srv/SetBool.srv and Trigger.srv
STD_SRVS = {
    "SetBool": ("bool data # e.g. for hardware enabling / disabling", "bool success   # indicate successful run of "
                "triggered service\nstring message # informational, e.g. for error messages"),
    "Trigger": ("", "bool success   # indicate successful run of triggered service\n"
                "string message # informational, e.g. for error messages"),
}


def rclpy_type(node) -> str:
    """rosbags' field type tree → the type string rosidl_generator_py puts in _fields_and_field_types."""
    kind, detail = node
    if kind.name == "BASE":
        name, bound = detail
        name = RCLPY_NAMES.get(name, name)
        return f"{name}<{bound}>" if bound else name
    if kind.name == "NAME":
        pkg, _, msg = detail.split("/")
        return f"{pkg}/{msg}"
    inner, size = detail
    if kind.name == "SEQUENCE":
        return f"sequence<{rclpy_type(inner)}, {size}>" if size else f"sequence<{rclpy_type(inner)}>"
    return f"{rclpy_type(inner)}[{size}]"


def fake_message_types() -> list[str]:
    return sorted(t for t in REGISTRY if not t.startswith(("std_srvs/", "act_policy/")))


@pytest.mark.parametrize("type_name", fake_message_types())
def test_fake_message_fields_match_the_jazzy_definitions(type_name):
    store = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY)
    pkg, msg = type_name.split("/")
    _, fields = store.fielddefs[f"{pkg}/msg/{msg}"]
    # rosidl gives empty messages a dummy member for C; the generated Python class has no field
    expected = {name: rclpy_type(node) for name, node in fields if name != "structure_needs_at_least_one_member"}
    assert REGISTRY[type_name].get_fields_and_field_types() == expected


def test_fake_message_constants_match_the_jazzy_definitions():
    store = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY)
    consts, _ = store.fielddefs["diagnostic_msgs/msg/DiagnosticStatus"]
    for name, _, value in consts:
        assert getattr(diagnostic_msgs.msg.DiagnosticStatus, name) == bytes([value])  # byte constants are bytes
    consts, _ = store.fielddefs["lifecycle_msgs/msg/State"]
    primary = [(name, value) for name, _, value in consts if name.startswith("PRIMARY_STATE_")]
    assert len(primary) == 5
    for name, value in primary:
        assert getattr(lifecycle_msgs.msg.State, name) == value


@pytest.mark.parametrize("service", sorted(STD_SRVS))
def test_fake_services_match_std_srvs(service):
    cls = getattr(std_srvs.srv, service)
    for part, text in zip((cls.Request, cls.Response), STD_SRVS[service], strict=True):
        assert part.get_fields_and_field_types() == ros_fakes.parse_msg(text)


def test_fakes_reject_what_generated_messages_reject():
    with pytest.raises(AssertionError, match="must be a set or sequence"):
        std_msgs.msg.Float64MultiArray(data=np.zeros(3))  # numpy arrays are not Sequences
    with pytest.raises(AssertionError, match="must hold values of type 'double'"):
        std_msgs.msg.Float64MultiArray(data=[1, 2])  # ints in a float64[] field
    with pytest.raises(AssertionError, match="Invalid arguments passed to constructor: positions"):
        sensor_msgs.msg.JointState(positions=[1.0])
    with pytest.raises(AssertionError, match="'level'"):
        diagnostic_msgs.msg.DiagnosticStatus(level=1)  # byte fields take bytes
    image = sensor_msgs.msg.Image(data=b"\x01\x02")
    assert isinstance(image.data, array.array) and image.data.typecode == "B"


def test_the_generated_latency_message_has_the_documented_fields():
    from act_policy.msg import InferenceLatency

    fields = InferenceLatency.get_fields_and_field_types()
    assert fields["header"] == "std_msgs/Header" and fields["backend"] == "string"
    assert {"sequence", "observation_step", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms",
            "observation_age_ms", "queue_depth", "skipped_actions"} <= set(fields)

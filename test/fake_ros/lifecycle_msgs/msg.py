# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""lifecycle_msgs/msg State and Transition ids (ros2/rcl_interfaces lifecycle_msgs/msg, Jazzy)."""

from _fake_message import Message


class State(Message):
    _type = "lifecycle_msgs/State"
    _fields_and_field_types = {"id": "uint8", "label": "string"}
    PRIMARY_STATE_UNKNOWN = 0
    PRIMARY_STATE_UNCONFIGURED = 1
    PRIMARY_STATE_INACTIVE = 2
    PRIMARY_STATE_ACTIVE = 3
    PRIMARY_STATE_FINALIZED = 4


class Transition(Message):
    _type = "lifecycle_msgs/Transition"
    _fields_and_field_types = {"id": "uint8", "label": "string"}
    TRANSITION_CONFIGURE = 1
    TRANSITION_CLEANUP = 2
    TRANSITION_ACTIVATE = 3
    TRANSITION_DEACTIVATE = 4
    TRANSITION_UNCONFIGURED_SHUTDOWN = 5
    TRANSITION_INACTIVE_SHUTDOWN = 6
    TRANSITION_ACTIVE_SHUTDOWN = 7

# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""diagnostic_msgs/msg (fields from ros2/common_interfaces diagnostic_msgs/msg/*.msg, Jazzy).

``level`` is a ``byte`` field: rclpy represents it as a one-byte ``bytes`` value (``octet``).
"""

import std_msgs.msg  # noqa: F401 - registers the nested types
from _fake_message import Message


class KeyValue(Message):
    _type = "diagnostic_msgs/KeyValue"
    _fields_and_field_types = {"key": "string", "value": "string"}


class DiagnosticStatus(Message):
    _type = "diagnostic_msgs/DiagnosticStatus"
    _fields_and_field_types = {"level": "octet", "name": "string", "message": "string", "hardware_id": "string",
                               "values": "sequence<diagnostic_msgs/KeyValue>"}
    OK = b"\x00"
    WARN = b"\x01"
    ERROR = b"\x02"
    STALE = b"\x03"


class DiagnosticArray(Message):
    _type = "diagnostic_msgs/DiagnosticArray"
    _fields_and_field_types = {"header": "std_msgs/Header", "status": "sequence<diagnostic_msgs/DiagnosticStatus>"}

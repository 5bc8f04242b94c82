# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""builtin_interfaces/msg (fields from ros2/rcl_interfaces builtin_interfaces/msg/*.msg, Jazzy)."""

from _fake_message import Message


class Time(Message):
    _type = "builtin_interfaces/Time"
    _fields_and_field_types = {"sec": "int32", "nanosec": "uint32"}


class Duration(Message):
    _type = "builtin_interfaces/Duration"
    _fields_and_field_types = {"sec": "int32", "nanosec": "uint32"}

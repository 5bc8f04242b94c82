# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""std_msgs/msg (fields from ros2/common_interfaces std_msgs/msg/*.msg, Jazzy)."""

import builtin_interfaces.msg  # noqa: F401 - registers the nested types
from _fake_message import Message


class Header(Message):
    _type = "std_msgs/Header"
    _fields_and_field_types = {"stamp": "builtin_interfaces/Time", "frame_id": "string"}


class MultiArrayDimension(Message):
    _type = "std_msgs/MultiArrayDimension"
    _fields_and_field_types = {"label": "string", "size": "uint32", "stride": "uint32"}


class MultiArrayLayout(Message):
    _type = "std_msgs/MultiArrayLayout"
    _fields_and_field_types = {"dim": "sequence<std_msgs/MultiArrayDimension>", "data_offset": "uint32"}


class Float64MultiArray(Message):
    _type = "std_msgs/Float64MultiArray"
    _fields_and_field_types = {"layout": "std_msgs/MultiArrayLayout", "data": "sequence<double>"}

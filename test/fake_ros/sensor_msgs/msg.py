# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""sensor_msgs/msg (fields from ros2/common_interfaces sensor_msgs/msg/*.msg, Jazzy)."""

import std_msgs.msg  # noqa: F401 - registers the nested types
from _fake_message import Message


class Image(Message):
    _type = "sensor_msgs/Image"
    _fields_and_field_types = {"header": "std_msgs/Header", "height": "uint32", "width": "uint32",
                               "encoding": "string", "is_bigendian": "uint8", "step": "uint32",
                               "data": "sequence<uint8>"}


class CompressedImage(Message):
    _type = "sensor_msgs/CompressedImage"
    _fields_and_field_types = {"header": "std_msgs/Header", "format": "string", "data": "sequence<uint8>"}


class JointState(Message):
    _type = "sensor_msgs/JointState"
    _fields_and_field_types = {"header": "std_msgs/Header", "name": "sequence<string>",
                               "position": "sequence<double>", "velocity": "sequence<double>",
                               "effort": "sequence<double>"}

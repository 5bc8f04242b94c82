# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""rcl_interfaces/msg (fields from ros2/rcl_interfaces rcl_interfaces/msg/*.msg, Jazzy)."""

import builtin_interfaces.msg  # noqa: F401 - registers the nested types
from _fake_message import Message


class FloatingPointRange(Message):
    _type = "rcl_interfaces/FloatingPointRange"
    _fields_and_field_types = {"from_value": "double", "to_value": "double", "step": "double"}


class IntegerRange(Message):
    _type = "rcl_interfaces/IntegerRange"
    _fields_and_field_types = {"from_value": "int64", "to_value": "int64", "step": "uint64"}


class ParameterDescriptor(Message):
    _type = "rcl_interfaces/ParameterDescriptor"
    _fields_and_field_types = {"name": "string", "type": "uint8", "description": "string",
                               "additional_constraints": "string", "read_only": "boolean",
                               "dynamic_typing": "boolean",
                               "floating_point_range": "sequence<rcl_interfaces/FloatingPointRange, 1>",
                               "integer_range": "sequence<rcl_interfaces/IntegerRange, 1>"}


class SetParametersResult(Message):
    _type = "rcl_interfaces/SetParametersResult"
    _fields_and_field_types = {"successful": "boolean", "reason": "string"}


class ParameterEvent(Message):
    """Published by every rclpy Node on /parameter_events (the fake publishes nothing on it)."""

    _type = "rcl_interfaces/ParameterEvent"
    _fields_and_field_types = {"stamp": "builtin_interfaces/Time", "node": "string",
                               "new_parameters": "sequence<rcl_interfaces/Parameter>",
                               "changed_parameters": "sequence<rcl_interfaces/Parameter>",
                               "deleted_parameters": "sequence<rcl_interfaces/Parameter>"}


class ParameterType(Message):
    _type = "rcl_interfaces/ParameterType"
    _fields_and_field_types = {}
    PARAMETER_NOT_SET = 0
    PARAMETER_BOOL = 1
    PARAMETER_INTEGER = 2
    PARAMETER_DOUBLE = 3
    PARAMETER_STRING = 4
    PARAMETER_BYTE_ARRAY = 5
    PARAMETER_BOOL_ARRAY = 6
    PARAMETER_INTEGER_ARRAY = 7
    PARAMETER_DOUBLE_ARRAY = 8
    PARAMETER_STRING_ARRAY = 9

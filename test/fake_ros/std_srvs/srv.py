# ruff: noqa: RUF012 - class-level field tables, as in rosidl_generator_py's generated classes
"""std_srvs/srv (ros2/common_interfaces std_srvs/srv/SetBool.srv and Trigger.srv, Jazzy).

rosbags ships no service definitions, so test_ros_fakes checks these against the .srv texts
quoted there.
"""

from _fake_message import Message, Service


class _SetBoolRequest(Message):
    _type = "std_srvs/SetBool_Request"
    _fields_and_field_types = {"data": "boolean"}


class _SetBoolResponse(Message):
    _type = "std_srvs/SetBool_Response"
    _fields_and_field_types = {"success": "boolean", "message": "string"}


class SetBool(Service):
    Request = _SetBoolRequest
    Response = _SetBoolResponse


class _TriggerRequest(Message):
    _type = "std_srvs/Trigger_Request"
    _fields_and_field_types = {}


class _TriggerResponse(Message):
    _type = "std_srvs/Trigger_Response"
    _fields_and_field_types = {"success": "boolean", "message": "string"}


class Trigger(Service):
    Request = _TriggerRequest
    Response = _TriggerResponse

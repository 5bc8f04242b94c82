"""Fake rclpy.node.Node: the methods act_policy.ros.node uses, with rclpy's signatures and rules.

Mirrors rclpy/rclpy/node.py (jazzy, 7.1.x): ``create_publisher(msg_type, topic, qos_profile, *,
callback_group, event_callbacks, qos_overriding_options, publisher_class)``,
``create_subscription(msg_type, topic, callback, qos_profile, *, callback_group, event_callbacks,
qos_overriding_options, raw)``, ``create_service(srv_type, srv_name, callback, *, qos_profile,
callback_group)``, ``create_timer(timer_period_sec, callback, callback_group=None, clock=None,
autostart=True)``, ``declare_parameter(name, value=None, descriptor=None, ignore_override=False)``
and the parameter rules of ``declare_parameters`` / ``_apply_descriptor`` / ``set_parameters``
(pre-set callbacks only on set, never on declare):
overrides win over defaults, the type comes from the default unless ``dynamic_typing``, read-only
and type are checked, ranges only for INTEGER / DOUBLE values, and every on-set callback runs
(also at declare time) — a refusal at declare time raises InvalidParameterValueException.
The node declares ``use_sim_time`` itself, like rclpy's TimeSource.

Test hooks (not in rclpy): ``Subscription.deliver(msg)``, ``Timer.fire()``, ``Service.call(req)``,
``Publisher.published``, ``FakeLogger.records``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterEvent, SetParametersResult

from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile

LOG_KWARGS = {"throttle_duration_sec", "throttle_time_source_type", "skip_first", "once"}


class ParameterNotDeclaredException(Exception):
    pass


class ParameterAlreadyDeclaredException(Exception):
    pass


class InvalidParameterValueException(Exception):
    pass


class FakeLogger:
    """RcutilsLogger's methods (rclpy/rclpy/impl/rcutils_logger.py): message plus known keyword options."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def _log(self, level: str, message: str, **kwargs: Any) -> bool:
        unknown = set(kwargs) - LOG_KWARGS
        if unknown:
            raise TypeError(f"unexpected logging arguments {sorted(unknown)}")
        self.records.append((level, str(message)))
        return True

    def debug(self, message: str, **kwargs: Any) -> bool:
        return self._log("debug", message, **kwargs)

    def info(self, message: str, **kwargs: Any) -> bool:
        return self._log("info", message, **kwargs)

    def warning(self, message: str, **kwargs: Any) -> bool:
        return self._log("warning", message, **kwargs)

    warn = warning

    def error(self, message: str, **kwargs: Any) -> bool:
        return self._log("error", message, **kwargs)

    def fatal(self, message: str, **kwargs: Any) -> bool:
        return self._log("fatal", message, **kwargs)


def _qos(qos_profile: QoSProfile | int) -> QoSProfile:
    if isinstance(qos_profile, int):
        return QoSProfile(depth=qos_profile)
    if not isinstance(qos_profile, QoSProfile):
        raise TypeError(f"qos_profile must be a QoSProfile or history depth, got {qos_profile!r}")
    return qos_profile


class Publisher:
    def __init__(self, msg_type: type, topic: str, qos_profile: QoSProfile, callback_group: Any) -> None:
        self.msg_type, self.topic_name, self.qos_profile = msg_type, topic, qos_profile
        self.callback_group = callback_group
        self.published: list[Any] = []
        self.destroyed = False

    def publish(self, msg: Any) -> None:
        if not isinstance(msg, self.msg_type):
            raise TypeError(f"Expected {self.msg_type}, got {type(msg)}")
        self.published.append(msg)

    def get_subscription_count(self) -> int:
        return 1

    def destroy(self) -> None:
        self.destroyed = True


class Subscription:
    def __init__(self, msg_type: type, topic: str, callback: Callable, qos_profile: QoSProfile,
                 callback_group: Any) -> None:
        self.msg_type, self.topic_name, self.callback = msg_type, topic, callback
        self.qos_profile, self.callback_group = qos_profile, callback_group

    def deliver(self, msg: Any) -> None:
        assert isinstance(msg, self.msg_type), f"{self.topic_name} takes {self.msg_type}, got {type(msg)}"
        self.callback(msg)


class Service:
    def __init__(self, srv_type: type, name: str, callback: Callable, callback_group: Any) -> None:
        self.srv_type, self.srv_name, self.callback, self.callback_group = srv_type, name, callback, callback_group

    def call(self, request: Any) -> Any:
        assert isinstance(request, self.srv_type.Request)
        response = self.callback(request, self.srv_type.Response())
        assert isinstance(response, self.srv_type.Response), "service callbacks must return the response"
        return response


class Timer:
    def __init__(self, period_sec: float, callback: Callable, callback_group: Any, clock: Clock,
                 autostart: bool) -> None:
        self.timer_period_ns = int(period_sec * 1e9)
        self.callback, self.callback_group, self.clock = callback, callback_group, clock
        self._canceled = not autostart
        self.destroyed = False

    def fire(self) -> None:
        assert not self._canceled and not self.destroyed, "a canceled or destroyed timer does not fire"
        self.callback()

    def cancel(self) -> None:
        self._canceled = True

    def reset(self) -> None:
        self._canceled = False

    def is_canceled(self) -> bool:
        return self._canceled


class Node:
    def __init__(self, node_name: str, *, context: Any = None, cli_args: list[str] | None = None,
                 namespace: str | None = None, use_global_arguments: bool = True, enable_rosout: bool = True,
                 start_parameter_services: bool = True, parameter_overrides: list[Parameter] | None = None,
                 allow_undeclared_parameters: bool = False,
                 automatically_declare_parameters_from_overrides: bool = False,
                 enable_logger_service: bool = False) -> None:
        self._name = node_name
        self._namespace = "/" + (namespace or "").strip("/") if namespace else "/"
        self._parameter_overrides = {p.name: p for p in parameter_overrides or []}
        self._parameters: dict[str, Parameter] = {}
        self._descriptors: dict[str, ParameterDescriptor] = {}
        self._on_set_callbacks: list[Callable[[list[Parameter]], SetParametersResult]] = []
        self._pre_set_callbacks: list[Callable[[list[Parameter]], list[Parameter]]] = []
        self._logger = FakeLogger()
        self._clock = Clock(clock_type=ClockType.ROS_TIME)
        self.default_callback_group = MutuallyExclusiveCallbackGroup()
        # the same private names as rclpy's Node: a subclass that reuses them breaks the real node too
        self._publishers: list[Publisher] = []
        self._subscriptions: list[Subscription] = []
        self._clients: list[Any] = []
        self._services: list[Service] = []
        self._timers: list[Timer] = []
        self._parameter_event_publisher = self.create_publisher(ParameterEvent, "/parameter_events", 10)
        self.declare_parameter("use_sim_time", False)

    @property
    def publishers(self) -> Iterator[Publisher]:
        yield from self._publishers

    @property
    def subscriptions(self) -> Iterator[Subscription]:
        yield from self._subscriptions

    @property
    def services(self) -> Iterator[Service]:
        yield from self._services

    @property
    def timers(self) -> Iterator[Timer]:
        yield from self._timers

    # ---------------------------------------------------------------- names, logging, time
    def get_name(self) -> str:
        return self._name

    def get_namespace(self) -> str:
        return self._namespace

    def get_logger(self) -> FakeLogger:
        return self._logger

    def get_clock(self) -> Clock:
        return self._clock

    def resolve_topic_name(self, topic: str, *, only_expand: bool = False) -> str:
        ns = self._namespace.rstrip("/")
        if topic.startswith("~"):
            return f"{ns}/{self._name}{topic[1:]}"
        if topic.startswith("/"):
            return topic
        return f"{ns}/{topic}"

    # ---------------------------------------------------------------- parameters
    def declare_parameter(self, name: str, value: Any = None, descriptor: ParameterDescriptor | None = None,
                          ignore_override: bool = False) -> Parameter:
        if name in self._parameters:
            raise ParameterAlreadyDeclaredException(name)
        descriptor = ParameterDescriptor() if descriptor is None else descriptor
        if isinstance(value, Parameter.Type):
            if descriptor.dynamic_typing:
                raise ValueError("passing a descriptor with dynamic_typing=True is not allowed with a type")
            descriptor.type = value.value.real if hasattr(value.value, "real") else value.value
            value = None
        elif not descriptor.dynamic_typing:
            descriptor.type = Parameter.Type.from_parameter_value(value).value
            if descriptor.type == Parameter.Type.NOT_SET.value:
                raise ValueError("Cannot declare a statically typed parameter with default value of type "
                                 "PARAMETER_NOT_SET")
        if not ignore_override and name in self._parameter_overrides:
            value = self._parameter_overrides[name].value
        parameter = Parameter(name, value=value)
        result = self._apply_descriptor(parameter, descriptor, check_read_only=False)
        if result.successful:
            result = self._call_on_set([parameter])
        if not result.successful:
            raise InvalidParameterValueException(f"{name}: {result.reason}")
        self._descriptors[name] = descriptor
        self._parameters[name] = parameter
        return parameter

    def has_parameter(self, name: str) -> bool:
        return name in self._parameters

    def get_parameter(self, name: str) -> Parameter:
        if name not in self._parameters:
            raise ParameterNotDeclaredException(name)
        return self._parameters[name]

    def describe_parameter(self, name: str) -> ParameterDescriptor:
        if name not in self._descriptors:
            raise ParameterNotDeclaredException(name)
        return self._descriptors[name]

    def add_pre_set_parameters_callback(self, callback: Callable[[list[Parameter]], list[Parameter]]) -> None:
        self._pre_set_callbacks.insert(0, callback)

    def remove_pre_set_parameters_callback(self, callback: Callable) -> None:
        self._pre_set_callbacks.remove(callback)

    def add_on_set_parameters_callback(self, callback: Callable[[list[Parameter]], SetParametersResult]) -> None:
        self._on_set_callbacks.insert(0, callback)

    def remove_on_set_parameters_callback(self, callback: Callable) -> None:
        self._on_set_callbacks.remove(callback)

    def set_parameters(self, parameter_list: list[Parameter]) -> list[SetParametersResult]:
        """One at a time, like rclpy (and ``ros2 param set``)."""
        return [self.set_parameters_atomically([p]) for p in parameter_list]

    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        if self._pre_set_callbacks:  # each callback sees the original list; their outputs are concatenated
            parameter_list = [p for callback in self._pre_set_callbacks for p in callback(parameter_list)]
            if not parameter_list:
                return SetParametersResult(successful=False, reason=(
                    "parameter list cannot be empty, this might be due to pre_set_parameters_callback "
                    "modifying the original parameters list."))
        for p in parameter_list:
            if p.name not in self._parameters:
                raise ParameterNotDeclaredException(p.name)
            result = self._apply_descriptor(p, self._descriptors[p.name], check_read_only=True)
            if not result.successful:
                return result
        result = self._call_on_set(parameter_list)
        if result.successful:
            for p in parameter_list:
                self._parameters[p.name] = p
        return result

    def _call_on_set(self, parameters: list[Parameter]) -> SetParametersResult:
        for callback in self._on_set_callbacks:
            result = callback(parameters)
            if not isinstance(result, SetParametersResult):
                raise TypeError("on-set parameter callbacks must return SetParametersResult")
            if not result.successful:
                return result
        return SetParametersResult(successful=True)

    def _apply_descriptor(self, parameter: Parameter, descriptor: ParameterDescriptor,
                          check_read_only: bool) -> SetParametersResult:
        descriptor.name = parameter.name
        if check_read_only and descriptor.read_only:
            return SetParametersResult(successful=False,
                                       reason=f"Trying to set a read-only parameter: {parameter.name}.")
        if descriptor.dynamic_typing:
            descriptor.type = parameter.type_.value
        elif parameter.type_ is not Parameter.Type.NOT_SET and parameter.type_.value != descriptor.type:
            return SetParametersResult(successful=False, reason=(
                f"Wrong parameter type, expected '{Parameter.Type(descriptor.type)}' got '{parameter.type_}'"))
        if parameter.type_ is Parameter.Type.INTEGER and descriptor.integer_range:
            r = descriptor.integer_range[0]
            if not min(r.from_value, r.to_value) <= parameter.value <= max(r.from_value, r.to_value):
                return SetParametersResult(successful=False, reason=(
                    f"Parameter {parameter.name} out of range. Min: {r.from_value}, Max: {r.to_value}, "
                    f"value: {parameter.value}"))
        if parameter.type_ is Parameter.Type.DOUBLE and descriptor.floating_point_range:
            r = descriptor.floating_point_range[0]
            if not min(r.from_value, r.to_value) <= parameter.value <= max(r.from_value, r.to_value):
                return SetParametersResult(successful=False, reason=(
                    f"Parameter {parameter.name} out of range. Min: {r.from_value}, Max: {r.to_value}, "
                    f"value: {parameter.value}"))
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- entities
    def create_publisher(self, msg_type: type, topic: str, qos_profile: QoSProfile | int, *,
                         callback_group: CallbackGroup | None = None, event_callbacks: Any = None,
                         qos_overriding_options: Any = None, publisher_class: type = Publisher) -> Publisher:
        pub = publisher_class(msg_type, self.resolve_topic_name(topic), _qos(qos_profile),
                              callback_group or self.default_callback_group)
        self._publishers.append(pub)
        return pub

    def create_subscription(self, msg_type: type, topic: str, callback: Callable, qos_profile: QoSProfile | int, *,
                            callback_group: CallbackGroup | None = None, event_callbacks: Any = None,
                            qos_overriding_options: Any = None, raw: bool = False) -> Subscription:
        sub = Subscription(msg_type, self.resolve_topic_name(topic), callback, _qos(qos_profile),
                           callback_group or self.default_callback_group)
        self._subscriptions.append(sub)
        return sub

    def create_service(self, srv_type: type, srv_name: str, callback: Callable, *, qos_profile: Any = None,
                       callback_group: CallbackGroup | None = None) -> Service:
        srv = Service(srv_type, self.resolve_topic_name(srv_name), callback,
                      callback_group or self.default_callback_group)
        self._services.append(srv)
        return srv

    def create_timer(self, timer_period_sec: float, callback: Callable, callback_group: CallbackGroup | None = None,
                     clock: Clock | None = None, autostart: bool = True) -> Timer:
        timer = Timer(timer_period_sec, callback, callback_group or self.default_callback_group,
                      clock or self._clock, autostart)
        self._timers.append(timer)
        return timer

    def destroy_publisher(self, publisher: Publisher) -> bool:
        if publisher not in self._publishers:
            return False
        self._publishers.remove(publisher)
        publisher.destroy()
        return True

    def destroy_subscription(self, subscription: Subscription) -> bool:
        if subscription not in self._subscriptions:
            return False
        self._subscriptions.remove(subscription)
        return True

    def destroy_service(self, service: Service) -> bool:
        if service not in self._services:
            return False
        self._services.remove(service)
        return True

    def destroy_timer(self, timer: Timer) -> bool:
        if timer not in self._timers:
            return False
        self._timers.remove(timer)
        timer.destroyed = True
        return True

    def destroy_node(self) -> None:
        for timer in list(self._timers):
            self.destroy_timer(timer)

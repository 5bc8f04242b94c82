"""``act_policy_node``: the rclpy lifecycle adapter around :mod:`act_policy.runtime`.

It moves messages in and out and maps lifecycle transitions, services and parameter changes
onto the runtime; every decision (validation, scheduling, safety, diagnostics) is made there.

Lifecycle: *configure* validates the parameters, loads the policy on its backend and creates
the topics, services and timers; *activate* starts commanding; *deactivate* stops commanding
and holds; *cleanup* / *shutdown* release everything. A failing transition is logged with its
reason (rclpy itself turns an exception into ERROR without a log line).

Threads (docs/ros.md, "Scheduling design"): the control tick runs on a thread of its own at absolute
steady-clock deadlines (:class:`act_policy.runtime.ticker.Ticker`), never queued behind executor work;
camera and joint callbacks, the services and the diagnostics timer run on one single-threaded executor
(rclpy's multi-threaded one spins its Python wait loop while a callback runs, holding the GIL the tick
needs; measured in docs/ros.md); inference runs in a child process ``inference_nice`` levels lower
(``inference_isolation: process``, :mod:`act_policy.runtime.inference_process`), so a tick never waits for
it, not even for the GIL; a worker thread of the node hands it the observations. Input ages count from
when the middleware received the message (rmw's ``received_timestamp``), so a late callback is reported
as such in ``/diagnostics`` and does not make fresh data look stale. SIGINT/SIGTERM stop the control
thread before the context goes down. The diagnostics timer uses the steady clock: ROS time stalls under
``use_sim_time`` without ``/clock``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from act_policy.backends import calibration_warning
from act_policy.core.errors import ActPolicyError, ObservationError
from act_policy.msg import InferenceLatency
from act_policy.ros.conversions import COMMAND_MESSAGES, chunk_message, command_message, diagnostic_array, raw_image
from act_policy.runtime.health import HoldLog, Level
from act_policy.runtime.observations import delivery_delay_s
from act_policy.runtime.parameters import (
    NODE_NAME,
    PARAMETERS,
    SPECS,
    ParameterError,
    ParamSpec,
    ParamType,
    coerce,
    descriptor_text,
    dynamic_typing,
    ros_default,
    validate,
)
from act_policy.runtime.realtime import TickResult
from act_policy.runtime.session import Runtime, build_runtime, start_node_policy

COMMAND_QOS_DEPTH = 10
# the control thread waits at most this long for the GIL held by Python code of the inference thread
# (CPython's default is 5 ms, as long as the whole jitter budget at 30 Hz)
GIL_SWITCH_INTERVAL_S = 0.001
SHUTDOWN_INFERENCE_WAIT_S = 0.2  # at exit an inference still running is abandoned, not waited for


def parameter_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of one row of the parameter table (ranges enforced by rclpy too)."""
    description, constraints = descriptor_text(spec)
    d = ParameterDescriptor(description=description, additional_constraints=constraints, read_only=spec.read_only,
                            dynamic_typing=dynamic_typing(spec))
    if spec.type is ParamType.INT and spec.min is not None and spec.max is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    # not for a double that may hold the string `checkpoint`: its descriptor shows the type of the value set
    # (dynamic typing), and a double range under "Type: string" misleads; coerce() checks the range of a number
    if spec.type is ParamType.DOUBLE and spec.min is not None and spec.max is not None and not spec.from_checkpoint:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    return d


def canonical_parameters(parameters: list[Parameter]) -> list[Parameter]:
    """Integers set for a double or double array at run time (``ros2 param set /act_policy control_rate_hz 50``)
    become doubles before rclpy stores them, so ``ros2 param get``/``dump`` show the declared type. (rclpy runs
    no pre-set callback at declaration: an integer in a params file is read correctly but stays an integer.)"""
    out: list[Parameter] = []
    for p in parameters:
        spec = SPECS.get(p.name)
        if spec is not None and spec.type is ParamType.DOUBLE and p.type_ is Parameter.Type.INTEGER:
            p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
        elif spec is not None and spec.type is ParamType.DOUBLE_ARRAY and p.type_ is Parameter.Type.INTEGER_ARRAY:
            p = Parameter(p.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in p.value])
        out.append(p)
    return out


class ActPolicyNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._values: dict[str, Any] = {
            spec.name: self.declare_parameter(spec.name, ros_default(spec), parameter_descriptor(spec)).value
            for spec in PARAMETERS}
        self.runtime: Runtime | None = None
        # what configure creates; not rclpy's own _publishers/_subscriptions/_timers, which a subclass must not reuse
        self._configured_subscriptions: list[Any] = []
        self._configured_publishers: list[Any] = []
        self._configured_timers: list[Any] = []
        self._command_pub: Any = None
        self._chunk_pub: Any = None
        self._latency_pub: Any = None
        self._diagnostics_pub: Any = None
        self._hold_log = HoldLog()
        self.add_pre_set_parameters_callback(canonical_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/reset", self._on_reset)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            settings = validate(self._values)
            policy, worker, warnings = start_node_policy(settings)
            try:
                self.runtime = build_runtime(settings, policy, worker=worker)
            except BaseException:
                worker.close()
                policy.close()
                raise
            self._create_interfaces(self.runtime)
            for refused in warnings + self.runtime.start_control(self._on_tick_result):
                self.get_logger().warning(refused)
        except (ActPolicyError, OSError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self.release_runtime()
            return TransitionCallbackReturn.FAILURE
        except Exception:
            self.get_logger().error(f"configure failed unexpectedly:\n{traceback.format_exc()}")
            self.release_runtime()
            return TransitionCallbackReturn.ERROR
        rt = self.runtime
        self.get_logger().info(
            f"configured: {rt.policy.backend.describe()}, chunk_size {rt.context.chunk_size}; "
            f"cameras {rt.camera_topics}; joints {list(rt.cache.joint_names)} "
            f"from {rt.settings['joint_state_topic']}; commands ({rt.settings['command_type']}) on "
            f"{rt.settings['command_topic']} at {rt.settings['control_rate_hz']:g} Hz; "
            + "; ".join(f"{k} {v}" for k, v in rt.schedule_info())
            + f"; inactive until `ros2 lifecycle set {self.get_fully_qualified_name()} activate`")
        if rt.backend_warning:
            self.get_logger().warning(f"backend {rt.backend}: {rt.backend_warning}")
        if calibrated := calibration_warning(rt.policy.describe()):
            self.get_logger().warning(f"backend {rt.backend}: {calibrated}")
        return super().on_configure(state)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        if self.runtime is None:
            self.get_logger().error("activate failed: the node is not configured")
            return TransitionCallbackReturn.FAILURE
        # said before the control thread sees it: its first active tick logs what follows ("commanding", a hold)
        self.get_logger().info("active")
        self.runtime.loop.set_active(True)
        return super().on_activate(state)  # enables the lifecycle publishers

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        if self.runtime is not None:
            self.runtime.loop.set_active(False)
        self.get_logger().info("inactive: holding, no commands are sent")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release_runtime()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release_runtime()
        return super().on_shutdown(state)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while in state {state.label!r}: releasing the policy")
        self.release_runtime()
        return super().on_error(state)

    # ------------------------------------------------------------------ interfaces
    def _create_interfaces(self, rt: Runtime) -> None:
        s = rt.settings
        for feature, topic in rt.camera_topics.items():
            msg_type = CompressedImage if topic.rstrip("/").endswith("/compressed") else Image
            self._configured_subscriptions.append(self.create_subscription(
                msg_type, topic, self._image_callback(rt, feature, topic), qos_profile_sensor_data))
        self._configured_subscriptions.append(self.create_subscription(
            JointState, s["joint_state_topic"], self._joint_callback(rt), qos_profile_sensor_data))
        self._command_pub = self.create_lifecycle_publisher(
            COMMAND_MESSAGES[s["command_type"]], s["command_topic"], COMMAND_QOS_DEPTH)
        self._chunk_pub = self.create_lifecycle_publisher(Float64MultiArray, "~/action_chunk", 1)
        self._latency_pub = self.create_lifecycle_publisher(InferenceLatency, "~/latency", 10)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._configured_publishers += [self._command_pub, self._chunk_pub, self._latency_pub, self._diagnostics_pub]
        self._configured_timers.append(self.create_timer(
            s["diagnostics_period_s"], self._on_diagnostics, clock=self._steady))

    def release_runtime(self, inference_wait_s: float = 30.0) -> None:
        """Stop the control thread, destroy what configure created and close the policy (idempotent).

        The control thread stops first, so no tick publishes on a destroyed publisher or a shut-down
        context. An inference still running after ``inference_wait_s`` is abandoned (process exit)."""
        runtime, self.runtime = self.runtime, None
        if runtime is not None and not runtime.close(inference_wait_s):
            self.get_logger().info("an inference was still running: left to the process exit")
        for timer in self._configured_timers:
            self.destroy_timer(timer)
        for sub in self._configured_subscriptions:
            self.destroy_subscription(sub)
        for pub in self._configured_publishers:
            if pub is self._diagnostics_pub:
                self.destroy_publisher(pub)
            else:
                self.destroy_lifecycle_publisher(pub)
        self._configured_timers, self._configured_subscriptions, self._configured_publishers = [], [], []

    def _image_callback(self, rt: Runtime, feature: str, topic: str):
        def callback(msg: Image | CompressedImage, info: Any) -> None:
            delay = delivery_delay_s(info.get("received_timestamp", 0), time.time_ns())
            rt.cache.update_image(feature, raw_image(msg), received_at=rt.clock() - delay)
            rt.on_input(topic, delay)
        return callback

    def _joint_callback(self, rt: Runtime):
        topic = rt.settings["joint_state_topic"]

        def callback(msg: JointState, info: Any) -> None:
            delay = delivery_delay_s(info.get("received_timestamp", 0), time.time_ns())
            try:
                rt.cache.update_joints(msg.name, msg.position, received_at=rt.clock() - delay)
            except ObservationError as exc:
                self.get_logger().warning(str(exc), throttle_duration_sec=2.0)
                return
            rt.on_input(topic, delay)
        return callback

    # ------------------------------------------------------------------ control
    def _on_tick_result(self, result: TickResult) -> None:
        """The control thread's publishing half: runs right after each tick, on that thread."""
        rt = self.runtime
        if rt is None:
            return
        try:
            if result.command is not None:
                self._command_pub.publish(command_message(
                    rt.settings["command_type"], rt.cache.joint_names, result.command,
                    self.get_clock().now().to_msg(), 1.0 / rt.settings["control_rate_hz"]))
            if result.chunk is not None and result.chunk.chunk is not None and result.skipped is not None:
                self._publish_chunk(rt, result)
            self._log_hold(result)
        except Exception:  # an exception would stop the executor; hold and say why instead
            self.get_logger().error(f"control tick failed:\n{traceback.format_exc()}", throttle_duration_sec=1.0)

    def _publish_chunk(self, rt: Runtime, result: TickResult) -> None:
        done = result.chunk
        self._chunk_pub.publish(chunk_message(rt.loop.units.to_ros(done.chunk)))
        t = done.times
        msg = InferenceLatency(
            sequence=done.job.seq, observation_step=done.job.obs_step,
            backend=rt.backend,
            convert_ms=float(done.convert_ms), preprocess_ms=float(t.preprocess_ms),
            inference_ms=float(t.inference_ms), postprocess_ms=float(t.postprocess_ms),
            total_ms=float(done.total_ms), observation_age_ms=float(done.job.observation_age_ms),
            queue_depth=rt.loop.schedule.depth, skipped_actions=int(result.skipped))
        msg.header.stamp = self.get_clock().now().to_msg()
        self._latency_pub.publish(msg)

    def _log_hold(self, result: TickResult) -> None:
        """Log what :class:`HoldLog` says is new: a change of the reason for holding, or commanding again."""
        line = self._hold_log.line(result.hold, result.detail)
        if line is None:
            return
        level, text = line
        # two call sites: rclpy refuses one call site logging at two severities ("Logger severity
        # cannot be changed between calls"), which raised in the tick
        if level is Level.OK:
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)

    def _on_diagnostics(self) -> None:
        rt = self.runtime
        if rt is None:
            return
        report = rt.report()
        name = f"{self.get_name()}: policy"
        self._diagnostics_pub.publish(diagnostic_array(
            report, name, rt.backend, self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ parameters and services
    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate all changes at once; refuse with the reason and change nothing, or apply next tick."""
        changes = {p.name: p.value for p in parameters if p.name in SPECS}  # use_sim_time etc. pass through
        if not changes:
            return SetParametersResult(successful=True)
        try:
            rt = self.runtime
            if rt is None:  # unconfigured: types and ranges now, cross-parameter rules at configure
                for name, value in changes.items():
                    coerce(SPECS[name], value)
            else:
                rt.apply(changes)  # the control thread reads the new period before its next wait
        except ParameterError as exc:
            # rclpy has already retyped the descriptors of dynamically typed parameters to the refused
            # value's type; put them back so that `ros2 param describe` shows that nothing changed
            for name in changes:
                self.describe_parameter(name).type = self.get_parameter(name).type_.value
            return SetParametersResult(successful=False, reason=str(exc))
        self._values.update(changes)
        return SetParametersResult(successful=True)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        result = self.set_parameters([Parameter("enabled", value=bool(request.data))])[0]
        response.success = result.successful
        response.message = ("enabled" if request.data else "disabled: holding") if result.successful else result.reason
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.runtime is None:
            response.success, response.message = False, "not configured"
            return response
        self.runtime.loop.request_reset()
        response.success, response.message = True, "new episode: action queue and in-flight inference dropped"
        return response


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run act_policy act_policy_node``; Ctrl-C (SIGINT) or SIGTERM stop it cleanly.

    The signals only set an event here instead of going to rclpy's handler, which shuts the context down
    while the executor or the control thread may still be using it (rclpy#398: a "failed to initialize
    wait set" traceback, or ``RCLError: publisher's context is invalid`` from a tick); Ctrl-C under
    ``ros2 launch`` also arrives twice (the terminal signals the process group, launch forwards it), and
    a KeyboardInterrupt would abort the cleanup half-way. Shutdown order: the executor stops (no callback
    runs any more), the control thread stops, the policy and the node are released, rclpy shuts down.
    The process then ends with ``os._exit``: tearing down the interpreter with torch and ONNX Runtime
    loaded took 4–7 s, and it would also put the signals back to their default action.
    """
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    node = ActPolicyNode()
    # single-threaded: rclpy 7.1's MultiThreadedExecutor rebuilds its wait set in Python in a loop while a
    # callback is in progress, the node's largest GIL holder (docs/ros.md, "Scheduling design")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name="act_policy-executor", daemon=True)
    spinner.start()
    while spinner.is_alive() and not stop.wait(0.5):  # spin() only returns on its own after an error
        pass
    executor.shutdown()
    spinner.join()
    # rclpy 7.1 (Jazzy): Executor.shutdown() does not wait for a running callback; the join above does
    node.release_runtime(SHUTDOWN_INFERENCE_WAIT_S)  # stops the control thread before anything is destroyed
    node.destroy_node()
    rclpy.try_shutdown()
    if not stop.is_set():
        print("act_policy_node: the executor stopped unexpectedly (its error is above)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if stop.is_set() else 1)


if __name__ == "__main__":
    main()

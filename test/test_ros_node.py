"""The rclpy lifecycle node against the ROS 2 test doubles in test/fake_ros (CI has no ROS).

The end-to-end test streams fake camera and joint messages through the node while the backend
is held inside ``infer`` for several control ticks, and checks from the published messages
alone that ticks kept completing and that every fresh command is the chunk row predicted for
the step it was sent at.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import ros_fakes
from conftest import FallenBackBackend

from act_policy.backends.base import Backend
from act_policy.core.policy import Policy

ros_fakes.install_interface_module()

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

import act_policy.ros.node as node_module  # noqa: E402 - needs the fakes installed

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
BASE_PARAMS = {"model_path": "/checkpoints/so101", "joint_names": JOINTS, "camera_topics": ["front=/camera/image_raw"],
               "command_topic": "/forward_position_controller/commands"}


class GatedBackend(Backend):
    """The real tiny torch backend, but ``infer`` waits until the test opens ``gate``: a slow backend."""

    name = "gated"

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.artifacts, inner.options)
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def infer(self, inputs):
        self.calls += 1
        assert self.gate.wait(30), "the test never opened the gate"
        return self.inner.infer(inputs)


@pytest.fixture
def backend(tiny_torch_backend):
    return GatedBackend(tiny_torch_backend[1])


@pytest.fixture
def make_node(monkeypatch, tiny_torch_backend, backend):
    tiny_artifacts = tiny_torch_backend[0]
    nodes = []

    def make(**params):
        values = {**BASE_PARAMS, **params}
        monkeypatch.setattr(node_module, "load_node_policy", lambda settings: Policy(tiny_artifacts, backend))
        n = node_module.ActPolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        nodes.append(n)
        return n

    yield make
    backend.gate.set()
    for n in nodes:
        n.release_runtime()


def topic(node, name):
    matches = [e for e in (*node.publishers, *node.subscriptions) if e.topic_name == name]
    assert len(matches) == 1, f"{name}: {[e.topic_name for e in (*node.publishers, *node.subscriptions)]}"
    return matches[0]


def image(height=64, width=80, value=0):
    return Image(height=height, width=width, encoding="rgb8", step=width * 3,
                 data=bytes([value]) * (height * width * 3))


def joints(positions, names=JOINTS):
    return JointState(name=list(names), position=[float(p) for p in positions])


def settle(node):
    for _ in range(5000):
        if not node.runtime.loop.worker.busy:
            return
        time.sleep(0.002)
    raise AssertionError("inference did not finish")


def active(make_node, **params):
    n = make_node(**params)
    assert n.trigger_configure() is TransitionCallbackReturn.SUCCESS, n.get_logger().records
    assert n.trigger_activate() is TransitionCallbackReturn.SUCCESS
    return n


# --------------------------------------------------------------------------- parameters
def test_a_ros2_param_dump_with_unset_arrays_configures_again(make_node):
    # `ros2 param dump` writes unset arrays as `null`, which rcl's YAML parser hands back as the string "null"
    n = make_node(joint_scale="null", joint_offset="null", joint_lower_limits="null")
    assert n.trigger_configure() is TransitionCallbackReturn.SUCCESS, n.get_logger().records
    assert n.runtime.settings["joint_scale"] == () and n.runtime.settings["joint_lower_limits"] == ()


def test_every_table_parameter_is_declared_with_its_descriptor(make_node):
    n = make_node()
    for spec in node_module.PARAMETERS:
        d = n.describe_parameter(spec.name)
        assert d.read_only == spec.read_only and spec.description in d.description
        if spec.type.value == "integer":
            assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (spec.min, spec.max)
        if spec.type.value == "double":
            assert d.dynamic_typing and d.floating_point_range[0].to_value == spec.max
    assert n.get_parameter("joint_names").value == JOINTS
    assert n.get_parameter("joint_lower_limits").value is None  # empty arrays are declared unset


def test_ros2_param_set_with_an_integer_for_a_double_works_and_retimes_the_control_loop(make_node):
    n = active(make_node)
    [result] = n.set_parameters([Parameter("control_rate_hz", value=15)])  # what `ros2 param set ... 15` sends
    assert result.successful, result.reason
    assert n.runtime.settings["control_rate_hz"] == 15.0
    assert n._control_timer.timer_period_ns == int(1e9 / 15)
    stored = n.get_parameter("control_rate_hz")  # `ros2 param get` shows the declared type
    assert stored.type_ is Parameter.Type.DOUBLE and stored.value == 15.0
    assert n.describe_parameter("control_rate_hz").type == Parameter.Type.DOUBLE.value


def test_ros2_param_set_with_integers_for_a_double_array_stores_doubles(make_node):
    n = active(make_node)
    assert n.set_parameters([Parameter("max_joint_step", value=[1])])[0].successful
    assert n.get_parameter("max_joint_step").type_ is Parameter.Type.DOUBLE_ARRAY
    assert n.runtime.settings["max_joint_step"] == (1.0,)


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("control_rate_hz", "fast", "control_rate_hz: expected a finite number"),
    ("control_rate_hz", 5000, "Parameter control_rate_hz out of range"),  # int: made a double, so rclpy's range
    ("control_rate_hz", 5000.0, "Parameter control_rate_hz out of range"),  # double: rclpy's own range check
    ("n_action_steps", 11, "n_action_steps: expected at most chunk_size=10"),
    ("backend", "cpu_int8", "Trying to set a read-only parameter: backend."),
])
def test_invalid_values_are_refused_with_a_reason_and_change_nothing(make_node, name, value, reason):
    n = active(make_node)
    before = dict(n.runtime.settings)
    before_type = n.describe_parameter(name).type
    [result] = n.set_parameters([Parameter(name, value=value)])
    assert not result.successful and reason in result.reason
    assert dict(n.runtime.settings) == before
    assert n.describe_parameter(name).type == before_type  # rclpy retypes dynamic parameters; the node undoes it


def test_a_set_of_changes_is_applied_all_or_nothing(make_node):
    n = active(make_node)
    result = n.set_parameters_atomically([Parameter("control_rate_hz", value=20.0),
                                          Parameter("max_joint_step", value=[0.1, 0.2])])
    assert not result.successful and "max_joint_step: expected 1 or 6 values" in result.reason
    assert n.runtime.settings["control_rate_hz"] == 30.0 and n.get_parameter("control_rate_hz").value == 30.0
    assert n.set_parameters_atomically([Parameter("control_rate_hz", value=20.0),
                                        Parameter("max_joint_step", value=[0.1])]).successful
    assert n.runtime.settings["max_joint_step"] == (0.1,)


def test_parameters_of_rclpy_itself_pass_through(make_node):
    n = make_node()
    assert n.set_parameters([Parameter("use_sim_time", value=True)])[0].successful


# --------------------------------------------------------------------------- lifecycle
def test_configure_failures_are_logged_and_leave_the_node_unconfigured(make_node):
    n = make_node(joint_names=["only_one"])
    assert n.trigger_configure() is TransitionCallbackReturn.FAILURE
    errors = [m for level, m in n.get_logger().records if level == "error"]
    assert errors and "joint_names: the policy has 6 action dimensions" in errors[0]
    assert n.current_state.label == "unconfigured" and n.runtime is None and not list(n.timers)


def test_unexpected_errors_in_configure_are_logged_not_swallowed(make_node, monkeypatch):
    n = make_node()
    monkeypatch.setattr(node_module, "build_runtime", lambda *a, **k: 1 / 0)
    assert n.trigger_configure() is TransitionCallbackReturn.ERROR
    assert any("ZeroDivisionError" in m for level, m in n.get_logger().records if level == "error")


def test_configure_creates_the_interfaces_with_sensor_qos(make_node):
    n = make_node(camera_topics=["front=/cam/image_raw/compressed"], command_type="joint_trajectory",
                  command_topic="/arm_controller/joint_trajectory")
    assert n.trigger_configure() is TransitionCallbackReturn.SUCCESS
    cam = topic(n, "/cam/image_raw/compressed")
    assert cam.msg_type is CompressedImage and cam.qos_profile.reliability is ReliabilityPolicy.BEST_EFFORT
    assert topic(n, "/joint_states").msg_type is JointState
    assert topic(n, "/arm_controller/joint_trajectory").msg_type is JointTrajectory
    assert topic(n, "/act_policy/action_chunk").msg_type is Float64MultiArray
    assert topic(n, "/act_policy/latency").msg_type.__name__ == "InferenceLatency"
    assert topic(n, "/diagnostics").msg_type is DiagnosticArray
    assert {t.clock.clock_type.name for t in n.timers} == {"STEADY_TIME"}
    control, diagnostics = n.timers  # statistics are never read while a tick writes them
    assert control.callback_group is diagnostics.callback_group
    assert type(cam.callback_group).__name__ == "ReentrantCallbackGroup"
    assert cam.callback_group is not control.callback_group
    assert n.trigger_cleanup() is TransitionCallbackReturn.SUCCESS
    assert not list(n.timers) and not list(n.subscriptions) and n.runtime is None
    assert [p.topic_name for p in n.publishers] == ["/parameter_events"]  # rclpy's own entities survive


def test_configure_logs_the_schedule_it_runs_and_where_each_value_comes_from(make_node):
    n = active(make_node, chunk_aggregation="blend", blend_steps=6, temporal_ensemble_coeff=0.2)
    info = [m for level, m in n.get_logger().records if level == "info" and m.startswith("configured:")]
    assert info and ("schedule mode async (checkpoint); n_action_steps 4 (checkpoint); temporal_ensemble_coeff "
                     "0.2 (parameter); chunk_aggregation blend over 6 steps") in info[0]


# --------------------------------------------------------------------------- end to end
def test_end_to_end_slow_backend_never_blocks_the_tick_and_no_stale_command_is_sent(make_node, backend):
    n = active(make_node, chunk_aggregation="latest")  # each command is then exactly a row of the latest chunk
    cam, js = topic(n, "/camera/image_raw"), topic(n, "/joint_states")
    commands = topic(n, "/forward_position_controller/commands").published
    chunks, latency = topic(n, "/act_policy/action_chunk").published, topic(n, "/act_policy/latency").published
    timer = n._control_timer
    latest: dict[str, object] = {}
    checked = held = 0

    def tick(i: int) -> None:
        nonlocal checked, held
        cam.deliver(image(value=i % 256))
        js.deliver(joints(np.linspace(-0.5, 0.5, 6) + 0.01 * i))
        before = (len(commands), len(chunks))
        timer.fire()
        step = n.runtime.loop.step - 1
        if len(chunks) > before[1]:
            latest["chunk"] = np.asarray(chunks[-1].data).reshape(10, 6)
            latest["obs_step"] = latency[-1].observation_step
        if len(commands) > before[0]:
            sent = np.asarray(commands[-1].data)
            if n.runtime.loop.last_hold is None:  # a fresh action: must be the row predicted for this step
                row = step - latest["obs_step"]
                assert 0 < row < 10 and np.allclose(sent, latest["chunk"][row]), (step, latest["obs_step"])
                checked += 1
            else:  # holding re-sends the last command
                assert np.array_equal(sent, np.asarray(commands[-2].data))
                held += 1

    backend.gate.clear()  # inference now takes longer than any number of control periods
    for i in range(6):
        tick(i)
    assert n.runtime.loop.worker.busy and not backend.gate.is_set()  # six ticks completed mid-inference
    assert not commands and n.runtime.loop.counters.holds["STARVED"] == 6
    backend.gate.set()
    settle(n)
    tick(6)
    assert latency[-1].skipped_actions == 6 and latency[-1].observation_step == 0  # rows 0..5 were due already
    assert latency[-1].inference_ms > 0 and latency[-1].backend == "gated"
    for i in range(7, 60):
        if i % 4 == 0:
            settle(n)
        tick(i)
    assert checked >= 20 and len(latency) >= 5
    n._on_diagnostics()
    status = topic(n, "/diagnostics").published[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["backend"] == "gated" and int(values["commands sent"]) == checked
    assert status.level in (DiagnosticStatus.OK, DiagnosticStatus.WARN)


def test_enable_service_holds_and_reset_clears_the_queue(make_node):
    n = active(make_node)
    cam, js = topic(n, "/camera/image_raw"), topic(n, "/joint_states")
    commands = topic(n, "/forward_position_controller/commands").published
    enable = next(s for s in n.services if s.srv_name == "/act_policy/enable")
    reset = next(s for s in n.services if s.srv_name == "/act_policy/reset")
    for _ in range(40):
        cam.deliver(image())
        js.deliver(joints([0.0] * 6))
        n._control_timer.fire()
        settle(n)
        if commands:
            break
    assert commands
    off = enable.call(SetBool.Request(data=False))
    assert off.success and n.get_parameter("enabled").value is False
    n._control_timer.fire()
    assert n.runtime.loop.last_hold[0].name == "DISABLED"
    assert np.array_equal(commands[-1].data, commands[-2].data)
    assert reset.call(Trigger.Request()).success
    assert enable.call(SetBool.Request(data=True)).success


def test_a_hold_is_logged_once_when_it_starts_not_every_tick(make_node):
    n = active(make_node, max_image_age_ms=1.0, max_joint_state_age_ms=1.0)
    topic(n, "/camera/image_raw").deliver(image())
    topic(n, "/joint_states").deliver(joints([0.0] * 6))
    for _ in range(5):  # the observations age between ticks, so the hold's details differ every tick
        time.sleep(0.003)
        n._control_timer.fire()
    stale = [m for level, m in n.get_logger().records if level == "warning" and "observation too old" in m]
    assert len(stale) == 1 and "observation.images.front" in stale[0]
    assert n.set_parameters([Parameter("max_image_age_ms", value=60000.0)])[0].successful
    n._control_timer.fire()  # now only the joint states are stale: that is news
    stale = [m for level, m in n.get_logger().records if level == "warning" and "observation too old" in m]
    assert len(stale) == 2 and "observation.images.front" not in stale[1] and "joint_states" in stale[1]


def test_a_backend_fallback_is_logged_as_a_warning_at_configure(make_node, monkeypatch, tiny_torch_backend):
    artifacts, backend = tiny_torch_backend
    n = make_node()
    monkeypatch.setattr(node_module, "load_node_policy", lambda settings: Policy(artifacts, FallenBackBackend(backend)))
    assert n.trigger_configure() is TransitionCallbackReturn.SUCCESS
    warnings = [m for level, m in n.get_logger().records if level == "warning"]
    assert "backend hailo (fallback cpu_fp32): running on fallback cpu_fp32: no Hailo device found" in warnings


def test_deactivated_node_publishes_no_commands(make_node):
    n = active(make_node)
    assert n.trigger_deactivate() is TransitionCallbackReturn.SUCCESS
    cam, js = topic(n, "/camera/image_raw"), topic(n, "/joint_states")
    for _ in range(5):
        cam.deliver(image())
        js.deliver(joints([0.0] * 6))
        n._control_timer.fire()
    assert not topic(n, "/forward_position_controller/commands").published
    assert n.runtime.loop.last_hold[0].name == "INACTIVE"


def test_bad_inputs_are_reported_by_name_and_a_failing_tick_does_not_escape(make_node, monkeypatch):
    n = active(make_node)
    topic(n, "/joint_states").deliver(joints([0.0, float("nan")], names=JOINTS[:2]))
    assert any("non-finite position for joint(s) shoulder_lift" in m for _, m in n.get_logger().records)
    monkeypatch.setattr(n.runtime, "tick", lambda: 1 / 0)
    n._control_timer.fire()  # must not raise into the executor
    assert any("control tick failed" in m for level, m in n.get_logger().records if level == "error")


@pytest.mark.parametrize("command_type", ["joint_state", "joint_trajectory"])
def test_other_command_types_carry_joint_names(make_node, command_type):
    n = active(make_node, command_type=command_type, command_topic="/cmd", control_rate_hz=20)
    cam, js = topic(n, "/camera/image_raw"), topic(n, "/joint_states")
    for _ in range(40):
        cam.deliver(image())
        js.deliver(joints([0.0] * 6))
        n._control_timer.fire()
        settle(n)
        if topic(n, "/cmd").published:
            break
    msg = topic(n, "/cmd").published[-1]
    if command_type == "joint_state":
        assert list(msg.name) == JOINTS and len(msg.position) == 6
    else:
        assert list(msg.joint_names) == JOINTS and len(msg.points) == 1
        assert msg.points[0].time_from_start.nanosec == 50_000_000  # one control period at 20 Hz


def test_main_spins_a_multithreaded_executor_and_cleans_up(monkeypatch):
    import rclpy

    class StubNode:
        released = destroyed = False

        def release_runtime(self):
            self.released = True

        def destroy_node(self):
            self.destroyed = True

    stub = StubNode()
    monkeypatch.setattr(node_module, "ActPolicyNode", lambda: stub)
    node_module.main([])
    assert stub.released and stub.destroyed and not rclpy.ok()

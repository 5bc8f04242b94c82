"""The installed node commanding through real DDS: services, watchdog, joint matching, outputs, backends.

Inputs come from ``drivers`` (the test's own publishers); everything asserted is what a robot, an
operator or a monitoring tool would receive over ROS.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
from act_policy.msg import InferenceLatency
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from .ros_harness import JOINTS, diagnostic_values


def active(ros, start_node, **params):
    node = start_node(**params)
    assert ros.change_state("configure") and ros.change_state("activate")
    return node


def all_finite(commands) -> bool:
    return all(math.isfinite(v) for msg in commands.messages for v in msg.data)


def commanding(message: str) -> bool:
    """A report of a node that sends policy actions (a loaded machine may add warnings, e.g. a dry queue)."""
    return "holding:" not in message


def reported(diagnostics, what: str, check) -> tuple[int, str, dict[str, str]]:
    """The first /diagnostics report from now on for which ``check(level, message, values)`` holds."""
    msg = diagnostics.wait(what, lambda m: check(*diagnostic_values(m)), after=len(diagnostics))
    return diagnostic_values(msg)


def test_enable_and_reset_services_hold_and_start_a_new_episode(ros, start_node, drivers):
    active(ros, start_node)
    commands = ros.subscribe(Float64MultiArray, "/commands")
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    reported(diagnostics, "commanding", lambda _, message, __: commanding(message))

    off = ros.call(SetBool, "/act_policy/enable", SetBool.Request(data=False))
    assert off.success and off.message == "disabled: holding"
    assert ros.get_parameters("enabled") == {"enabled": False}  # the service and the parameter are one switch
    level, _, _ = reported(diagnostics, "holding: disabled",
                           lambda _, message, __: message.startswith("holding: disabled"))
    assert level in (0, 1)  # asked for: not a fault (WARN only if a loaded machine starved the queue)
    held_from = len(commands)
    reported(diagnostics, "a second report while disabled", lambda *_: True)
    held = [tuple(m.data) for m in commands.messages[held_from:]]
    assert held and len(set(held)) == 1  # holding re-sends the last safe command, unchanged

    on = ros.call(SetBool, "/act_policy/enable", SetBool.Request(data=True))
    assert on.success and on.message == "enabled"
    reported(diagnostics, "commanding again", lambda _, message, __: commanding(message))

    reset = ros.call(Trigger, "/act_policy/reset", Trigger.Request())
    assert reset.success and "new episode" in reset.message
    after_reset = len(commands)
    commands.wait("commands after the reset", after=after_reset)
    assert all_finite(commands)


def test_reset_is_refused_while_unconfigured(ros, start_node):
    start_node()
    reset = ros.call(Trigger, "/act_policy/reset", Trigger.Request())
    assert not reset.success and reset.message == "not configured"


@pytest.mark.parametrize(("stream", "source"), [("camera", "observation.images.front"), ("joints", "joint_states")])
def test_watchdog_holds_on_a_stopped_input_says_why_and_recovers(ros, start_node, drivers, stream, source):
    node = active(ros, start_node, max_image_age_ms=1000.0, max_joint_state_age_ms=1000.0)
    commands = ros.subscribe(Float64MultiArray, "/commands")
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    reported(diagnostics, "commanding", lambda _, message, __: commanding(message))

    setattr(drivers.streams, stream, False)
    level, _, _ = reported(diagnostics, f"a hold naming {source}",
                           lambda _, message, __: "observation too old" in message and source in message)
    assert level == 2  # ERROR: the arm is not following the policy
    held_from = len(commands)
    commands.wait("held commands over many ticks", lambda _: len(commands) - held_from >= 20, after=held_from)
    held = [tuple(m.data) for m in commands.messages[held_from:]]
    assert len(set(held)) == 1, "a stale observation must hold the last safe command"
    # logged when the hold starts or what it is about changes (e.g. the other input also late for a moment on
    # a busy machine), not once per tick (20+ here): consecutive lines never name the same late inputs
    warnings = [line for line in node.lines("WARN") if "observation too old" in line]
    about = [frozenset(re.findall(r"([\w./]+) \d+ ms >", line)) for line in warnings]
    assert any(source in line for line in warnings), node.output
    assert all(a != b for a, b in itertools.pairwise(about)), node.output

    setattr(drivers.streams, stream, True)
    reported(diagnostics, "recovery", lambda _, message, __: commanding(message))
    commands.wait("a fresh command after recovery", lambda m: tuple(m.data) != held[0], after=len(commands))
    assert all_finite(commands)


def test_joint_states_in_another_order_are_matched_by_name(ros, start_node, drivers, tmp_path):
    drivers.streams.reverse_joint_order = True
    record_dir = tmp_path / "observations"
    active(ros, start_node, record_dir=str(record_dir))
    recorded = ros.subscribe(DiagnosticArray, "/diagnostics")
    reported(recorded, "a recorded observation", lambda _, __, values: " 0 written" not in values["recording"])
    [first, *_] = sorted(record_dir.glob("*.npz"))
    with np.load(first) as data:
        state = data["observation.state"]
    assert np.allclose(state, [drivers.positions[name] for name in JOINTS])  # training order, not message order


def test_a_non_finite_joint_state_is_rejected_by_name_and_nothing_non_finite_is_sent(ros, start_node, drivers):
    node = active(ros, start_node)
    commands = ros.subscribe(Float64MultiArray, "/commands")
    commands.wait("a first command")
    drivers.positions["elbow_flex"] = float("nan")
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    _, _, values = reported(diagnostics, "the rejected joint state in /diagnostics",
                            lambda _, __, values: "error /joint_states" in values)
    assert "non-finite position for joint(s) elbow_flex" in values["error /joint_states"]
    assert any("elbow_flex" in line for line in node.lines("WARN")), node.output
    reported(diagnostics, "a hold on the rejected joint state (before its last good one is stale)",
             lambda _, message, __: "holding: observation rejected (/joint_states: non-finite" in message)
    assert all_finite(commands)


def test_diagnostics_and_latency_report_what_the_node_does(ros, start_node, drivers):
    active(ros, start_node)
    latency = ros.subscribe(InferenceLatency, "/act_policy/latency")
    chunks = ros.subscribe(Float64MultiArray, "/act_policy/action_chunk")
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    latency.wait("three inferences", lambda _: len(latency) >= 3)
    first, second, third = latency.messages[:3]
    assert first.backend == "cpu_fp32" and first.sequence < second.sequence < third.sequence
    for msg in (first, second, third):
        assert 0 < msg.inference_ms <= msg.total_ms and msg.preprocess_ms >= 0 and msg.postprocess_ms >= 0
        assert msg.observation_age_ms >= 0 and msg.queue_depth >= 0 and msg.skipped_actions >= 0
    chunk = chunks.wait("an action chunk")
    assert [(d.label, d.size) for d in chunk.layout.dim] == [("step", 10), ("joint", 6)] and len(chunk.data) == 60

    level, message, values = reported(diagnostics, "a report after inferences",
                                      lambda _, __, values: int(values["inferences"]) >= 3)
    assert level in (0, 1) and commanding(message)  # OK, or WARN when a loaded machine starves the queue
    assert values["backend"] == "cpu_fp32" and values["control rate target (Hz)"] == "30"
    assert int(values["commands sent"]) > 0 and values["schedule mode"] == "async (checkpoint)"
    assert set(values) >= {"total ms p50/p95/max", "inference ms p50/p95/max", "age joint_states (ms)",
                           "age observation.images.front (ms)", "rate /joint_states (Hz)", "control overruns"}
    p50, p95, worst = (float(v) for v in values["total ms p50/p95/max"].split("/"))
    assert 0 < p50 <= p95 <= worst


@pytest.mark.parametrize(("command_type", "msg_type"), [("float64_multi_array", Float64MultiArray),
                                                        ("joint_state", JointState),
                                                        ("joint_trajectory", JointTrajectory)])
def test_each_command_type_is_published_as_its_message(ros, start_node, drivers, command_type, msg_type):
    commands = ros.subscribe(msg_type, "/arm/command")
    active(ros, start_node, command_type=command_type, command_topic="/arm/command", control_rate_hz=20.0)
    msg = commands.wait(f"a {msg_type.__name__} command")
    if command_type == "float64_multi_array":
        values = msg.data
    elif command_type == "joint_state":
        assert list(msg.name) == JOINTS
        values = msg.position
    else:
        assert list(msg.joint_names) == JOINTS and len(msg.points) == 1
        assert (msg.points[0].time_from_start.sec, msg.points[0].time_from_start.nanosec) == (0, 50_000_000)
        values = msg.points[0].positions
    assert len(values) == 6 and all(math.isfinite(v) for v in values)


def test_hailo_without_hailort_falls_back_and_says_so_in_diagnostics(ros, start_node, drivers):
    node = active(ros, start_node, backend="hailo", backend_options=json.dumps({"fallback_backend": "cpu_fp32"}))
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    level, message, values = reported(diagnostics, "a report from the fallback", lambda *_: True)
    assert values["backend"] == "hailo (fallback cpu_fp32)"
    assert level >= 1 and "running on fallback cpu_fp32" in message and "hailo_platform" in message
    warnings = [line for line in node.lines("WARN") if "fallback" in line]
    assert warnings and "hailo_platform" in warnings[0], node.output
    ros.subscribe(Float64MultiArray, "/commands").wait("commands from the fallback backend")

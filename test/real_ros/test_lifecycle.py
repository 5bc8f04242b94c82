"""Lifecycle of the installed node through the real ``/act_policy/change_state`` and ``get_state`` services."""

from __future__ import annotations

import os
import re

from diagnostic_msgs.msg import DiagnosticArray
from proc_helpers import command_line, process_gone, thread_nice_values, thread_slices_ns
from rclpy.qos import ReliabilityPolicy
from std_msgs.msg import Float64MultiArray

from .ros_harness import diagnostic_values, wait_until


def holding_because(diagnostics, text: str, after: int = 0):
    return diagnostics.wait(f"/diagnostics saying {text!r}", lambda m: text in diagnostic_values(m)[1], after)


def test_every_transition_works_and_only_an_active_node_commands(ros, start_node, drivers):
    node = start_node()
    commands = ros.subscribe(Float64MultiArray, "/commands")
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    assert ros.state() == "unconfigured"

    assert ros.change_state("configure") and ros.state() == "inactive"
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))  # two reports: ticks ran
    assert not commands.messages

    assert ros.change_state("activate") and ros.state() == "active"
    commands.wait("a command from the active node")

    assert ros.change_state("deactivate") and ros.state() == "inactive"
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    sent = len(commands)  # what was in flight before the report has arrived by now
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    assert len(commands) == sent

    assert ros.change_state("cleanup") and ros.state() == "unconfigured"
    assert ros.change_state("configure") and ros.change_state("activate")  # configures again after a cleanup
    commands.wait("a command after cleanup and a second configure", after=sent)
    assert ros.change_state("shutdown") and ros.state() == "finalized"
    assert node.running()  # finalized is a state of the node, not an exit
    assert not node.lines("ERROR"), node.output


def test_a_configuration_that_does_not_fit_the_policy_fails_configure_with_the_parameter_named(ros, start_node):
    node = start_node(joint_names=["only_one"])
    assert not ros.change_state("configure")
    assert ros.state() == "unconfigured"
    errors = node.lines("ERROR")
    assert errors and "joint_names: the policy has 6 action dimensions" in errors[0], node.output
    assert ros.change_state("shutdown") and ros.state() == "finalized"


def test_an_inactive_node_is_a_normal_state_not_a_warning(ros, start_node):
    node = start_node()
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    assert ros.change_state("configure")
    level, message, _ = diagnostic_values(holding_because(diagnostics, "holding: node not active"))
    # OK in /diagnostics, unless the machine itself earns a warning (e.g. ticks missed under load): then the
    # message names it after the hold
    assert level == 0 or message != "holding: node not active", message
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    assert not [line for line in node.lines("WARN") if "not active" in line], node.output  # ... and in the log
    assert ros.change_state("activate") and ros.change_state("deactivate")
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    assert not [line for line in node.lines("WARN") if "not active" in line], node.output


def messages(node) -> list[str]:
    """The node's log messages so far, in order, without severity and logger name."""
    return [line.split("]: ", 1)[1] for line in node.output.splitlines() if line.startswith("[") and "]: " in line]


def test_the_log_tells_the_lifecycle_in_the_order_it_happens(ros, start_node, drivers):
    node = start_node()
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    assert ros.change_state("configure")
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))  # ticks ran while inactive
    assert ros.change_state("activate")
    wait_until(lambda: "commanding" in messages(node), "the node to log that it commands")
    assert ros.change_state("deactivate")
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    states = ("configured:", "active", "inactive:", "holding:", "commanding")
    said = [m for m in messages(node) if m.startswith(states)]
    # configure's summary comes first (its control thread ticks before it is written); the lifecycle's own hold
    # is said by the transitions, never again by the ticks; what the ticks log follows the activation
    assert said[0].startswith("configured:") and said[1] == "active", node.output
    assert said[0].endswith("; inactive until `ros2 lifecycle set /act_policy activate`"), said[0]
    assert "commanding" in said[2:-1] and said[-1] == "inactive: holding, no commands are sent", node.output
    assert not [m for m in said if "node not active" in m], node.output


def inference_process(node) -> int | None:
    """The pid of the child process the node's configure log line names, once it is logged."""
    found = [re.search(r"'inference_process': (\d+)", line) for line in node.lines("INFO") if "configured:" in line]
    return int(found[-1].group(1)) if found and found[-1] else None


def test_inference_runs_in_a_niced_child_process_that_ends_with_the_configuration(ros, start_node):
    node = start_node(inference_nice=5)
    assert ros.change_state("configure")
    child = wait_until(lambda: inference_process(node), "the configure log line naming the inference process")
    assert "act_policy.runtime.inference_process" in " ".join(command_line(child))
    node_nice = thread_nice_values(node.process.pid)[str(node.process.pid)]
    assert set(thread_nice_values(child).values()) == {min(19, node_nice + 5)}
    assert os.getsid(child) == child != os.getsid(node.process.pid)
    if not any("scheduling slice not set" in line for line in node.lines("WARN")):  # Linux >= 6.12
        # the executor thread that configured, and the handover worker and control thread it started; not the
        # threads started before (rclpy's, the middleware's) nor the recorder, a background writer
        assert list(thread_slices_ns(node.process.pid).values()).count(300_000) == 3

    assert ros.change_state("cleanup")
    wait_until(lambda: process_gone(child), "the inference process to end at cleanup")
    n_configured = len([line for line in node.lines("INFO") if "configured:" in line])
    assert ros.change_state("configure")
    wait_until(lambda: len([line for line in node.lines("INFO") if "configured:" in line]) > n_configured,
               "the second configure log line")
    second = inference_process(node)
    assert second != child and not process_gone(second)

    assert node.interrupt() == 0  # Ctrl-C of the node's process group; the child, in its own session, ends with it
    wait_until(lambda: process_gone(second), "the inference process to end with the node")


def endpoints(ros, topic: str) -> list:
    """The act_policy node's publishers and subscriptions on ``topic``, as the ROS graph shows them."""
    infos = [*ros.node.get_publishers_info_by_topic(topic), *ros.node.get_subscriptions_info_by_topic(topic)]
    return [i for i in infos if i.node_name == "act_policy"]


def test_configure_creates_the_topics_with_their_types_and_qos_and_cleanup_removes_them(ros, start_node):
    start_node(camera_topics=["front=/cam/image_raw/compressed"], command_type="joint_trajectory",
               command_topic="/arm_controller/joint_trajectory")
    assert ros.change_state("configure")
    expected = {
        "/cam/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", "SUBSCRIPTION"),
        "/joint_states": ("sensor_msgs/msg/JointState", "SUBSCRIPTION"),
        "/arm_controller/joint_trajectory": ("trajectory_msgs/msg/JointTrajectory", "PUBLISHER"),
        "/act_policy/action_chunk": ("std_msgs/msg/Float64MultiArray", "PUBLISHER"),
        "/act_policy/latency": ("act_policy/msg/InferenceLatency", "PUBLISHER"),
        "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", "PUBLISHER"),
    }
    for topic, (type_name, kind) in expected.items():
        [info] = wait_until(lambda t=topic: endpoints(ros, t), f"{topic} in the ROS graph")
        assert (info.topic_type, info.endpoint_type.name) == (type_name, kind)
    for topic in ("/cam/image_raw/compressed", "/joint_states"):  # sensor data: keep up rather than queue
        assert endpoints(ros, topic)[0].qos_profile.reliability is ReliabilityPolicy.BEST_EFFORT

    assert ros.change_state("cleanup")
    wait_until(lambda: not any(endpoints(ros, topic) for topic in expected), "cleanup to remove every topic")
    assert ros.state() == "unconfigured"

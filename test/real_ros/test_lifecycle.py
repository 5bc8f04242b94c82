"""Lifecycle of the installed node through the real ``/act_policy/change_state`` and ``get_state`` services."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64MultiArray

from .ros_harness import diagnostic_values


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
    level, _, _ = diagnostic_values(holding_because(diagnostics, "holding: node not active"))
    assert level == 0  # OK in /diagnostics ...
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    assert not [line for line in node.lines("WARN") if "not active" in line], node.output  # ... and in the log
    assert ros.change_state("activate") and ros.change_state("deactivate")
    holding_because(diagnostics, "holding: node not active", after=len(diagnostics))
    assert not [line for line in node.lines("WARN") if "not active" in line], node.output

"""Live parameters through the real ``/act_policy/set_parameters`` and ``set_parameters_atomically`` services
(what ``ros2 param set`` and rqt use): applied at the next tick, or refused with the reason and nothing changed."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rcl_interfaces.srv import DescribeParameters

from act_policy.runtime.parameters import CHECKPOINT, PARAMETERS, ParamType

from .ros_harness import HANG_GUARD_S, JOINTS, diagnostic_values, wait_until


def configured(ros, start_node, **params):
    node = start_node(**params)
    assert ros.change_state("configure") and ros.change_state("activate")
    return node


def test_a_valid_value_is_applied_and_an_integer_is_accepted_for_a_double(ros, start_node):
    configured(ros, start_node)
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    [result] = ros.set_parameters({"control_rate_hz": 15})  # an INTEGER, as `ros2 param set ... 15` sends it
    assert result.successful, result.reason
    stored = ros.get_parameters("control_rate_hz")["control_rate_hz"]
    assert stored == 15.0 and isinstance(stored, float)  # `ros2 param get` shows the declared type
    diagnostics.wait("the new control rate in /diagnostics",
                     lambda m: diagnostic_values(m)[2]["control rate target (Hz)"] == "15")
    [result] = ros.set_parameters({"max_joint_step": [1, 2, 3, 4, 5, 6]})  # integers for a double array
    assert result.successful, result.reason
    assert ros.get_parameters("max_joint_step")["max_joint_step"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_invalid_values_are_refused_with_their_reason_and_change_nothing(ros, start_node):
    configured(ros, start_node)
    cases = [
        ("control_rate_hz", "fast", "control_rate_hz: expected a finite number"),
        ("control_rate_hz", 5000, "out of range"),  # an integer: made a double, then rclpy's range check
        ("control_rate_hz", -5.0, "out of range"),
        ("n_action_steps", 11, "n_action_steps: expected at most chunk_size=10"),  # needs the loaded policy
        ("max_joint_step", [0.1, 0.2], "max_joint_step: expected 1 or 6 values"),
        ("backend", "cpu_int8", "read-only"),
        ("model_path", "/elsewhere", "read-only"),
    ]
    names = sorted({name for name, _, _ in cases})
    before, types_before = ros.get_parameters(*names), described_types(ros, names)
    for name, value, reason in cases:
        [result] = ros.set_parameters({name: value})
        assert not result.successful, (name, value)
        assert reason in result.reason, (name, value, result.reason)
    assert ros.get_parameters(*names) == before
    assert described_types(ros, names) == types_before  # `ros2 param describe` shows no trace of a refusal


def described(ros, names: list[str]) -> list[ParameterDescriptor]:
    """What `ros2 param describe` shows."""
    request = DescribeParameters.Request(names=names)
    return list(ros.call(DescribeParameters, "/act_policy/describe_parameters", request).descriptors)


def described_types(ros, names: list[str]) -> list[int]:
    return [d.type for d in described(ros, names)]


def test_an_atomic_set_with_one_bad_value_is_refused_whole(ros, start_node):
    configured(ros, start_node)
    result = ros.set_parameters_atomically({"control_rate_hz": 20.0, "max_joint_step": [0.1, 0.2]})
    assert not result.successful and "max_joint_step: expected 1 or 6 values" in result.reason
    assert ros.get_parameters("control_rate_hz", "max_joint_step") == {"control_rate_hz": 30.0,
                                                                       "max_joint_step": None}
    result = ros.set_parameters_atomically({"control_rate_hz": 20.0, "max_joint_step": [0.1]})
    assert result.successful, result.reason
    assert ros.get_parameters("control_rate_hz", "max_joint_step") == {"control_rate_hz": 20.0,
                                                                       "max_joint_step": [0.1]}


def test_parameters_are_checked_before_configure_too(ros, start_node):
    start_node()  # unconfigured: types and ranges are checked now, rules that need the policy at configure
    [bad] = ros.set_parameters({"control_rate_hz": "fast"})
    assert not bad.successful and "control_rate_hz: expected a finite number" in bad.reason
    [good] = ros.set_parameters({"n_action_steps": 11})
    assert good.successful, good.reason
    assert not ros.change_state("configure")  # 11 > the tiny policy's chunk_size 10
    assert ros.state() == "unconfigured"


def test_every_table_parameter_is_declared_with_its_descriptor(ros, start_node):
    start_node()
    names = [spec.name for spec in PARAMETERS]
    response = ros.call(DescribeParameters, "/act_policy/describe_parameters", DescribeParameters.Request(names=names))
    for spec, d in zip(PARAMETERS, response.descriptors, strict=True):
        assert d.name == spec.name and d.read_only == spec.read_only and spec.description in d.description
        if spec.type is ParamType.INT and spec.min is not None:
            assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (spec.min, spec.max)
        if spec.type is ParamType.DOUBLE and spec.min is not None and not spec.from_checkpoint:
            assert d.dynamic_typing and (d.floating_point_range[0].from_value,
                                         d.floating_point_range[0].to_value) == (spec.min, spec.max)
    values = ros.get_parameters("joint_names", "joint_lower_limits")
    assert values == {"joint_names": JOINTS, "joint_lower_limits": None}  # empty arrays are declared unset


@pytest.mark.parametrize("spec", [s for s in PARAMETERS if s.from_checkpoint], ids=lambda s: s.name)
def test_a_double_defaulting_to_the_checkpoint_is_described_as_what_it_holds(ros, start_node, spec):
    """Declared with the string `checkpoint`: `ros2 param describe` shows the type of the value it holds, with
    no double range under "Type: string"; the constraints say both; a number is set, range-checked, and
    `checkpoint` set back."""
    configured(ros, start_node)
    [d] = described(ros, [spec.name])
    assert d.type == ParameterType.PARAMETER_STRING and not d.floating_point_range
    assert f"type double; range {spec.range_text()}" in d.additional_constraints
    assert "the type shown is string until a number is set" in d.additional_constraints
    assert ros.set_parameters({spec.name: 0.01})[0].successful  # `ros2 param set /act_policy NAME 0.01`
    assert ros.get_parameters(spec.name) == {spec.name: 0.01}
    assert described_types(ros, [spec.name]) == [ParameterType.PARAMETER_DOUBLE]
    [refused] = ros.set_parameters({spec.name: spec.max + 1})
    assert not refused.successful and f"expected a value in {spec.range_text()}" in refused.reason
    assert ros.set_parameters({spec.name: CHECKPOINT})[0].successful
    assert described_types(ros, [spec.name]) == [ParameterType.PARAMETER_STRING]


def test_a_params_file_written_by_ros2_param_dump_with_unset_arrays_configures(ros, start_node):
    # `ros2 param dump` writes unset arrays as null, which rcl's YAML parser hands over as the string "null"
    start_node(joint_scale=None, joint_offset=None, joint_lower_limits=None)
    assert ros.change_state("configure"), "a dumped params file must load again"


def test_parameters_of_rclpy_itself_pass_through(ros, start_node):
    configured(ros, start_node)
    [result] = ros.set_parameters({"use_sim_time": True})
    assert result.successful, result.reason
    assert ros.get_parameters("use_sim_time") == {"use_sim_time": True}



def test_the_ros2_param_cli_answers_while_the_control_thread_runs_real_time(ros, start_node, ros_process):
    """The Pi 5 files ask for SCHED_FIFO 40: `ros2 param` must still reach the node. With a running ros2
    daemon, as on a robot after the first `ros2` command; without one the CLI may give up on discovery
    before it sees any node ("Node not found" — real-time or not, docs/ros.md "Scheduling design")."""
    node = configured(ros, start_node, control_realtime_priority=40)
    if any("not made real-time" in line for line in node.lines("WARN")):
        pytest.skip("SCHED_FIFO is not permitted here (no CAP_SYS_NICE or rtprio limit)")

    def ros2(*args: str) -> str:
        cli = ros_process("ros2", *args)
        assert cli.process.wait(HANG_GUARD_S) == 0, cli.output
        return cli.output
    try:
        ros2("daemon", "start")  # else the first command would start it and itself look with a short-lived node
        wait_until(lambda: "/act_policy" in ros2("node", "list").split(), "the ros2 daemon to list /act_policy",
                   poll=0.5)
        for value in ("25.0", "30.0", "20.0"):
            # --timeout: a hang guard for a loaded machine; with the daemon the node is found at once
            assert "Set parameter successful" in ros2("param", "set", "--timeout", "30", "/act_policy",
                                                      "control_rate_hz", value)
            assert f"Double value is: {value}" in ros2("param", "get", "--timeout", "30", "/act_policy",
                                                       "control_rate_hz")
    finally:  # the daemon of this test's domain must not outlive it
        ros_process("ros2", "daemon", "stop").process.wait(HANG_GUARD_S)

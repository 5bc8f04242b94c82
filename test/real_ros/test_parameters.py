"""Live parameters through the real ``/act_policy/set_parameters`` and ``set_parameters_atomically`` services
(what ``ros2 param set`` and rqt use): applied at the next tick, or refused with the reason and nothing changed."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray

from .ros_harness import diagnostic_values


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
    before = ros.get_parameters(*names)
    for name, value, reason in cases:
        [result] = ros.set_parameters({name: value})
        assert not result.successful, (name, value)
        assert reason in result.reason, (name, value, result.reason)
    assert ros.get_parameters(*names) == before


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

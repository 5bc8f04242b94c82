"""Command limits, step size, non-finite refusal, holding, and the watchdog's wording."""

from __future__ import annotations

import math

import numpy as np

from act_policy.runtime.safety import CommandGuard, Limits, stale_sources


def guard(**limits) -> CommandGuard:
    return CommandGuard(3, Limits.from_lists(3, limits.get("lower", ()), limits.get("upper", ()),
                                             limits.get("step", ())))


def test_limits_clamp_and_count_per_joint():
    g = guard(lower=[-1, -1, -1], upper=[1, 1, 1])
    assert g.filter(np.array([0.5, 2.0, -3.0]), None).tolist() == [0.5, 1.0, -1.0]
    assert g.clamp_count == 1 and g.clamped_joints.tolist() == [0, 1, 1]
    g.filter(np.array([0.0, 0.0, 0.0]), None)
    assert g.clamp_count == 1


def test_one_sided_limits_clamp_only_that_side():
    g = guard(upper=[1, 1, 1])
    assert g.filter(np.array([-5.0, 2.0, 0.5]), None).tolist() == [-5.0, 1.0, 0.5]


def test_first_step_is_bounded_from_the_measured_position_then_from_the_last_command():
    g = guard(step=[0.1])
    assert np.allclose(g.filter(np.array([1.0, 0.0, -1.0]), np.zeros(3)), [0.1, 0.0, -0.1])
    assert np.allclose(g.filter(np.array([1.0, 0.0, -1.0]), np.zeros(3)), [0.2, 0.0, -0.2])
    g.reset()
    assert np.allclose(g.filter(np.array([1.0, 0.0, -1.0]), np.full(3, 0.5)), [0.6, 0.4, 0.4])


def test_limits_win_over_the_step_bound():
    g = guard(lower=[-1, -1, -1], upper=[1, 1, 1], step=[0.1])
    assert g.filter(np.array([2.0, 0.0, 0.0]), np.array([1.5, 0.0, 0.0])).tolist() == [1.0, 0.0, 0.0]


def test_non_finite_targets_are_never_sent_and_hold_repeats_the_last_safe_command():
    g = guard()
    assert g.hold() is None
    g.filter(np.array([0.1, 0.2, 0.3]), None)
    for bad in (np.array([np.nan, 0, 0]), np.array([0, np.inf, 0]), np.zeros(2)):
        assert g.filter(bad, None) is None
    assert g.rejected_count == 3
    assert g.hold().tolist() == [0.1, 0.2, 0.3]


def test_stale_sources_name_the_input_and_the_limit():
    ages = {"observation.images.front": 812.4, "observation.images.wrist": math.inf, "joint_states": 150.0}
    assert stale_sources(ages, 500, 100) == ["observation.images.front 812 ms > 500 ms",
                                             "observation.images.wrist never received",
                                             "joint_states 150 ms > 100 ms"]
    assert stale_sources({"joint_states": 50.0}, 500, 100) == []

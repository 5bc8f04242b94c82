"""ROS ↔ policy joint units: one formula for the node and the readers of recorded data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from act_policy.core.joint_units import JointUnits, per_joint


def test_joint_units_convert_both_ways():
    deg = JointUnits([180 / math.pi, 100 / 1.5], [0.0, 0.0])  # degrees; gripper 0..1.5 rad → 0..100
    assert np.allclose(deg.to_policy([math.pi / 2, 0.75]), [90.0, 50.0])
    assert np.allclose(deg.to_ros([90.0, 100.0]), [math.pi / 2, 1.5])
    shifted = JointUnits([2.0], [-10.0])
    x = np.array([0.3])
    assert np.allclose(shifted.to_ros(shifted.to_policy(x)), x)
    with pytest.raises(ValueError, match="scale"):
        JointUnits([0.0], [0.0])


def test_node_parameters_give_identity_when_empty_and_broadcast_one_value():
    units = JointUnits.from_parameters([], [], 3)
    assert units.scale.tolist() == [1.0] * 3 and units.offset.tolist() == [0.0] * 3
    units = JointUnits.from_parameters([2.0], [1.0, 2.0, 3.0], 3)
    np.testing.assert_allclose(units.to_policy([1.0, 1.0, 1.0]), [3.0, 4.0, 5.0])


def test_a_per_joint_array_of_another_length_is_refused_by_name():
    assert per_joint([], 2, 0.5, "x") == (0.5, 0.5)
    with pytest.raises(ValueError, match=r"^--joint-scale: expected 1 or 3 values \(one per joint\), got 2$"):
        per_joint([1.0, 2.0], 3, 1.0, "--joint-scale")
    with pytest.raises(ValueError, match=r"^joint_offset: expected 1 or 3 values"):
        JointUnits.from_parameters([], [0.0, 0.0], 3)

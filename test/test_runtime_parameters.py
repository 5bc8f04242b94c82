"""The node's parameter table: types, ranges, cross-parameter rules, atomic changes, generated docs."""

from __future__ import annotations

from array import array  # how rclpy hands over a double array
from pathlib import Path

import pytest

from act_policy.runtime import parameters as P
from act_policy.runtime.parameters import ParameterError, PolicyContext, apply_changes, validate

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
CONTEXT = PolicyContext(chunk_size=100, n_action_steps=100, camera_features=("observation.images.front",),
                        action_dim=6)


def base(**overrides):
    values = {"model_path": "/m", "joint_names": JOINTS, "camera_topics": ["front=/cam/image_raw"]}
    values.update(overrides)
    return validate(values, CONTEXT)


def test_every_parameter_is_documented_typed_and_its_default_is_valid():
    for spec in P.PARAMETERS:
        assert spec.description, spec.name
        assert P.coerce(spec, spec.default) == spec.default, spec.name
        if spec.type in (P.ParamType.INT, P.ParamType.DOUBLE):
            assert spec.min is not None and spec.max is not None, spec.name
            assert spec.default == P.CHECKPOINT if spec.from_checkpoint else spec.min <= spec.default <= spec.max
    assert validate({}).keys() == {p.name for p in P.PARAMETERS}


def test_read_only_and_live_sets_match_the_issue():
    read_only = {p.name for p in P.PARAMETERS if p.read_only}
    assert {"backend", "model_path", "camera_topics", "joint_names"} <= read_only
    live = {p.name for p in P.PARAMETERS if not p.read_only}
    assert {"control_rate_hz", "refill_threshold", "temporal_ensemble_coeff", "n_action_steps", "max_joint_step",
            "joint_lower_limits", "joint_upper_limits", "max_image_age_ms", "max_joint_state_age_ms",
            "enabled", "chunk_aggregation", "blend_steps"} <= live


def test_integers_typed_by_users_are_accepted_for_doubles_and_double_arrays():
    s = apply_changes(base(), {"control_rate_hz": 15, "max_joint_step": [1]}, CONTEXT)
    assert s["control_rate_hz"] == 15.0 and isinstance(s["control_rate_hz"], float)
    assert s["max_joint_step"] == (1.0,)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"control_rate_hz": "fast"}, "control_rate_hz: expected a finite number"),
    ({"control_rate_hz": 0}, "control_rate_hz: expected a value in [0.5, 1000] Hz"),
    ({"control_rate_hz": float("nan")}, "control_rate_hz: expected a finite number"),
    ({"enabled": 1}, "enabled: expected true or false"),
    ({"n_action_steps": 2.0}, "n_action_steps: expected an integer"),
    ({"n_action_steps": 101}, "n_action_steps: expected at most chunk_size=100"),
    ({"n_action_steps": 10, "refill_threshold": 10}, "refill_threshold: expected less than n_action_steps=10"),
    ({"max_joint_step": [0.1, 0.2]}, "max_joint_step: expected 1 or 6 values"),
    ({"max_joint_step": [0.0]}, "max_joint_step: expected positive values"),
    ({"max_joint_step": array("d", [float("nan")])}, "max_joint_step: expected a list of finite numbers, got [nan]"),
    ({"joint_lower_limits": [-1.0] * 6, "joint_upper_limits": [1, 1, 1, -2, 1, 1]}, "joint 'wrist_flex' needs lower"),
    ({"joint_upper_limits": [1.0] * 5, "joint_lower_limits": [0.0] * 5}, "expected 6 values"),
    ({"record_every_n": 0}, "record_every_n: expected a value in [1, 100000]"),
    ({"nonexistent": 1}, "nonexistent: not a parameter"),
    ({"backend": "tpu"}, "backend: read-only"),
])
def test_invalid_changes_are_refused_with_a_reason_naming_the_parameter(changes, reason):
    with pytest.raises(ParameterError, match=None) as info:
        apply_changes(base(), changes, CONTEXT)
    assert reason in str(info.value)


def test_a_scheduling_slice_is_the_kernels_default_or_what_linux_takes():
    assert validate({"sched_slice_us": 0})["sched_slice_us"] == 0
    assert validate({"sched_slice_us": 100})["sched_slice_us"] == 100
    with pytest.raises(ParameterError, match=r"sched_slice_us: expected 0 \(the kernel's default\) or "
                                             r"100-100000 us \(what Linux takes\), got 99"):
        validate({"sched_slice_us": 99})
    with pytest.raises(ParameterError, match=r"sched_slice_us: expected a value in \[0, 100000\] us"):
        validate({"sched_slice_us": 100_001})


def test_a_refused_set_changes_nothing_even_if_part_of_it_was_valid():
    current = base()
    snapshot = dict(current)
    with pytest.raises(ParameterError, match="max_image_age_ms"):
        apply_changes(current, {"control_rate_hz": 20, "max_image_age_ms": -5}, CONTEXT)
    assert dict(current) == snapshot


def test_setting_a_read_only_parameter_to_its_current_value_is_not_a_change():
    s = apply_changes(base(), {"backend": "cpu_fp32", "joint_names": JOINTS}, CONTEXT)
    assert s["joint_names"] == tuple(JOINTS)


def test_limits_may_be_set_one_side_at_a_time_as_ros2_param_set_does():
    s = apply_changes(base(), {"joint_lower_limits": [-1.0] * 6}, CONTEXT)
    s = apply_changes(s, {"joint_upper_limits": [1] * 6}, CONTEXT)
    assert s["joint_upper_limits"] == (1.0,) * 6
    with pytest.raises(ParameterError, match=r"joint 'shoulder_pan' needs lower < upper, got 2\.0 >= 1\.0"):
        apply_changes(s, {"joint_lower_limits": [2.0] * 6}, CONTEXT)


def test_temporal_ensembling_requires_one_action_per_chunk():
    with pytest.raises(ParameterError, match="n_action_steps: temporal_ensemble mode"):
        base(schedule_mode="temporal_ensemble", n_action_steps=5)
    s = base(schedule_mode="temporal_ensemble", n_action_steps=1)
    assert P.effective_n_action_steps(s, CONTEXT) == 1


ENSEMBLE_CHECKPOINT = PolicyContext(chunk_size=100, n_action_steps=1, camera_features=("observation.images.front",),
                                    action_dim=6, temporal_ensemble_coeff=0.05)


def test_by_default_a_checkpoint_trained_with_temporal_ensembling_runs_it_with_its_coefficient():
    s = validate({"joint_names": JOINTS, "camera_topics": ["front=/c"]}, ENSEMBLE_CHECKPOINT)
    assert (s["schedule_mode"], s["temporal_ensemble_coeff"]) == ("checkpoint", "checkpoint")
    assert P.effective_schedule_mode(s, ENSEMBLE_CHECKPOINT) == "temporal_ensemble"
    assert P.effective_ensemble_coeff(s, ENSEMBLE_CHECKPOINT) == 0.05
    assert P.effective_n_action_steps(s, ENSEMBLE_CHECKPOINT) == 1
    plain = base()  # trained without ensembling: chunks, asynchronously; ACT's 0.01 if ensembling is asked for
    assert P.effective_schedule_mode(plain, CONTEXT) == "async"
    assert P.effective_ensemble_coeff(plain, CONTEXT) == P.DEFAULT_ENSEMBLE_COEFF == 0.01


def test_parameters_override_the_checkpoints_schedule_and_coefficient():
    s = validate({"joint_names": JOINTS, "camera_topics": ["front=/c"], "schedule_mode": "async",
                  "n_action_steps": 40, "temporal_ensemble_coeff": -0.2}, ENSEMBLE_CHECKPOINT)
    assert P.effective_schedule_mode(s, ENSEMBLE_CHECKPOINT) == "async"
    assert P.effective_n_action_steps(s, ENSEMBLE_CHECKPOINT) == 40
    assert P.effective_ensemble_coeff(s, ENSEMBLE_CHECKPOINT) == -0.2
    live = apply_changes(s, {"temporal_ensemble_coeff": "checkpoint"}, ENSEMBLE_CHECKPOINT)
    assert P.effective_ensemble_coeff(live, ENSEMBLE_CHECKPOINT) == 0.05


def test_running_an_ensembling_checkpoint_one_action_per_inference_is_refused_not_starved():
    values = {"joint_names": JOINTS, "camera_topics": ["front=/c"]}
    with pytest.raises(ParameterError, match=r"n_action_steps: async mode with 1 action per chunk \(the checkpoint's "
                                             r"n_action_steps\) infers for every action and starves"):
        validate({**values, "schedule_mode": "async"}, ENSEMBLE_CHECKPOINT)
    with pytest.raises(ParameterError, match=r"trained with temporal ensembling .* must be 1"):
        validate({**values, "n_action_steps": 10}, ENSEMBLE_CHECKPOINT)
    with pytest.raises(ParameterError, match=r"temporal_ensemble_coeff: expected a finite number, got 'ckpt'"):
        validate({**values, "temporal_ensemble_coeff": "ckpt"}, ENSEMBLE_CHECKPOINT)


def test_chunk_aggregation_is_one_of_the_modes_and_blend_steps_is_not_negative():
    s = apply_changes(base(), {"chunk_aggregation": "blend", "blend_steps": 5}, CONTEXT)
    assert (s["chunk_aggregation"], s["blend_steps"]) == ("blend", 5)
    with pytest.raises(ParameterError, match="chunk_aggregation: expected one of latest, average, weighted, blend"):
        apply_changes(base(), {"chunk_aggregation": "median"}, CONTEXT)
    with pytest.raises(ParameterError, match=r"blend_steps: expected a value in \[0, 10000\]"):
        apply_changes(base(), {"blend_steps": -1}, CONTEXT)


def test_refill_threshold_minus_one_means_half_of_n_action_steps():
    s = base(n_action_steps=30)
    assert P.effective_refill_threshold(s, CONTEXT) == 15
    assert P.effective_n_action_steps(base(), CONTEXT) == 100  # 0 = the checkpoint's value


def test_joint_names_and_cameras_must_match_the_policy():
    with pytest.raises(ParameterError, match="joint_names: the policy has 6 action dimensions, got 2"):
        base(joint_names=["a", "b"])
    with pytest.raises(ParameterError, match=r"missing \['observation.images.front'\], unknown "
                                             r"\['observation.images.wrist'\]"):
        base(camera_topics=["wrist=/wrist/image_raw"])
    with pytest.raises(ParameterError, match="unique"):
        base(joint_names=["a"] * 6)


def test_camera_topics_accept_short_and_full_feature_names():
    assert P.camera_topic_map(["front=/a", "observation.images.wrist = /b/compressed"]) == {
        "observation.images.front": "/a", "observation.images.wrist": "/b/compressed"}
    for bad in (["front"], ["=/a"], ["front=/a", "front=/b"]):
        with pytest.raises(ParameterError, match="camera_topics"):
            P.camera_topic_map(bad)


def test_empty_arrays_may_arrive_as_none_and_are_declared_as_none():
    spec = P.SPECS["joint_lower_limits"]
    assert P.coerce(spec, None) == ()
    assert P.ros_default(spec) is None  # rclpy would type [] as a byte array
    assert P.dynamic_typing(spec) and P.dynamic_typing(P.SPECS["control_rate_hz"])
    assert not P.dynamic_typing(P.SPECS["n_action_steps"])


def test_backend_options_must_be_a_json_object():
    with pytest.raises(ParameterError, match="backend_options: expected a JSON object"):
        validate({"backend_options": "[1]"})
    with pytest.raises(ParameterError, match="backend_options: expected a JSON object"):
        validate({"backend_options": "{oops"})


def test_committed_parameter_reference_is_up_to_date():
    doc = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
    assert doc.read_text() == P.parameters_markdown(), (
        "docs/parameters.md is stale: regenerate with "
        "python -c 'from act_policy.runtime.parameters import parameters_markdown as m; "
        "open(\"docs/parameters.md\", \"w\").write(m())'")


def test_readme_parameter_table_is_the_generated_one():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    begin, end = "<!-- parameters:begin -->\n", "<!-- parameters:end -->"
    table = readme[readme.index(begin) + len(begin):readme.index(end)]
    assert table == P.parameters_table(), "README.md parameter table is stale: paste parameters_table() there"


def test_a_dumped_empty_array_loads_again_as_empty():
    # `ros2 param dump` writes an unset (empty) array as `null`; rcl's YAML parser returns that as "null"
    assert validate({"joint_scale": "null", "joint_lower_limits": None})["joint_scale"] == ()
    with pytest.raises(ParameterError, match="joint_scale: expected a list"):
        validate({"joint_scale": "nul"})


def test_one_scale_offset_or_step_value_applies_to_every_joint():
    s = validate({"joint_names": ["a", "b"], "joint_scale": [57.29578], "joint_offset": [0.0], "max_joint_step": [0.1]})
    assert s["joint_scale"] == (57.29578,)
    with pytest.raises(ParameterError, match="joint_lower_limits: expected 2 values"):
        validate({"joint_names": ["a", "b"], "joint_lower_limits": [0.0], "joint_upper_limits": [1.0, 1.0]})

"""Recording options of replay / quantize / hailo-prepare: a bag is read with the node's topics, joints and units.

The values come from the node's own params file(s) (``--node-params``, checked by the node's rules) and
from explicit flags, which win; every wrong value names the flag or the file and the parameter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from act_policy.runtime.parameters import ParameterError
from act_policy.tools.recording_options import add_recording_arguments, bag_options, recording_flags

ROOT = Path(__file__).resolve().parents[1]
ROBOT_FILE = ROOT / "config" / "so101_follower.yaml"
SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
FRONT, WRIST = "observation.images.front", "observation.images.wrist"


def parse(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_recording_arguments(parser)
    return parser.parse_args(list(words))


def params_file(path: Path, body: str, section: str = "/**") -> Path:
    path.write_text(f"{section}:\n  ros__parameters:\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    return path


def test_without_options_a_bag_is_read_as_recorded_from_the_nodes_default_topic() -> None:
    o = bag_options(parse())
    assert o.state_topic == "/joint_states" and o.joint_names is None and dict(o.camera_topics) == {}
    assert o.joint_scale == () and o.joint_offset == ()


def test_the_shipped_robot_params_file_gives_the_nodes_topics_joints_and_units() -> None:
    o = bag_options(parse("--node-params", str(ROBOT_FILE)))
    assert o.state_topic == "/joint_states"
    assert tuple(o.joint_names) == SO101_JOINTS
    assert o.joint_scale == (57.29578,) * 5 + (57.142857,) and o.joint_offset == (0.0,) * 6
    assert dict(o.camera_topics) == {FRONT: "/camera/image_raw", WRIST: "/wrist_camera/image_raw"}


def test_explicit_flags_override_the_params_file() -> None:
    args = parse("--node-params", str(ROBOT_FILE), "--state-topic", "/follower/joint_states",
                 "--camera", "wrist=/gripper_cam/compressed", "--joint-scale", "2", "--joint-offset", "1,2,3,4,5,6")
    o = bag_options(args)
    assert o.state_topic == "/follower/joint_states"
    assert dict(o.camera_topics) == {FRONT: "/camera/image_raw", WRIST: "/gripper_cam/compressed"}  # per camera
    assert o.joint_scale == (2.0,) * 6 and o.joint_offset == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    o = bag_options(parse("--node-params", str(ROBOT_FILE), "--joint-names", "a,b", "--joint-scale", "1,2",
                          "--joint-offset", "0"))
    assert tuple(o.joint_names) == ("a", "b") and o.joint_scale == (1.0, 2.0) and o.joint_offset == (0.0, 0.0)


def test_several_params_files_merge_like_a_launch_file_the_later_one_wins(tmp_path: Path) -> None:
    override = params_file(tmp_path / "lab.yaml", "joint_state_topic: /lab/joint_states\njoint_offset: [0, 0, 0, 0, "
                           "0, -10]", section="/act_policy")
    backend = ROOT / "config" / "pi5_cpu.yaml"  # other parameters of the node are checked, not used
    o = bag_options(parse("--node-params", str(backend), "--node-params", str(ROBOT_FILE), "--node-params",
                          str(override)))
    assert o.state_topic == "/lab/joint_states" and o.joint_offset == (0.0,) * 5 + (-10.0,)
    assert tuple(o.joint_names) == SO101_JOINTS and o.joint_scale[0] == 57.29578


def test_a_scale_or_offset_count_that_does_not_match_the_joints_names_the_flag_and_the_joints() -> None:
    with pytest.raises(ParameterError, match=r"^--joint-scale: expected 1 or 3 values \(one per joint\), got 2; the "
                                             r"joints \(--joint-names\): a, b, c$"):
        bag_options(parse("--joint-names", "a,b,c", "--joint-scale", "1,2"))
    with pytest.raises(ParameterError, match=r"^--joint-offset: expected 1 or 6 values \(one per joint\), got 5; the "
                                             rf"joints \(joint_names in {ROBOT_FILE}\): shoulder_pan, "):
        bag_options(parse("--node-params", str(ROBOT_FILE), "--joint-offset", "0,0,0,0,0"))


def test_a_camera_given_twice_is_refused_whether_short_or_full_names_are_used() -> None:
    with pytest.raises(ParameterError, match=rf"^--camera {FRONT} is given twice \(/a and /b\)$"):
        bag_options(parse("--camera", "front=/a", "--camera", f"{FRONT}=/b"))


def test_the_files_units_for_other_joints_than_the_given_ones_name_the_file() -> None:
    with pytest.raises(ParameterError, match=rf"^joint_scale in {ROBOT_FILE} gives values for the joints "
                                             r"shoulder_pan, .*, gripper, not for a, b \(--joint-names\)$"):
        bag_options(parse("--node-params", str(ROBOT_FILE), "--joint-names", "a,b"))


def test_the_files_units_follow_their_joint_names_when_joint_names_reorders_them() -> None:
    o = bag_options(parse("--node-params", str(ROBOT_FILE), "--joint-names", "gripper,shoulder_pan"))
    assert tuple(o.joint_names) == ("gripper", "shoulder_pan") and o.joint_scale == (57.142857, 57.29578)


def test_a_ros2_param_dump_of_the_node_is_a_params_file(tmp_path: Path) -> None:
    dump = params_file(tmp_path / "tuned.yaml", "joint_names: [a, b]\njoint_scale: 'null'\njoint_offset: 'null'\n"
                                                 "use_sim_time: false\nstart_type_description_service: true\n"
                                                 "qos_overrides:\n  /parameter_events:\n    publisher:\n"
                                                 "      depth: 1000", section="/act_policy")
    o = bag_options(parse("--node-params", str(dump)))
    assert tuple(o.joint_names) == ("a", "b") and o.joint_scale == () and o.joint_offset == ()


@pytest.mark.parametrize(("body", "message"), [
    ("joint_names: [a, b]\njoint_scale: [57.3, 57.3, 1.0]",
     r"joint_scale: expected 1 or 2 values or none, got 3"),
    ("joint_names: [a]\njoint_scale: [0.0]", r"joint_scale: expected non-zero factors"),
    ("joint_offset: [zero]", r"joint_offset: expected a list of finite numbers"),
    ("camera_topics: [front]", r"camera_topics: expected entries like 'front=/camera/image_raw'"),
    ("control_rate_hz: 0.0", r"control_rate_hz: expected a value in \[0.5, 1000\]"),
    ("joint_scales: [1.0]", r"unknown parameter\(s\): joint_scales"),
])
def test_a_value_the_node_would_refuse_is_refused_naming_the_file_and_the_parameter(tmp_path: Path, body: str,
                                                                                  message: str) -> None:
    path = params_file(tmp_path / "robot.yaml", body)
    with pytest.raises(ParameterError, match=rf"^{path}: {message}"):
        bag_options(parse("--node-params", str(path)))


def test_a_bad_value_is_blamed_on_the_file_that_set_it(tmp_path: Path) -> None:
    bad = params_file(tmp_path / "bad.yaml", "joint_scale: [1.0, 2.0]")
    with pytest.raises(ParameterError, match=rf"^{bad}: joint_scale: expected 1 or 6 values"):
        bag_options(parse("--node-params", str(ROBOT_FILE), "--node-params", str(bad)))


@pytest.mark.parametrize(("text", "message"), [
    (None, "cannot read the params file"),
    ("/**:\n  ros__parameters: [\n", "not a valid YAML file"),
    ("/**:\n  joint_names: [a]\n", "expected a node params file: a '/\\*\\*:' or '/act_policy:' section holding "
                                   "'ros__parameters:'"),
    ("/camera:\n  ros__parameters:\n    width: 640\n", "expected a node params file"),
])
def test_an_unreadable_or_foreign_params_file_is_named(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ParameterError, match=rf"^{path}: {message}"):
        bag_options(parse("--node-params", str(path)))


def test_namespaced_and_other_node_sections_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "robot.yaml"
    path.write_text("/camera:\n  ros__parameters:\n    joint_state_topic: 7\n"
                    "/arm/act_policy:\n  ros__parameters:\n    joint_state_topic: /arm/joint_states\n")
    assert bag_options(parse("--node-params", str(path))).state_topic == "/arm/joint_states"


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--joint-scale", "1,0", "expected non-zero factors, got '1,0'"),
    ("--joint-offset", "1,x", "expected comma-separated numbers, got '1,x'"),
    ("--joint-offset", "1,nan", "expected finite numbers, got '1,nan'"),
    ("--joint-scale", "inf", "expected finite numbers, got 'inf'"),
    ("--camera", "front", "expected FEATURE=TOPIC, got 'front'"),
])
def test_malformed_flags_are_refused_by_the_parser(flag: str, value: str, message: str, capsys) -> None:
    with pytest.raises(SystemExit):
        parse(flag, value)
    assert f"{flag}: {message}" in capsys.readouterr().err


def test_the_flags_of_a_run_reproduce_its_options() -> None:
    words = ["--node-params", str(ROBOT_FILE), "--rate", "10", "--state-topic", "/follower/joint_states",
             "--joint-names", "a,b", "--joint-scale", "57.29578,1.5", "--joint-offset", "0.0,-10.0",
             "--camera", "front=/cam", "--header-stamps"]
    args = parse(*words)
    flags = recording_flags(args)
    assert flags == ["--node-params", str(ROBOT_FILE), "--rate", "10", "--state-topic", "/follower/joint_states",
                     "--joint-names", "a,b", "--joint-scale", "57.29578,1.5", "--joint-offset", "0.0,-10.0",
                     "--camera", f"{FRONT}=/cam", "--header-stamps"]
    assert bag_options(parse(*flags)) == bag_options(args)
    assert recording_flags(parse()) == []

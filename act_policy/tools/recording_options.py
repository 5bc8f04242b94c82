"""Command-line options saying how to read a recording: a LeRobot dataset episode or a rosbag2.

Shared by `replay` (the data to replay) and by `quantize` / `hailo-prepare` (the data to
calibrate on), so the flags, defaults, checks and help are the same in every tool that reads
recorded data; :func:`bag_options` turns them into the reader's :class:`BagOptions`.

A bag must be read the way the node reads the robot: ``--node-params`` takes the topics, joint
order and joint units from the node's own params file(s), validated by the node's rules; the
explicit flags override single values of it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from act_policy.core.joint_units import per_joint
from act_policy.data import BagOptions
from act_policy.runtime.parameters import SPECS, ParameterError, camera_topic_map
from act_policy.runtime.params_file import NodeParams, read_params_files

DEFAULT_STATE_TOPIC = SPECS["joint_state_topic"].default
DEFAULT_MAX_AGE_S = 0.5


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _camera(text: str) -> tuple[str, str]:
    """One entry read like the node's camera_topics (FEATURE may be the short camera name)."""
    try:
        [(feature, topic)] = camera_topic_map([text]).items()
    except ParameterError:
        raise argparse.ArgumentTypeError(f"expected FEATURE=TOPIC, got {text!r}")
    return feature, topic


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _scales(text: str) -> tuple[float, ...]:
    values = _floats(text)
    if 0 in values:
        raise argparse.ArgumentTypeError(f"expected non-zero factors, got {text!r}")
    return values


def add_recording_arguments(parser: argparse.ArgumentParser, rate_help: str | None = None) -> argparse._ArgumentGroup:
    """Add the recording options as one group; returns it so a tool can add its own (e.g. replay's action topic)."""
    group = parser.add_argument_group("recorded data (LeRobot dataset or rosbag2)")
    group.add_argument("--episode", type=_index, default=0, help="episode index in a LeRobot dataset (default 0)")
    group.add_argument("--rate", type=_positive, default=None, metavar="HZ",
                       help=rate_help or f"steps per second sampled from a rosbag2 (default {BagOptions.rate_hz:g})")
    group.add_argument("--node-params", type=Path, action="append", default=[], metavar="FILE",
                       help="rosbag2: the act_policy node's params YAML; its joint_state_topic, joint_names, "
                            "joint_scale, joint_offset and camera_topics are used (checked like the node checks "
                            "them); repeat for several files, a later one wins like in a launch file; the options "
                            "below override it")
    group.add_argument("--state-topic", default=None,
                       help="rosbag2: JointState topic of observation.state (default: --node-params' "
                            f"joint_state_topic, else {DEFAULT_STATE_TOPIC})")
    group.add_argument("--camera", type=_camera, action="append", default=[], metavar="FEATURE=TOPIC",
                       help="rosbag2: camera feature to Image/CompressedImage topic, e.g. front=/cam/image_raw "
                            "(front = observation.images.front); repeat per camera")
    group.add_argument("--joint-names", default=None,
                       help="rosbag2: comma-separated joint order of observation.state and the actions (default: "
                            "--node-params' joint_names, else the first state message's order)")
    group.add_argument("--joint-scale", type=_scales, default=None, metavar="S[,S...]",
                       help="rosbag2: the node's joint_scale: policy value = ROS value * scale + offset, for the "
                            "state and the recorded actions (e.g. 57.29578: radians to degrees); one value for "
                            "every joint or one per joint (default: --node-params' joint_scale, else 1)")
    group.add_argument("--joint-offset", type=_floats, default=None, metavar="O[,O...]",
                       help="rosbag2: the node's joint_offset in policy units; one value for every joint or one "
                            "per joint (default: --node-params' joint_offset, else 0)")
    group.add_argument("--header-stamps", action="store_true",
                       help="rosbag2: align topics on header.stamp instead of receive time")
    group.add_argument("--max-age", type=_positive, default=DEFAULT_MAX_AGE_S, metavar="S",
                       help="rosbag2: largest allowed age of a topic's latest message at any step "
                            f"(default {DEFAULT_MAX_AGE_S})")
    return group


def bag_options(args: argparse.Namespace, action_topic: str | None = None) -> BagOptions:
    """The parsed recording options, over the node params files' values, as the rosbag2 reader's settings."""
    node = read_params_files(args.node_params)
    s = node.settings
    cameras = camera_topic_map(s["camera_topics"])
    given: dict[str, str] = {}
    for feature, topic in args.camera:
        if feature in given:
            raise ParameterError(f"--camera {feature} is given twice ({given[feature]} and {topic})")
        given[feature] = topic
    joints, joints_from = s["joint_names"], node.source("joint_names")
    if args.joint_names:
        joints, joints_from = tuple(n.strip() for n in args.joint_names.split(",") if n.strip()), "--joint-names"
    scale = _joint_values(args.joint_scale, "--joint-scale", "joint_scale", 1.0, node, joints, joints_from)
    offset = _joint_values(args.joint_offset, "--joint-offset", "joint_offset", 0.0, node, joints, joints_from)
    return BagOptions(state_topic=args.state_topic or s["joint_state_topic"], camera_topics=cameras | given,
                      action_topic=action_topic, joint_names=joints or None, rate_hz=args.rate or BagOptions.rate_hz,
                      use_header_stamps=args.header_stamps, max_age_s=args.max_age, joint_scale=scale,
                      joint_offset=offset)


def _joint_values(flag_values: Sequence[float] | None, flag: str, parameter: str, fill: float, node: NodeParams,
                  joints: Sequence[str], joints_from: str | None) -> tuple[float, ...]:
    """The flag's values, else the params files'; checked against (and expanded to) the joints when they are known."""
    values, source = (flag_values, flag) if flag_values is not None else (node.settings[parameter],
                                                                          node.source(parameter))
    file_joints = node.settings["joint_names"]
    if flag_values is None and len(values) > 1 and tuple(joints) != tuple(file_joints):
        # per-joint values in the params file belong to its joint_names, not to a reordered --joint-names
        unknown = [j for j in joints if j not in file_joints]
        if unknown:
            raise ParameterError(f"{source} gives values for the joints {', '.join(file_joints)}, not for "
                                 f"{', '.join(unknown)} ({joints_from})")
        values = tuple(values[file_joints.index(j)] for j in joints)
    if not joints or not values:
        return tuple(values)  # joints unknown here: the reader expands them once the first state message names them
    try:
        return per_joint(values, len(joints), fill, source)
    except ValueError as exc:
        raise ParameterError(f"{exc}; the joints ({joints_from}): {', '.join(joints)}")


def recording_flags(args: argparse.Namespace) -> list[str]:
    """The recording options that differ from their defaults, as command-line words (to reproduce a run)."""
    words = []
    for path in args.node_params:
        words += ["--node-params", str(path)]
    for flag, value, default in (("--episode", args.episode, 0), ("--rate", args.rate, None),
                                 ("--state-topic", args.state_topic, None),
                                 ("--joint-names", args.joint_names, None),
                                 ("--max-age", args.max_age, DEFAULT_MAX_AGE_S)):
        if value != default:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for flag, values in (("--joint-scale", args.joint_scale), ("--joint-offset", args.joint_offset)):
        if values is not None:
            words += [flag, ",".join(map(str, values))]
    for feature, topic in args.camera:
        words += ["--camera", f"{feature}={topic}"]
    if args.header_stamps:
        words.append("--header-stamps")
    return words

"""Command-line options saying how to read a recording: a LeRobot dataset episode or a rosbag2.

Shared by `replay` (the data to replay) and by `quantize` / `hailo-prepare` (the data to
calibrate on), so the flags, defaults, checks and help are the same in every tool that reads
recorded data; :func:`bag_options` turns them into the reader's :class:`BagOptions`.
"""

from __future__ import annotations

import argparse

from act_policy.data import BagOptions

DEFAULT_STATE_TOPIC = "/joint_states"
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
    feature, sep, topic = text.partition("=")
    if not sep or not feature or not topic:
        raise argparse.ArgumentTypeError(f"expected FEATURE=TOPIC, got {text!r}")
    return feature, topic


def add_recording_arguments(parser: argparse.ArgumentParser, rate_help: str | None = None) -> argparse._ArgumentGroup:
    """Add the recording options as one group; returns it so a tool can add its own (e.g. replay's action topic)."""
    group = parser.add_argument_group("recorded data (LeRobot dataset or rosbag2)")
    group.add_argument("--episode", type=_index, default=0, help="episode index in a LeRobot dataset (default 0)")
    group.add_argument("--rate", type=_positive, default=None, metavar="HZ",
                       help=rate_help or f"steps per second sampled from a rosbag2 (default {BagOptions.rate_hz:g})")
    group.add_argument("--state-topic", default=DEFAULT_STATE_TOPIC,
                       help=f"rosbag2: JointState topic of observation.state (default {DEFAULT_STATE_TOPIC})")
    group.add_argument("--camera", type=_camera, action="append", default=[], metavar="FEATURE=TOPIC",
                       help="rosbag2: camera feature to Image/CompressedImage topic, e.g. "
                            "observation.images.front=/cam/image_raw; repeat per camera")
    group.add_argument("--joint-names", default=None,
                       help="rosbag2: comma-separated joint order of observation.state (default: the first state "
                            "message's order)")
    group.add_argument("--header-stamps", action="store_true",
                       help="rosbag2: align topics on header.stamp instead of receive time")
    group.add_argument("--max-age", type=_positive, default=DEFAULT_MAX_AGE_S, metavar="S",
                       help="rosbag2: largest allowed age of a topic's latest message at any step "
                            f"(default {DEFAULT_MAX_AGE_S})")
    return group


def bag_options(args: argparse.Namespace, action_topic: str | None = None) -> BagOptions:
    """The parsed recording options as the rosbag2 reader's settings."""
    cameras: dict[str, str] = {}
    for feature, topic in args.camera:
        if feature in cameras:
            raise SystemExit(f"--camera {feature} is given twice ({cameras[feature]} and {topic})")
        cameras[feature] = topic
    joints = tuple(n.strip() for n in args.joint_names.split(",") if n.strip()) if args.joint_names else None
    return BagOptions(state_topic=args.state_topic, camera_topics=cameras, action_topic=action_topic,
                      joint_names=joints, rate_hz=args.rate or BagOptions.rate_hz,
                      use_header_stamps=args.header_stamps, max_age_s=args.max_age)


def recording_flags(args: argparse.Namespace) -> list[str]:
    """The recording options that differ from their defaults, as command-line words (to reproduce a run)."""
    words = []
    for flag, value, default in (("--episode", args.episode, 0), ("--rate", args.rate, None),
                                 ("--state-topic", args.state_topic, DEFAULT_STATE_TOPIC),
                                 ("--joint-names", args.joint_names, None),
                                 ("--max-age", args.max_age, DEFAULT_MAX_AGE_S)):
        if value != default:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for feature, topic in args.camera:
        words += ["--camera", f"{feature}={topic}"]
    if args.header_stamps:
        words.append("--header-stamps")
    return words

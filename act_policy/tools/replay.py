"""Replay a recorded episode through backends offline: action errors, latency, control-rate verdict, plots.

  act-policy replay CHECKPOINT --data DATASET --episode 3 --backends cpu_fp32,cpu_int8 --out replay/
  act-policy replay BUNDLE --data my_bag/ --state-topic /joint_states \\
      --camera observation.images.front=/camera/image_raw --action-topic /leader/joint_states --rate 30

DATA is a LeRobot dataset folder (meta/info.json; v2.1 or v3.0) or a rosbag2 (sqlite3 or
mcap). Writes report.md, PNG plots and replay.json to --out. cpu_fp32 always runs as the
reference. Needs the `replay` extra: pyarrow, av, matplotlib, rosbags.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from act_policy.core.errors import ActPolicyError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="LeRobot pretrained_model folder or deploy bundle")
    parser.add_argument("--data", required=True, help="LeRobot dataset folder or rosbag2 (folder or storage file)")
    parser.add_argument("--episode", type=int, default=0, help="episode index in a LeRobot dataset (default 0)")
    parser.add_argument("--backends", default="cpu_fp32", help="comma-separated backend names (default cpu_fp32)")
    parser.add_argument("--out", type=Path, default=Path("replay"), help="output folder (default ./replay)")
    parser.add_argument("--rate", type=float, default=None,
                        help="control rate in Hz: rosbag sampling rate and rate-criterion target "
                             "(default: dataset fps; 30 for bags)")
    parser.add_argument("--max-steps", type=int, default=None, help="replay only the first N steps")
    parser.add_argument("--n-action-steps", type=int, default=None, help="override the checkpoint's n_action_steps")
    parser.add_argument("--temporal-ensemble-coeff", type=float, default=None,
                        help="use temporal ensembling (implies n_action_steps 1)")
    parser.add_argument("--refill-threshold", type=int, default=None,
                        help="queued actions left when the async node requests the next chunk (default n//2)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: cores, max 4)")
    parser.add_argument("--latency-samples", type=int, default=30,
                        help="time at least this many inferences per backend (default 30)")
    bag = parser.add_argument_group("rosbag2 options")
    bag.add_argument("--state-topic", default="/joint_states", help="sensor_msgs/JointState topic (observation.state)")
    bag.add_argument("--camera", action="append", default=[], metavar="FEATURE=TOPIC",
                     help="camera feature to Image/CompressedImage topic, e.g. observation.images.front=/cam/image_raw;"
                          " repeat per camera")
    bag.add_argument("--action-topic", default=None,
                     help="recorded commands: JointState (e.g. a leader arm) or Float64MultiArray topic")
    bag.add_argument("--joint-names", default=None, help="comma-separated joint order (default: first state message)")
    bag.add_argument("--header-stamps", action="store_true", help="align on header.stamp instead of receive time")
    bag.add_argument("--max-age", type=float, default=0.5,
                     help="largest allowed age (s) of a topic's latest message at any step (default 0.5)")


def _camera_map(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        feature, sep, topic = item.partition("=")
        if not sep or not feature or not topic:
            raise SystemExit(f"--camera expects FEATURE=TOPIC, got {item!r}")
        mapping[feature] = topic
    return mapping


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, for the report."""
    parts = ["act-policy", "replay", str(args.path), "--data", str(args.data), "--episode", str(args.episode),
             "--backends", args.backends, "--out", str(args.out)]
    for flag, value in (("--rate", args.rate), ("--max-steps", args.max_steps),
                        ("--n-action-steps", args.n_action_steps),
                        ("--temporal-ensemble-coeff", args.temporal_ensemble_coeff),
                        ("--refill-threshold", args.refill_threshold), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    if args.camera:
        parts += ["--state-topic", args.state_topic, *(a for c in args.camera for a in ("--camera", c))]
        if args.action_topic:
            parts += ["--action-topic", args.action_topic]
    return " ".join(shlex.quote(p) for p in parts)


def _progress(backend: str, step: int, total: int) -> None:
    if step == total or step % 25 == 0:
        print(f"\r  {backend}: step {step}/{total}", end="\n" if step == total else "", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from act_policy.core.policy import load_artifacts
    from act_policy.data import BagOptions, read_episode
    from act_policy.evaluation.plots import write_report
    from act_policy.evaluation.replay import replay

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends:
        raise SystemExit("--backends is empty")
    if args.rate is not None and args.rate <= 0:
        raise SystemExit("--rate must be positive")
    artifacts = load_artifacts(args.path)
    bag_options = BagOptions(
        state_topic=args.state_topic, camera_topics=_camera_map(args.camera), action_topic=args.action_topic,
        joint_names=tuple(n.strip() for n in args.joint_names.split(",")) if args.joint_names else None,
        rate_hz=args.rate or 30.0, use_header_stamps=args.header_stamps, max_age_s=args.max_age)
    episode = read_episode(args.data, args.episode, artifacts.spec, bag_options)
    if args.max_steps is not None:
        episode = episode.head(args.max_steps)
    print(f"episode: {len(episode)} steps at {episode.fps:g} fps from {args.data} ({' '.join(episode.notes)})")
    try:
        result = replay(artifacts, episode, backends, rate_hz=args.rate, n_action_steps=args.n_action_steps,
                        temporal_ensemble_coeff=args.temporal_ensemble_coeff,
                        refill_threshold=args.refill_threshold, num_threads=args.threads,
                        latency_samples=args.latency_samples, progress=_progress)
    except ActPolicyError:
        raise
    except ValueError as exc:  # settings the policy or the rate check refuse (n_action_steps, threshold)
        raise SystemExit(f"act-policy replay: {exc}")
    report = write_report(result, args.out, _command(args))
    (args.out / "replay.json").write_text(json.dumps(result.as_dict(), indent=2))

    print()
    print(f"{'backend':<20}{'err vs rec':>12}{'err vs fp32':>12}{'p50 ms':>9}{'p95 ms':>9}{'budget':>9}  rate")
    for r in result.runs:
        rec = f"{r.vs_recorded.mean.mean():.4g}" if r.vs_recorded else "-"
        ref = f"{r.vs_reference.mean.mean():.4g}" if r.vs_reference else "-"
        verdict = "met" if r.rate.met else "MISSED"
        print(f"{r.backend:<20}{rec:>12}{ref:>12}{r.latency.p50:>9.1f}{r.latency.p95:>9.1f}"
              f"{r.rate.budget_ms:>9.1f}  {verdict} at {r.rate.rate_hz:g} Hz (max {r.rate.max_rate_hz:.1f} Hz)")
    print(f"\nreport: {report}")
    return 0

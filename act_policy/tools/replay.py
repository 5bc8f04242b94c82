"""Replay a recorded episode through backends offline: action errors, latency, control-rate verdict, plots.

  act-policy replay CHECKPOINT --data DATASET --episode 3 --backends cpu_fp32,cpu_int8 --out replay/
  act-policy replay BUNDLE --data my_bag/ --state-topic /joint_states \\
      --camera observation.images.front=/camera/image_raw --action-topic /leader/joint_states --rate 30
  act-policy replay BUNDLE --data my_bag/ --node-params robot.yaml --action-topic /leader/joint_states

DATA is a LeRobot dataset folder (meta/info.json; v2.1 or v3.0) or a rosbag2 (sqlite3 or
mcap); a bag's joint values (ROS units) are converted to the policy's units like the node
does, with --node-params (the node's params file) or --joint-scale / --joint-offset. Writes
report.md, PNG plots and replay.json to --out. cpu_fp32 always runs as the reference (onnx_fp32, the
bundle's float graph, on an install without torch). Needs
the `replay` extra: pyarrow, av, matplotlib, rosbags, pyyaml.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from act_policy.backends import reference_backend
from act_policy.core.scheduling import AGGREGATIONS
from act_policy.tools.options import add_backend_option_argument, parse_backend_options
from act_policy.tools.recording_options import add_recording_arguments, bag_options, recording_flags

if TYPE_CHECKING:
    from act_policy.evaluation.replay import ReplayResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="LeRobot pretrained_model folder or deploy bundle, or 'demo'")
    parser.add_argument("--data", required=True, help="LeRobot dataset folder or rosbag2 (folder or storage file)")
    parser.add_argument("--backends", default="", help="comma-separated backend names (default: the reference only)")
    parser.add_argument("--out", type=Path, default=Path("replay"), help="output folder (default ./replay)")
    parser.add_argument("--max-steps", type=int, default=None, help="replay only the first N steps")
    parser.add_argument("--n-action-steps", type=int, default=None, help="override the checkpoint's n_action_steps")
    parser.add_argument("--temporal-ensemble-coeff", type=float, default=None,
                        help="use temporal ensembling (implies n_action_steps 1)")
    parser.add_argument("--refill-threshold", type=int, default=None,
                        help="queued actions left when the async node requests the next chunk (default n//2)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: cores, max 4)")
    parser.add_argument("--latency-samples", type=int, default=30,
                        help="time at least this many inferences per backend (default 30)")
    parser.add_argument("--chunk-aggregation", choices=AGGREGATIONS, default="latest",
                        help="how a new chunk merges with the previous chunk's overlapping actions (default latest, "
                             "LeRobot's); the node's chunk_aggregation")
    parser.add_argument("--blend-steps", type=int, default=10,
                        help="steps of the blend cross-fade (default 10); the node's blend_steps")
    parser.add_argument("--simulate-latency", default=None, metavar="MS[,MS...]",
                        help="also run the node's async schedule with every chunk_aggregation (and temporal "
                             "ensembling) on a simulated clock with these inference latencies, e.g. 100,300,600: "
                             "writes schedules.md and schedules.png")
    add_backend_option_argument(parser)
    bag = add_recording_arguments(parser, rate_help="control rate in Hz: rosbag2 sampling rate and rate-criterion "
                                                    "target (default: dataset fps; 30 for bags)")
    bag.add_argument("--action-topic", default=None,
                     help="rosbag2: recorded commands, a JointState (e.g. a leader arm) or Float64MultiArray topic")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, for the report."""
    parts = ["act-policy", "replay", str(args.path), "--data", str(args.data),
             *(["--backends", args.backends] if args.backends else []), "--out", str(args.out), *recording_flags(args)]
    for flag, value in (("--max-steps", args.max_steps),
                        ("--n-action-steps", args.n_action_steps),
                        ("--temporal-ensemble-coeff", args.temporal_ensemble_coeff),
                        ("--refill-threshold", args.refill_threshold), ("--threads", args.threads),
                        ("--simulate-latency", args.simulate_latency)):
        if value is not None:
            parts += [flag, str(value)]
    if args.chunk_aggregation != "latest" or args.simulate_latency:
        parts += ["--chunk-aggregation", args.chunk_aggregation, "--blend-steps", str(args.blend_steps)]
    parts += [a for option in args.backend_option for a in ("--backend-option", option)]
    if args.action_topic:
        parts += ["--action-topic", args.action_topic]
    return " ".join(shlex.quote(p) for p in parts)


def _progress(backend: str, step: int, total: int) -> None:
    if step == total or step % 25 == 0:
        print(f"\r  {backend}: step {step}/{total}", end="\n" if step == total else "", file=sys.stderr, flush=True)


def console_table(result: ReplayResult) -> list[str]:
    """One line per backend: errors, latency and rate verdict (errors only for an emulated backend)."""
    lines = [f"{'backend':<20}{'err vs rec':>12}{'err vs fp32':>12}{'norm L2':>9}{'|bias| σ':>9}{'p50 ms':>9}"
             f"{'p95 ms':>9}{'budget':>9}  rate"]
    for r in result.runs:
        rec = f"{r.vs_recorded.mean.mean():.4g}" if r.vs_recorded else "-"
        ref = f"{r.vs_reference.mean.mean():.4g}" if r.vs_reference else "-"
        f = r.fidelity
        ref = f"{ref:>12}" + (f"{f['rel_l2_normalized'] * 100:>8.2f}%{f['max_abs_bias_normalized']:>9.3f}"
                              if f else f"{'-':>9}{'-':>9}")
        if r.rate is None:  # a stand-in runtime: its latency is not the device's
            lines.append(f"{r.backend:<20}{rec:>12}{ref}{'emulated':>9}{'-':>9}{'-':>9}  "
                         "emulated: no latency, no verdict")
            continue
        verdict = "met" if r.rate.met else "MISSED"
        lines.append(f"{r.backend:<20}{rec:>12}{ref}{r.latency.p50:>9.1f}{r.latency.p95:>9.1f}"
                     f"{r.rate.budget_ms:>9.1f}  {verdict} at {r.rate.rate_hz:g} Hz "
                     f"(max {r.rate.max_rate_hz:.1f} Hz)")
    return lines


def _latencies(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--simulate-latency: expected milliseconds like 100,300,600, got {text!r}")
    if not values or any(not v >= 0 for v in values):
        raise SystemExit(f"--simulate-latency: expected non-negative milliseconds like 100,300,600, got {text!r}")
    return values


def _compare_schedules(args: argparse.Namespace, artifacts, episode, joint_names, latencies):
    """The schedule comparison on the reference backend, or None when no latency was asked for."""
    if not latencies:
        return None
    from act_policy.backends import BackendOptions, create_backend
    from act_policy.core.policy import Policy
    from act_policy.evaluation.schedules import compare_schedules

    policy = Policy(artifacts, create_backend(reference_backend(), artifacts, BackendOptions(num_threads=args.threads)))
    try:
        return compare_schedules(policy, episode, latencies, n_action_steps=args.n_action_steps,
                                 refill_threshold=args.refill_threshold, coeff=args.temporal_ensemble_coeff,
                                 blend_steps=args.blend_steps, joint_names=joint_names)
    finally:
        policy.close()


def run(args: argparse.Namespace) -> int:
    from act_policy.core.policy import load_artifacts
    from act_policy.data import read_episode
    from act_policy.evaluation.plots import write_report
    from act_policy.evaluation.replay import replay
    from act_policy.export.demo_bundle import resolve_demo

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    latencies = _latencies(args.simulate_latency)
    if args.blend_steps < 0:
        raise SystemExit(f"--blend-steps: expected >= 0, got {args.blend_steps}")
    reference = reference_backend()
    backend_options = parse_backend_options(args.backend_option, [reference, *backends])
    artifacts = load_artifacts(resolve_demo(args.path, [reference, *backends]))
    episode = read_episode(args.data, args.episode, artifacts.spec, bag_options(args, args.action_topic))
    if args.max_steps is not None:
        episode = episode.head(args.max_steps)
    print(f"episode: {len(episode)} steps at {episode.fps:g} fps from {args.data} ({' '.join(episode.notes)})")
    # settings the policy or the rate check refuse (n_action_steps, threshold) raise SettingError
    result = replay(artifacts, episode, backends, rate_hz=args.rate, n_action_steps=args.n_action_steps,
                    temporal_ensemble_coeff=args.temporal_ensemble_coeff, refill_threshold=args.refill_threshold,
                    num_threads=args.threads, latency_samples=args.latency_samples,
                    backend_options=backend_options, progress=_progress,
                    chunk_aggregation=args.chunk_aggregation, blend_steps=args.blend_steps)
    schedules = _compare_schedules(args, artifacts, episode, result.joint_names, latencies)
    report = write_report(result, args.out, _command(args))
    numbers = result.as_dict()
    if schedules is not None:
        from act_policy.evaluation.schedules import markdown_table, plot_comparison

        plot = plot_comparison(schedules, args.out / "schedules.png")
        (args.out / "schedules.md").write_text(f"# Schedules with simulated latency\n\n```\n{_command(args)}\n```\n\n"
                                               f"{markdown_table(schedules)}\n![schedules]({plot.name})\n")
        numbers["schedules"] = schedules.as_dict()
    (args.out / "replay.json").write_text(json.dumps(numbers, indent=2))

    print()
    print("\n".join(console_table(result)))
    if schedules is not None:
        print(f"\nschedules with simulated latency: {args.out / 'schedules.md'}")
    print(f"\nreport: {report}")
    return 0

"""Write a Hailo compile kit (ONNX, calibration set, model script, hailo_compile.sh) for a deploy bundle.

Run it anywhere; then run the kit's hailo_compile.sh on an x86_64 Linux machine with the
Hailo Dataflow Compiler and copy the resulting hef/ files into BUNDLE/hailo/ on the robot.
Calibration sources are those of `act-policy quantize`: a folder of .npz observations
recorded on the robot, a LeRobot dataset (--episode), a rosbag2 (--state-topic, --camera
FEATURE=TOPIC, --joint-names, --joint-scale, --joint-offset, --rate, or --node-params with the
node's params file), or 'synthetic' (demo scenes; fine for trying the flow, not for deployment).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from act_policy.core.dependencies import require_all
from act_policy.core.errors import CheckpointError
from act_policy.hailo.kit import ARCHES, DEFAULT_CALIB_SIZE, FULL_DATASET, KIT_MODULES
from act_policy.tools.recording_options import add_recording_arguments, bag_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="deploy bundle folder (from `act-policy export`), or 'demo'")
    parser.add_argument("--calib", required=True,
                        help="calibration observations: a folder of .npz files, a LeRobot dataset, a rosbag2, "
                             "or 'synthetic'")
    parser.add_argument("--arch", required=True, choices=ARCHES,
                        help="target chip: hailo8l (AI Kit, AI HAT+ 13 TOPS) or hailo8 (AI HAT+ 26 TOPS)")
    parser.add_argument("--out", required=True, type=Path, help="kit folder to create")
    parser.add_argument("--full", action="store_true",
                        help="also add the whole network (act_full) for backend mode=full; often fails to parse")
    parser.add_argument("--calib-size", type=int, default=DEFAULT_CALIB_SIZE, metavar="N",
                        help=f"calibration frames per model (default {DEFAULT_CALIB_SIZE}: the images Hailo's "
                             "optimization levels 2 and 4 train on)")
    parser.add_argument("--optimization-level", type=int, default=None, choices=range(5), metavar="0-4",
                        help=f"model_optimization_flavor level (default: 2 for a model with >= {FULL_DATASET} "
                             "calibration frames, else 0; the full network: 0, as the Model Zoo's DETR recipe). "
                             "Without a GPU the DFC runs level 0 whatever is asked; hailo_compile.sh records the "
                             "level that ran")
    parser.add_argument("--force", action="store_true", help="replace an existing kit folder")
    add_recording_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from act_policy.export import load_bundle, stderr_progress
    from act_policy.export.bundle import is_bundle
    from act_policy.export.calibration import calibration_observations, calibration_source
    from act_policy.export.demo_bundle import resolve_demo
    from act_policy.hailo.kit import write_kit

    require_all(KIT_MODULES, "act-policy hailo-prepare")
    args.bundle = Path(resolve_demo(args.bundle, [], need_bundle=True))
    if not is_bundle(args.bundle):
        raise CheckpointError(f"{args.bundle}: not a deploy bundle (no policy.json); run "
                              f"`act-policy export CHECKPOINT --out BUNDLE` first")
    if args.calib_size < 1:
        raise CheckpointError(f"--calib-size must be at least 1, got {args.calib_size}")
    artifacts = load_bundle(args.bundle)
    source = calibration_source(args.calib, args.episode, bag_options(args))
    observations = calibration_observations(source, artifacts.spec, artifacts.input_stats, args.calib_size)
    # the first observation read now: a recording that cannot be read (a decoder not installed, a wrong topic)
    # fails before the kit folder is touched
    observations = itertools.chain(list(itertools.islice(observations, 1)), observations)
    manifest = write_kit(artifacts, args.out, args.arch, observations, full=args.full, calib_size=args.calib_size,
                         optimization_level=args.optimization_level, progress=stderr_progress, overwrite=args.force)
    print(f"kit: {args.out} ({args.arch}; models: {', '.join(m.name for m in manifest.models)})")
    print(f"next, on x86_64 Linux with the Hailo DFC:  bash {args.out / 'hailo_compile.sh'}")
    print(f"then on the robot:  mkdir -p {args.bundle}/hailo && cp hef/*.hef hef/*.hef.json {args.bundle}/hailo/")
    return 0

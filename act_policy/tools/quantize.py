"""Calibrate and quantize a bundle to static INT8 (act_int8.onnx, used by backend cpu_int8).

BUNDLE may be `demo`: the cached demo bundle (calibrated on synthetic scenes only).
--calib SOURCE: a .npz file or a folder of .npz observations (keys = input feature names, images uint8
HxWx3 RGB, vectors float; one observation per file, or an episode with a leading time axis),
a LeRobot dataset (--episode N), or a rosbag2 (--state-topic, --camera FEATURE=TOPIC,
--joint-names, --joint-scale, --joint-offset, --rate, or the node's params file), e.g.

  act-policy quantize BUNDLE --calib my_bag/ --camera front=/cam/image_raw --rate 10 \\
      --joint-names shoulder_pan,shoulder_lift,elbow_flex,wrist_flex,wrist_roll,gripper --joint-scale 57.29578
  act-policy quantize BUNDLE --calib my_bag/ --node-params config/so101_follower.yaml --rate 10

A bag holds ROS units (radians): give the node's joint_scale / joint_offset so the state is
calibrated in the units the node feeds the policy.

Without --calib (or --calib synthetic) the demo's synthetic scenes are used: fine for trying
things out, not for a robot. Fewer observations than --samples is an error, never a silent cut.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from act_policy.core.policy import load_policy
from act_policy.core.synthetic import DEMO_NAME
from act_policy.export import reference_policy, stderr_progress
from act_policy.export.calibration import SYNTHETIC, CalibrationError, calibration_source
from act_policy.export.fidelity import compare, held_out_observations
from act_policy.export.quantize import ACTIVATION_TYPES, quantize_bundle
from act_policy.tools.options import add_allow_missing_stats_argument
from act_policy.tools.recording_options import add_recording_arguments, bag_options

DEFAULT_SAMPLES = 64
CHECK_SAMPLES = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder written by `act-policy export`, or 'demo'")
    parser.add_argument("--calib", default=None,
                        help=f"folder of .npz observations, LeRobot dataset, rosbag2, or '{SYNTHETIC}' (default)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"calibration observations to use (default {DEFAULT_SAMPLES})")
    parser.add_argument("--activation-type", choices=ACTIVATION_TYPES, default="u8",
                        help="INT8 activation type: u8 (default, fastest on x86 VNNI) or s8 (try on ARM)")
    parser.add_argument("--head", action="store_true",
                        help="also calibrate head_int8.onnx, the CPU half of the hailo backend's hybrid mode "
                             "(a second calibration; without it that mode runs head.onnx in float)")
    add_allow_missing_stats_argument(parser)
    add_recording_arguments(parser)


def run(args: argparse.Namespace) -> int:
    source = calibration_source(args.calib, args.episode, bag_options(args))
    if args.bundle == DEMO_NAME and not Path(args.bundle).exists():
        if source is not None:
            raise CalibrationError(f"--calib {args.calib}: the demo policy has random weights and is calibrated on "
                                   f"synthetic scenes only; run `act-policy export demo --out BUNDLE` and quantize "
                                   "BUNDLE to try other data")
        from act_policy.export.demo_bundle import demo_bundle

        args.bundle = str(demo_bundle([], args.samples))
    record = quantize_bundle(args.bundle, source, args.samples, stderr_progress, args.activation_type,
                             head=args.head, allow_missing_stats=args.allow_missing_stats)
    stderr_progress("checking act_int8.onnx against the float32 torch model")
    int8 = load_policy(args.bundle, backend="cpu_int8")
    reference = reference_policy(int8.artifacts)
    held_out = held_out_observations(int8.artifacts, CHECK_SAMPLES)
    errors = compare([reference.predict_chunk(o) for o in held_out], [int8.predict_chunk(o) for o in held_out],
                     int8.artifacts)
    print(f"wrote {args.bundle}/{record['graph']}: calibrated on {record['calibration_samples']} observations "
          f"({record['calibration_source']}), {record['activation_type']} activations; vs float32 on "
          f"{CHECK_SAMPLES} synthetic scenes: relative L2 {errors['rel_l2'] * 100:.2f} % "
          f"({errors['rel_l2_normalized'] * 100:.2f} % normalized), max abs {errors['max_abs']:.4g} (action units)")
    return 0

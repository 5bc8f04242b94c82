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

from act_policy.core.dependencies import require_all
from act_policy.core.policy import load_policy
from act_policy.core.synthetic import DEMO_NAME
from act_policy.export import reference_policy, stderr_progress
from act_policy.export.calibration import SYNTHETIC, CalibrationError, calibration_observations, calibration_source
from act_policy.export.equalization import PAIR_GROUPS
from act_policy.export.fidelity import compare, held_out_observations, summary_line
from act_policy.export.quantize import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    DEFAULT_RECIPE,
    NODE_GROUPS,
    WEIGHT_ROUNDINGS,
    Recipe,
    quantize_bundle,
)
from act_policy.tools.options import add_allow_missing_stats_argument
from act_policy.tools.recording_options import add_recording_arguments, bag_options

# the float32 torch reference, the graphs, ONNX Runtime's calibration (onnx and onnxruntime are imported above too)
QUANTIZE_MODULES = ("torch", "onnx", "onnxruntime")
DEFAULT_SAMPLES = 64
CHECK_SAMPLES = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder written by `act-policy export`, or 'demo'")
    parser.add_argument("--calib", default=None,
                        help=f"folder of .npz observations, LeRobot dataset, rosbag2, or '{SYNTHETIC}' (default)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"calibration observations to use (default {DEFAULT_SAMPLES})")
    recipe = parser.add_argument_group("recipe (defaults: the measured recipe of benchmarks/int8_recipe.md)")
    recipe.add_argument("--float-groups", default=",".join(sorted(DEFAULT_RECIPE.float_groups)),
                        help="comma-separated node groups kept in float, of: " + ", ".join(NODE_GROUPS)
                             + f" (default {','.join(sorted(DEFAULT_RECIPE.float_groups))}; '' quantizes all)")
    recipe.add_argument("--float-nodes", default=",".join(DEFAULT_RECIPE.float_patterns),
                        help="comma-separated parts of node names kept in float as well, e.g. /backbone/layer2/")
    recipe.add_argument("--calibration", choices=sorted(CALIBRATION_METHODS), default=DEFAULT_RECIPE.calibration,
                        help=f"activation range calibration (default {DEFAULT_RECIPE.calibration})")
    recipe.add_argument("--percentile", type=float, default=DEFAULT_RECIPE.percentile,
                        help=f"with --calibration percentile (default {DEFAULT_RECIPE.percentile})")
    recipe.add_argument("--bias-correction", action=argparse.BooleanOptionalAction,
                        default=DEFAULT_RECIPE.bias_correction,
                        help="remove the mean per-joint INT8 offset measured on the calibration observations "
                             f"(default {'on' if DEFAULT_RECIPE.bias_correction else 'off'})")
    recipe.add_argument("--layer-bias-correction", action=argparse.BooleanOptionalAction,
                        default=DEFAULT_RECIPE.layer_bias_correction,
                        help="add to each INT8 layer's bias the mean output shift INT8 gives it on the calibration "
                             f"observations (default {'on' if DEFAULT_RECIPE.layer_bias_correction else 'off'})")
    recipe.add_argument("--fold-relu", action=argparse.BooleanOptionalAction, default=DEFAULT_RECIPE.fold_relu,
                        help="fold each ReLU after an INT8 layer into that layer's INT8 output range instead of "
                             f"rounding the pre-ReLU values (default {'on' if DEFAULT_RECIPE.fold_relu else 'off'})")
    recipe.add_argument("--equalize", default=",".join(sorted(DEFAULT_RECIPE.equalization)),
                        help="comma-separated layer pairs given SmoothQuant activation equalization before "
                             "calibration, of: " + ", ".join(f"{k} ({v})" for k, v in PAIR_GROUPS.items())
                             + f" (default '{','.join(sorted(DEFAULT_RECIPE.equalization))}')")
    recipe.add_argument("--equalization-alpha", type=float, default=DEFAULT_RECIPE.equalization_alpha,
                        help="SmoothQuant exponent in [0, 1] for --equalize: 1 evens out activation ranges fully "
                             f"(default {DEFAULT_RECIPE.equalization_alpha:g})")
    recipe.add_argument("--weight-rounding", choices=list(WEIGHT_ROUNDINGS), default=DEFAULT_RECIPE.weight_rounding,
                        help="how s8 weights are rounded: "
                             + "; ".join(f"{k}: {v}" for k, v in WEIGHT_ROUNDINGS.items())
                             + f" (default {DEFAULT_RECIPE.weight_rounding})")
    recipe.add_argument("--activation-type", choices=ACTIVATION_TYPES, default=DEFAULT_RECIPE.activation_type,
                        help=f"INT8 activation type (default {DEFAULT_RECIPE.activation_type}); u8 and s8 give "
                             "identical actions on ARM")
    parser.add_argument("--head", action="store_true",
                        help="also calibrate head_int8.onnx, the CPU half of the hailo backend's hybrid mode "
                             "(a second calibration; without it that mode runs head.onnx in float)")
    add_allow_missing_stats_argument(parser)
    add_recording_arguments(parser)


def _names(option: str) -> list[str]:
    return [name.strip() for name in option.split(",") if name.strip()]


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    return Recipe(frozenset(_names(args.float_groups)), tuple(_names(args.float_nodes)), args.calibration,
                  args.percentile, args.activation_type, args.bias_correction, args.layer_bias_correction,
                  args.fold_relu, frozenset(_names(args.equalize)), args.equalization_alpha, args.weight_rounding)


def recipe_options(recipe: Recipe) -> list[str]:
    """The command-line options that select ``recipe``."""
    options = [f"--float-groups={','.join(sorted(recipe.float_groups))}"]
    options += [f"--float-nodes={','.join(recipe.float_patterns)}"] if recipe.float_patterns else []
    options.append(f"--calibration={recipe.calibration}")
    if recipe.calibration == "percentile":
        options.append(f"--percentile={recipe.percentile:g}")
    options += ["--bias-correction" if recipe.bias_correction else "--no-bias-correction",
                "--layer-bias-correction" if recipe.layer_bias_correction else "--no-layer-bias-correction",
                "--fold-relu" if recipe.fold_relu else "--no-fold-relu",
                f"--equalize={','.join(sorted(recipe.equalization))}",
                f"--equalization-alpha={recipe.equalization_alpha:g}",
                f"--weight-rounding={recipe.weight_rounding}",
                f"--activation-type={recipe.activation_type}"]
    return options


def run(args: argparse.Namespace) -> int:
    require_all(QUANTIZE_MODULES, "act-policy quantize")
    recipe = recipe_from_args(args)  # before minutes of calibration
    source = calibration_source(args.calib, args.episode, bag_options(args))
    if args.bundle == DEMO_NAME and not Path(args.bundle).exists():
        if source is not None:
            raise CalibrationError(f"--calib {args.calib}: the demo policy has random weights and is calibrated on "
                                   f"synthetic scenes only; run `act-policy export demo --out BUNDLE` and quantize "
                                   "BUNDLE to try other data")
        from act_policy.export.demo_bundle import demo_bundle

        args.bundle = str(demo_bundle([], args.samples))
    record = quantize_bundle(args.bundle, source, args.samples, stderr_progress, recipe, head=args.head,
                             allow_missing_stats=args.allow_missing_stats)
    stderr_progress("checking act_int8.onnx against the float32 torch model on held-out observations")
    int8 = load_policy(args.bundle, backend="cpu_int8")
    reference = reference_policy(int8.artifacts)
    spec, stats = int8.artifacts.spec, int8.artifacts.input_stats
    held_out = {f"{CHECK_SAMPLES} held-out synthetic scenes": held_out_observations(int8.artifacts, CHECK_SAMPLES)}
    if source is not None:  # steps of the same recording that calibration did not use
        recorded = list(calibration_observations(source, spec, stats, args.samples, held_out=CHECK_SAMPLES))
        if recorded:
            held_out = {f"{len(recorded)} held-out steps of {source}": recorded, **held_out}
    print(f"wrote {args.bundle}/{record['graph']}: calibrated on {record['calibration_samples']} observations "
          f"({record['calibration_source']}), recipe {' '.join(recipe_options(recipe))}")
    for what, observations in held_out.items():
        errors = compare([reference.predict_chunk(o) for o in observations],
                         [int8.predict_chunk(o) for o in observations], int8.artifacts)
        print(f"vs float32 on {what} (not used for calibration): {summary_line(errors)}")
        for joint, e in errors["per_joint"].items():
            print(f"  {joint}: bias {e['bias']:+.4f} sigma, RMS {e['rms']:.4f} sigma, "
                  f"relative L2 {e['rel_l2'] * 100:.2f} %")
    return 0

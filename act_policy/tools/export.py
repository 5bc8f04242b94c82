"""Export a LeRobot ACT checkpoint to a deploy bundle (policy.json, weights, ONNX graphs).

CHECKPOINT may be `demo` (the seeded default-size policy). The bundle runs with every backend
without the original checkpoint; each ONNX graph is checked against torch before it is kept
(max |ONNX - torch| <= 1e-4 + 1e-5 x the largest output: float32 rounding grows with the
values a graph carries). The bundle is written to a temporary folder and renamed into place, so
a failed export leaves nothing behind. Then optionally:
act-policy quantize BUNDLE --calib OBSERVATIONS
"""

from __future__ import annotations

import argparse

from act_policy.core.dependencies import require_all
from act_policy.core.policy import load_artifacts
from act_policy.export import EXPORT_MODULES, export_bundle
from act_policy.tools.options import add_allow_missing_stats_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="LeRobot pretrained_model folder (or an existing bundle, or 'demo')")
    parser.add_argument("--out", required=True, help="bundle folder to create")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    add_allow_missing_stats_argument(parser)


def run(args: argparse.Namespace) -> int:
    require_all(EXPORT_MODULES, "act-policy export")  # before reading the checkpoint
    export_bundle(load_artifacts(args.checkpoint), args.out, overwrite=args.force,
                  allow_missing_stats=args.allow_missing_stats)
    print(f"bundle written to {args.out}")
    return 0

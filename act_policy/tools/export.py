"""Export a LeRobot ACT checkpoint to a deploy bundle (policy.json, weights, ONNX graphs).

The bundle runs with every backend without the original checkpoint; each ONNX graph is checked
against torch (max abs difference ≤ 1e-4) before it is kept. Then optionally:
act-policy quantize BUNDLE --calib OBSERVATIONS
"""

from __future__ import annotations

import argparse

from act_policy.core.policy import load_artifacts
from act_policy.export import export_bundle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="LeRobot pretrained_model folder (or an existing bundle)")
    parser.add_argument("--out", required=True, help="bundle folder to create")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")


def run(args: argparse.Namespace) -> int:
    export_bundle(load_artifacts(args.checkpoint), args.out, overwrite=args.force)
    print(f"bundle written to {args.out}")
    return 0

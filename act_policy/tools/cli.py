"""``act-policy`` entry point: dispatches to one module per sub-command.

A tool module provides ``add_arguments(parser)`` and ``run(args) -> int`` and a docstring used
as its ``--help`` description. Only the chosen command's module is imported, so a command never
needs another command's optional dependencies (``demo`` runs with torch alone, without the
``onnx`` or ``replay`` extras; ``demo``/``benchmark``/``replay`` of a bundle on ONNX Runtime need no
torch). A missing optional package is reported with what to install
(:mod:`act_policy.core.dependencies`), never as a traceback. Adding a tool is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from act_policy.core.dependencies import needs
from act_policy.core.errors import ActPolicyError

# name → (module, one-line summary for `act-policy --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("act_policy.tools.demo", "run a policy on a synthetic arm and camera; per-stage latency"),
    "info": ("act_policy.tools.info", "features, shapes, normalization, size and MACs of a checkpoint or bundle"),
    "export": ("act_policy.tools.export", "LeRobot checkpoint → deploy bundle (policy.json, weights, ONNX)"),
    "quantize": ("act_policy.tools.quantize", "calibrate a bundle to static INT8"),
    "benchmark": ("act_policy.tools.benchmark", "latency, speedup and action fidelity of backends in one run"),
    "hailo-prepare": ("act_policy.tools.hailo_prepare", "write a Hailo compile kit (ONNX → HEF) for a bundle"),
    "replay": ("act_policy.tools.replay", "replay a recorded episode through backends, with plots"),
}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _chosen_command(argv: list[str]) -> str | None:
    return next((arg for arg in argv if arg in COMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with needs(f"act-policy {_chosen_command(argv)}"):
            return _main(argv)
    except ActPolicyError as exc:
        print(f"act-policy {_chosen_command(argv)}: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="act-policy", description="Run and deploy LeRobot ACT policies.")
    parser.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS,
                        help="Python logging level (default: WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = _chosen_command(argv)
    module = None
    for name, (module_name, summary) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=summary)
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=summary, description=module.__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())

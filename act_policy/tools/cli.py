"""``act-policy`` entry point: dispatches to one module per sub-command.

A tool module provides ``add_arguments(parser)`` and ``run(args) -> int``, plus a one-line
module docstring used as its help text; adding a tool is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from act_policy.core.errors import ActPolicyError

COMMANDS: dict[str, str] = {
    "demo": "act_policy.tools.demo",
    "info": "act_policy.tools.info",
    "export": "act_policy.tools.export",
    "quantize": "act_policy.tools.quantize",
    "benchmark": "act_policy.tools.benchmark",
    "hailo-prepare": "act_policy.tools.hailo_prepare",
    "replay": "act_policy.tools.replay",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="act-policy", description="Run and deploy LeRobot ACT policies.")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default: WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or "").strip().splitlines()[0]
        module.add_arguments(sub.add_parser(name, help=summary, description=module.__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter))
        modules[name] = module
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return modules[args.command].run(args)
    except ActPolicyError as exc:
        print(f"act-policy {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

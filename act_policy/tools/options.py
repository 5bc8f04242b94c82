"""Command-line options shared by tools: ``--backend-option BACKEND.KEY=VALUE`` and ``--allow-missing-stats``.

One parser for every tool that runs backends (benchmark, replay, demo), so the syntax and its
errors are the same everywhere. VALUE is read as JSON when it parses (``5000``, ``true``,
``{"backbone_480x640": "a.hef"}``) and kept as a plain string otherwise (``full``, ``cpu_int8``).
Each option goes to the ``BackendOptions.extra`` of the named backend only: the CPU backends do
not see the Hailo settings.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from typing import Any

from act_policy.backends import BACKENDS, backend_class
from act_policy.core.errors import BackendError

FLAG = "--backend-option"


def add_backend_option_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(FLAG, action="append", default=[], metavar="BACKEND.KEY=VALUE", dest="backend_option",
                        help="a backend-specific setting, e.g. hailo.timeout_ms=5000 or hailo.head=fp32; VALUE is "
                             "JSON or a plain string; repeat for several")


def parse_backend_options(items: Sequence[str], backends: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{backend: {key: value}}`` from ``BACKEND.KEY=VALUE`` items, for the ``backends`` this run uses.

    An option for a backend that does not exist or does not run here, or one the backend does not
    take (:meth:`Backend.check_options`), is an error rather than silently ignored: a typo must not
    leave the default in place unnoticed, nor be found only after minutes of export.
    """
    running = list(backends)
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        backend, dot, key = target.partition(".")
        if not sep or not dot or not backend or not key:
            raise BackendError(f"{FLAG} {item!r}: expected BACKEND.KEY=VALUE, e.g. hailo.timeout_ms=5000")
        if backend not in BACKENDS:
            raise BackendError(f"{FLAG} {item!r}: unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        if backend not in running:
            raise BackendError(f"{FLAG} {item!r}: backend {backend!r} is not run here (backends: "
                               f"{', '.join(running)})")
        if key in options.get(backend, {}):
            raise BackendError(f"{FLAG} {item!r}: {backend}.{key} is given twice")
        options.setdefault(backend, {})[key] = _value(raw)
    for backend, extra in options.items():
        try:
            backend_class(backend).check_options(extra)
        except BackendError as exc:
            raise BackendError(f"{FLAG}: {exc}") from None
    return options


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


ALLOW_MISSING_STATS = "--allow-missing-stats"


def add_allow_missing_stats_argument(parser: argparse.ArgumentParser) -> None:
    """The explicit consent to deploy a policy whose config normalizes a feature it has no stats for."""
    parser.add_argument(ALLOW_MISSING_STATS, action="store_true",
                        help="accept a checkpoint whose config normalizes a feature it has no statistics for "
                             "(the feature then passes through unnormalized, as LeRobot does); refused by default")

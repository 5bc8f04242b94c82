"""Latency and rate statistics shared by the demo, the benchmarks and the ROS node's diagnostics."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def as_dict(self, digits: int = 3) -> dict[str, float | int]:
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def summarize(samples: list[float] | np.ndarray) -> Summary:
    """Percentiles with linear interpolation (NumPy's default); NaN everywhere when empty."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan)
    p50, p95, p99 = np.percentile(values, (50, 95, 99))
    return Summary(int(values.size), float(p50), float(p95), float(p99), float(values.max()), float(values.mean()))


class RollingWindow:
    """The last ``size`` samples of one quantity (e.g. inference milliseconds)."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(float(value))

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def summary(self) -> Summary:
        return summarize(list(self._values))


class RateMeter:
    """Message or tick rate and period jitter from arrival times (seconds, steady clock)."""

    def __init__(self, size: int = 100) -> None:
        self._stamps: deque[float] = deque(maxlen=size)

    def tick(self, now: float) -> None:
        self._stamps.append(now)

    def rate_hz(self) -> float:
        if len(self._stamps) < 2:
            return 0.0
        span = self._stamps[-1] - self._stamps[0]
        return (len(self._stamps) - 1) / span if span > 0 else 0.0

    def periods_ms(self) -> np.ndarray:
        return np.diff(np.asarray(self._stamps)) * 1e3

    def jitter_ms(self, nominal_period_ms: float) -> float:
        """Largest deviation of a period from the nominal one."""
        periods = self.periods_ms()
        return float(np.max(np.abs(periods - nominal_period_ms))) if periods.size else 0.0


def format_table(rows: list[tuple[str, Summary]], unit: str = "ms") -> str:
    """Fixed-width table of summaries, one row per stage."""
    header = f"{'stage':<14}{'n':>6}{'p50':>10}{'p95':>10}{'max':>10}  ({unit})"
    lines = [header, "-" * len(header)]
    for name, s in rows:
        lines.append(f"{name:<14}{s.count:>6}{s.p50:>10.2f}{s.p95:>10.2f}{s.max:>10.2f}")
    return "\n".join(lines)

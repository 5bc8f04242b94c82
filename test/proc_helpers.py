"""Facts about other processes from Linux's /proc (tests of process isolation)."""

from __future__ import annotations

import re
from pathlib import Path


def _stat_fields(stat: Path) -> list[str]:
    """Fields after the command name (which may contain spaces): state is [0], nice is [16]."""
    return stat.read_text().rsplit(")", 1)[1].split()


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie only waits for its parent to reap it)."""
    try:
        return _stat_fields(Path(f"/proc/{pid}/stat"))[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def thread_nice_values(pid: int) -> dict[str, int]:
    """The nice value of every thread of ``pid``, by thread id (on Linux, nice is per thread)."""
    return {task.name: int(_stat_fields(task / "stat")[16]) for task in Path(f"/proc/{pid}/task").iterdir()}


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")


def thread_slices_ns(pid: int) -> dict[str, int]:
    """The EEVDF slice of every thread of ``pid`` by thread id (``se.slice`` of /proc/PID/task/TID/sched);
    empty where the kernel does not show it. A thread that ends during the scan is left out."""
    slices = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "sched").read_text().splitlines()
        except FileNotFoundError:
            continue
        found = [int(line.split(":")[1]) for line in lines if line.startswith("se.slice")]
        if found:
            slices[task.name] = found[0]
    return slices


def autogroup_nice(pid: int) -> int | None:
    """The nice value of the autogroup (session) of ``pid`` (man 7 sched): None without autogroups, or in
    init's session, whose file is empty."""
    path = Path(f"/proc/{pid}/autogroup")
    match = re.fullmatch(r"/autogroup-\d+ nice (-?\d+)\n", path.read_text()) if path.exists() else None
    return int(match[1]) if match else None

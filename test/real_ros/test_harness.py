"""The harness itself: a process that does not exit after Ctrl-C fails its test with evidence of why."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .ros_harness import NodeProcess, wait_until

# ignores SIGINT and starts a child in a session of its own (as the node starts its inference process)
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time\\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\\n"
                          "def waits_in_the_child():\\n    time.sleep(600)\\nwaits_in_the_child()"],
                         start_new_session=True)
print("child", child.pid, flush=True)
def waits_in_the_parent():
    time.sleep(600)
waits_in_the_parent()
"""


def test_a_process_that_ignores_ctrl_c_fails_with_the_stacks_of_it_and_of_its_children(tmp_path: Path) -> None:
    process = NodeProcess([sys.executable, "-c", STUBBORN], os.environ, tmp_path / "stubborn.log")
    child = ""
    try:
        child = wait_until(lambda: next((line.split()[1] for line in process.output.splitlines()
                                         if line.startswith("child")), ""), "the child to start")
        with pytest.raises(AssertionError, match="did not exit within 1 s of SIGINT") as failure:
            process.interrupt(timeout=1.0)
        evidence = str(failure.value)
        assert f"--pid {process.process.pid}:" in evidence and "waits_in_the_parent" in evidence
        assert f"--pid {child}:" in evidence and "waits_in_the_child" in evidence
    finally:
        process.kill()
        if child:
            os.kill(int(child), 9)

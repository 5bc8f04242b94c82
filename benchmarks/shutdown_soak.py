#!/usr/bin/env python3
"""Ctrl-C soak: launch, wait for commands, SIGINT, repeat; how long each exit took and whether it was clean.

Each cycle runs ``ros2 launch act_policy <launch file> params_file:=<file>`` in its own process group,
waits until the node publishes commands (the driver stand-in feeds it), sends SIGINT to the group as a
terminal's Ctrl-C does, and records the seconds until ``ros2 launch`` exited, whether launch had to
escalate to SIGTERM/SIGKILL, and every error or traceback line. Needs a sourced ROS 2 with this package
built. Example (the result in benchmarks/README.md):

    python3 benchmarks/shutdown_soak.py --cycles 20 --json benchmarks/shutdown_soak_x86_2core.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control_timing import stop_launch  # a sibling script, not a package

REPO = Path(__file__).resolve().parents[1]


def cycle(args: argparse.Namespace, node: Node, arrivals: list[float]) -> dict[str, object]:
    output: list[str] = []
    launch = subprocess.Popen(["ros2", "launch", "act_policy", args.launch_file, f"params_file:={args.params_file}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    threading.Thread(target=lambda: output.extend(launch.stdout), daemon=True).start()
    start, seen = time.monotonic(), len(arrivals)
    while len(arrivals) < seen + args.commands and time.monotonic() - start < args.startup_timeout:
        rclpy.spin_once(node, timeout_sec=0.05)
    commanding = len(arrivals) >= seen + args.commands
    return {"commanding_before_sigint": commanding, **stop_launch(launch, output, timeout=60.0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--launch-file", default="pi5_cpu.launch.py")
    p.add_argument("--params-file", default=str(REPO / "config" / "demo.yaml"),
                   help="default: config/demo.yaml (seeded default-size policy, cpu_fp32)")
    p.add_argument("--command-topic", default="/act_policy_demo/commands")
    p.add_argument("--commands", type=int, default=30, help="commands to receive before each SIGINT")
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    standin = subprocess.Popen([sys.executable, str(REPO / "scripts" / "ros_driver_standin.py"), "--camera",
                                "/camera/image_raw", "--command-topic", "/soak/standin_unused", "--duration", "1e9"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rclpy.init()
    node = Node("shutdown_soak")
    arrivals: list[float] = []
    node.create_subscription(Float64MultiArray, args.command_topic, lambda _: arrivals.append(time.monotonic()), 10)
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results = []
    try:
        for i in range(args.cycles):
            results.append(cycle(args, node, arrivals))
            print(i + 1, json.dumps(results[-1]), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        standin.send_signal(signal.SIGINT)
        standin.wait(10)
    exits = np.array([r["exit_s"] for r in results])
    node_exits = np.array([r["node_exit_s"] for r in results if r["node_exit_s"] is not None])
    summary = {"cycles": len(results),
               "all_commanding_before_sigint": all(r["commanding_before_sigint"] for r in results),
               "exit_s_p50": round(float(np.median(exits)), 3), "exit_s_max": round(float(exits.max()), 3),
               "node_exit_s_p50": round(float(np.median(node_exits)), 3) if len(node_exits) else None,
               "node_exit_s_max": round(float(node_exits.max()), 3) if len(node_exits) else None,
               "escalations": sum(r["escalated"] for r in results),
               "not_finished_cleanly": sum(not r["finished_cleanly"] for r in results),
               "cycles_with_error_lines": sum(bool(r["error_lines"]) for r in results)}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(shlex.quote(a) for a in sys.argv), "uptime_before": uptime_before,
            "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "summary": summary, "cycles": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()

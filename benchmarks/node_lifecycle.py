#!/usr/bin/env python3
"""Start-up time, resident memory and exit time of the real ``act_policy_node``, with and without torch.

Run with a sourced ROS 2 and a colcon-built act_policy (``source install/setup.bash``)::

    python3 benchmarks/node_lifecycle.py BUNDLE --runs 3 --json node_lifecycle.json

Per run it spawns the node as ``python3 -c "[import torch;] from act_policy.ros.node import main; main()"``
(variant ``plain`` / ``import-torch``; the installed act_policy decides whether torch is imported otherwise)
with ``config/demo.yaml`` and ``model_path:=BUNDLE backend:=cpu_int8``, and measures:

* **start-up**: spawn → ``change_state`` service up → configured (policy loaded) → active, by lifecycle
  service calls from this process;
* **memory**: the node's ``VmRSS`` after ``--run-s`` seconds of control with camera images and joint
  states from ``scripts/ros_driver_standin.py`` (480×640 rgb8 at 30 Hz), and its peak ``VmHWM``;
  whether ``libtorch_cpu.so`` is mapped into the process (``/proc/PID/maps``);
* **exit**: SIGINT (what Ctrl-C or ``ros2 launch`` sends) → process gone.

The stand-in runs once for the whole session. Timings depend on the machine and its load: compare
variants of one session, not numbers across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from std_msgs.msg import Float64MultiArray

ROOT = Path(__file__).resolve().parents[1]
NODE = "/act_policy"
COMMANDS = "/act_policy_demo/commands"  # config/demo.yaml
PRELOAD = {"plain": "", "import-torch": "import torch; "}


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def torch_mapped(pid: int) -> bool:
    return "libtorch_cpu.so" in Path(f"/proc/{pid}/maps").read_text()


def transition(client_node, client, transition_id: int) -> None:
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
    rclpy.spin_until_future_complete(client_node, future, timeout_sec=300)
    if not (future.done() and future.result().success):
        raise RuntimeError(f"lifecycle transition {transition_id} failed")


def one_run(bundle: Path, variant: str, run_s: float) -> dict:
    code = f"{PRELOAD[variant]}from act_policy.ros.node import main; main()"
    args = [sys.executable, "-c", code, "--ros-args", "--params-file", str(ROOT / "config" / "demo.yaml"),
            "-p", f"model_path:={bundle}", "-p", "backend:=cpu_int8", "--log-level", "warn"]
    client_node = rclpy.create_node("node_lifecycle_probe")
    commands = []
    client_node.create_subscription(Float64MultiArray, COMMANDS, commands.append, 10)
    client = client_node.create_client(ChangeState, f"{NODE}/change_state")
    t0 = time.perf_counter()
    node = subprocess.Popen(args)
    try:
        while not client.wait_for_service(timeout_sec=0.05):
            if node.poll() is not None:
                raise RuntimeError(f"node exited with {node.returncode}")
        t_up = time.perf_counter()
        transition(client_node, client, Transition.TRANSITION_CONFIGURE)
        t_configured = time.perf_counter()
        transition(client_node, client, Transition.TRANSITION_ACTIVATE)
        t_active = time.perf_counter()
        end = t_active + run_s
        while time.perf_counter() < end:
            rclpy.spin_once(client_node, timeout_sec=0.1)
        rss, hwm, mapped = status_kb(node.pid, "VmRSS"), status_kb(node.pid, "VmHWM"), torch_mapped(node.pid)
        t_sigint = time.perf_counter()
        node.send_signal(signal.SIGINT)
        node.wait(timeout=120)
        t_gone = time.perf_counter()
    finally:
        if node.poll() is None:
            node.kill()
        client_node.destroy_node()
    return {"variant": variant, "torch_mapped": mapped, "process_up_s": t_up - t0, "configure_s": t_configured - t_up,
            "startup_to_active_s": t_active - t0, "rss_mb": rss / 1024, "peak_rss_mb": hwm / 1024,
            "exit_s": t_gone - t_sigint, "commands_received": len(commands), "exit_code": node.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="deploy bundle with act_int8.onnx (act-policy quantize)")
    parser.add_argument("--variants", default="plain,import-torch", help="comma-separated: plain, import-torch")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant, interleaved (default 3)")
    parser.add_argument("--run-s", type=float, default=10.0, help="seconds of control before measuring memory")
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    rclpy.init()
    standin = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "ros_driver_standin.py"), "--camera",
                                "/camera/image_raw", "--command-topic", COMMANDS, "--duration", "100000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = []
    try:
        for _ in range(args.runs):
            for variant in variants:
                runs.append(one_run(args.bundle.resolve(), variant, args.run_s))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        standin.send_signal(signal.SIGINT)
        standin.wait(timeout=60)
        rclpy.shutdown()
    import act_policy

    print(f"act_policy from {Path(act_policy.__file__).parent}; load average {os.getloadavg()}")
    keys = ("startup_to_active_s", "configure_s", "rss_mb", "peak_rss_mb", "exit_s")
    print("| variant | torch in process | " + " | ".join(keys) + " | commands |")
    print("|---|---|" + "---|" * (len(keys) + 1))
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        cells = [f"{statistics.median(r[k] for r in mine):.2f}" for k in keys]
        print(f"| {variant} | {'/'.join(sorted({str(r['torch_mapped']) for r in mine}))} | " + " | ".join(cells)
              + f" | {min(r['commands_received'] for r in mine)} |")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "load_average": os.getloadavg()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

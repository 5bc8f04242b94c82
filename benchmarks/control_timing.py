#!/usr/bin/env python3
"""Control-loop timing of the real node on real ROS 2 while it infers, optionally under CPU stress.

For each combination of ``--backend``, ``--rate``, ``--stress``, ``--inference-nice`` and ``--isolation`` it launches
``ros2 launch act_policy pi5_cpu.launch.py`` with a generated params file (commands as
``sensor_msgs/JointState``, so the node's own stamps can be read), starts
``scripts/ros_driver_standin.py`` (camera 640x480 rgb8 at 30 Hz, joint states at 100 Hz), and records
for ``--duration`` seconds:

* command rate, inter-command gap and jitter (|gap - period|) p50/p99/max, on the receive side (this
  process's arrival times) and from the node's stamps (``header.stamp``, set right after each tick);
* inference latency (``~/latency``), the node's ``/diagnostics`` (missed ticks, overruns, late input
  callbacks, input ages) and every ``holding: ...`` line it logged;
* with ``--toggle``: after the window, how long commanding takes to resume after ``~/enable`` false → true
  and after deactivate → activate (first ``commanding`` log line), next to the inference time;
* how long ``ros2 launch`` takes to exit after SIGINT, and whether it had to escalate or printed errors.

Stress: ``inference`` makes inference continuous on every usable CPU (``num_threads`` = CPUs,
``refill_threshold`` = ``n_action_steps - 1``); ``inference+hog`` adds one busy-looping process per CPU at
normal priority. ``--inference-nice 0`` is the baseline: inference at the control thread's priority;
``--isolation thread`` vs ``process``: inference on a thread of the node, or in its child process.

Needs a sourced ROS 2 with this package built (``source install/setup.bash``). Writes JSON with the command
line, the machine and ``uptime`` before and after each run. Example (the numbers in benchmarks/README.md):

    python3 benchmarks/control_timing.py --bundle /tmp/demo_bundle --backend cpu_int8 --rate 30 --rate 100 \\
        --duration 60 --json benchmarks/control_timing_x86_2core.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from act_policy.msg import InferenceLatency
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool

from act_policy.runtime.cpu_scheduling import session_nice

REPO = Path(__file__).resolve().parents[1]
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
COMMAND_TOPIC = "/bench/commands"
NODE = "act_policy"
TRANSITION_ACTIVATE, TRANSITION_DEACTIVATE = 3, 4  # lifecycle_msgs/Transition ids


def params_yaml(backend: str, rate: float, nice: int, saturate: bool, threads: int, realtime: int,
                isolation: str, slice_us: int) -> str:
    return "\n".join([
        "/**:", "  ros__parameters:",
        f"    backend: {backend}",
        f"    inference_isolation: {isolation}",
        f"    num_threads: {threads}",
        f"    inference_nice: {nice}",
        f"    control_realtime_priority: {realtime}",
        f"    sched_slice_us: {slice_us}",
        "    joint_state_topic: /joint_states",
        f"    joint_names: [{', '.join(JOINTS)}]",
        "    camera_topics: [front=/camera/image_raw]",
        "    allow_resize: true",
        "    command_type: joint_state",
        f"    command_topic: {COMMAND_TOPIC}",
        f"    control_rate_hz: {float(rate)}",
        "    schedule_mode: async",
        f"    refill_threshold: {99 if saturate else -1}",
        "    joint_lower_limits: [-1.9, -1.75, -1.7, -1.75, -2.8, 0.0]",
        "    joint_upper_limits: [1.9, 1.75, 1.6, 1.75, 2.8, 1.75]",
        "    max_joint_step: [0.05]", ""])


class Recorder(Node):
    def __init__(self) -> None:
        super().__init__("control_timing_recorder")
        self.lock = threading.Lock()
        self.commands: list[tuple[float, float]] = []  # (arrival monotonic, node stamp) in seconds
        self.latency: list[tuple[float, float, float]] = []  # (arrival, total_ms, inference_ms)
        self.diagnostics: list[tuple[float, dict[str, str], str]] = []
        self.logs: list[tuple[float, int, str]] = []
        self.create_subscription(JointState, COMMAND_TOPIC, self.on_command, 100)
        self.create_subscription(InferenceLatency, f"/{NODE}/latency", self.on_latency, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        self.create_subscription(Log, "/rosout", self.on_log, 100)
        self.enable = self.create_client(SetBool, f"/{NODE}/enable")
        self.lifecycle = self.create_client(ChangeState, f"/{NODE}/change_state")

    def on_command(self, msg: JointState) -> None:
        now = time.monotonic()
        with self.lock:
            self.commands.append((now, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    def on_latency(self, msg: InferenceLatency) -> None:
        with self.lock:
            self.latency.append((time.monotonic(), msg.total_ms, msg.inference_ms))

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(NODE):
                with self.lock:
                    self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values},
                                             status.message))

    def on_log(self, msg: Log) -> None:
        if msg.name == NODE:
            with self.lock:
                self.logs.append((time.monotonic(), msg.level, msg.msg))

    def call(self, client, request, timeout: float = 30.0):
        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"service {client.srv_name} not available")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise RuntimeError(f"service {client.srv_name}: no response in {timeout} s")
        return future.result()


def spread(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": round(float(np.percentile(values, 50)), 3), "p99": round(float(np.percentile(values, 99)), 3),
            "max": round(float(values.max()), 3)}


def command_timing(times: np.ndarray, period_s: float) -> dict[str, object]:
    """Rate, gaps and jitter (ms) of a sequence of command times (s)."""
    if len(times) < 3:
        return {"commands": len(times)}
    gaps = np.diff(times)
    return {"commands": len(times), "rate_hz": round(float((len(times) - 1) / (times[-1] - times[0])), 3),
            "gap_ms": spread(gaps * 1e3), "jitter_ms": spread(np.abs(gaps - period_s) * 1e3)}


def first_after(logs: list[tuple[float, int, str]], start: float, text: str) -> float | None:
    return next((t for t, _, m in logs if t >= start and m == text), None)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_one(args: argparse.Namespace, rec: Recorder, backend: str, rate: float, stress: str, nice: int,
            isolation: str) -> dict:
    cpus = len(os.sched_getaffinity(0))
    saturate = stress != "none"
    threads = cpus if saturate else args.num_threads
    load_before = uptime()
    with rec.lock:
        rec.commands.clear()
        rec.latency.clear()
        rec.diagnostics.clear()
        rec.logs.clear()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(params_yaml(backend, rate, nice, saturate, threads, args.control_realtime_priority, isolation,
                            args.sched_slice_us))
    launch = subprocess.Popen(
        ["ros2", "launch", "act_policy", "pi5_cpu.launch.py", f"model_path:={args.bundle}", f"params_file:={f.name}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(launch.stdout), daemon=True).start()
    standin = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "ros_driver_standin.py"), "--camera", "/camera/image_raw",
         "--command-topic", "/bench/standin_unused", "--duration", "100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    hogs: list[subprocess.Popen] = []
    result: dict[str, object] = {"backend": backend, "rate_hz": rate, "stress": stress, "inference_nice": nice,
                                 "inference_isolation": isolation, "num_threads": threads,
                                 "control_realtime_priority": args.control_realtime_priority,
                                 "sched_slice_us": args.sched_slice_us,
                                 "uptime_before": load_before}
    try:
        deadline = time.monotonic() + args.startup_timeout
        while time.monotonic() < deadline and not rec.latency:  # active and inferring
            if any("Failed to make transition" in line for line in output):
                break
            time.sleep(0.2)
        if not rec.latency:
            raise RuntimeError(f"the node did not infer within {args.startup_timeout} s:\n" + "".join(output[-30:]))
        result["scheduling"] = scheduling_in_effect(output, args.sched_slice_us)
        if stress == "inference+hog":
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus)]
        time.sleep(args.warmup)
        start = time.monotonic()
        time.sleep(args.duration)
        end = time.monotonic()
        with rec.lock:
            commands = np.array([c for c in rec.commands if start <= c[0] <= end])
            latency = np.array([x[1] for x in rec.latency if start <= x[0] <= end])
            diagnostics = [d for d in rec.diagnostics if start <= d[0] <= end]
            holds = [m for t, _, m in rec.logs if start <= t <= end and m.startswith("holding")]
        period = 1.0 / rate
        result["receive_side"] = command_timing(commands[:, 0], period) if len(commands) else {}
        result["node_stamps"] = command_timing(commands[:, 1], period) if len(commands) else {}
        result["inference_total_ms"] = spread(latency) | {"count": len(latency)}
        result["holds_logged"] = sorted({re.sub(r"\d+(\.\d+)?", "#", h) for h in holds})
        result["hold_lines"] = len(holds)
        if diagnostics:
            last = diagnostics[-1][1]
            result["diagnostics_last"] = {k: last.get(k) for k in (
                "control rate achieved (Hz)", "control period jitter (ms)", "control overruns",
                "missed control ticks", "late input callbacks", "input callback delay ms p50/p95/max",
                "observation age at inference ms p50/max", "total ms p50/p95/max")}
            ages = {}
            for key in ("age joint_states (ms)", "age observation.images.front (ms)"):
                seen = [float(d[1][key]) for d in diagnostics if d[1].get(key, "").replace(".", "").isdigit()]
                ages[key] = max(seen) if seen else None
            result["input_age_max_ms_at_diagnostics"] = ages
        if args.cli_calls:
            result["ros2_param_cli"] = ros2_param_cli(args.cli_calls)
        if args.toggle:
            result["resume"] = toggles(rec)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        result["uptime_after"] = uptime()
        result["shutdown"] = stop_launch(launch, output)
        standin.send_signal(signal.SIGINT)
        try:
            standin.wait(10)
        except subprocess.TimeoutExpired:
            standin.kill()
        os.unlink(f.name)
    return result


def ros2_param_cli(calls: int) -> dict[str, dict[str, object]]:
    """``ros2 param get`` of the running node, ``calls`` times in each ros2 daemon mode: how many calls
    answered "Node not found". Without a running daemon the command looks for the node with its own
    short-lived node (``--spin-time`` 0.5 s + ``--timeout`` 1 s by default)."""
    def ros2(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ros2", *argv], capture_output=True, text=True, timeout=120)
    modes = {"daemon stopped before each call": [], "daemon running": [], "--no-daemon": ["--no-daemon"]}
    results: dict[str, dict[str, object]] = {}
    for mode, extra in modes.items():
        if mode == "daemon running":
            ros2("daemon", "start")
        seconds, outcomes = [], []
        for _ in range(calls):
            if mode == "daemon stopped before each call":
                ros2("daemon", "stop")
            start = time.monotonic()
            done = ros2("param", "get", f"/{NODE}", "control_rate_hz", *extra)
            seconds.append(time.monotonic() - start)
            outcomes.append("ok" if done.returncode == 0 else
                            "node not found" if "Node not found" in done.stdout + done.stderr else
                            (done.stdout + done.stderr).strip()[-120:])
        results[mode] = {"calls": calls, "node_not_found": outcomes.count("node not found"),
                         "other_failures": [o for o in outcomes if o not in ("ok", "node not found")],
                         "seconds": spread(np.array(seconds))}
    ros2("daemon", "stop")  # none outlives the benchmark
    return results


def scheduling_in_effect(output: list[str], slice_us: int) -> dict[str, object]:
    """What the running node's processes really got, read from /proc (not what was asked for): the inference
    process's session and autogroup nice, how many node threads have the requested slice, and the node's
    warnings about what the system refused."""
    text = "".join(output)
    started = re.search(r"act_policy_node-1\]: process started with pid \[(\d+)\]", text)
    found: dict[str, object] = {"warnings": [line.strip() for line in text.splitlines()
                                             if re.search(r"not (set|lowered|made real-time)", line)]}
    if started is None:
        return found
    node = int(started.group(1))
    children = [int(c) for task in Path(f"/proc/{node}/task").iterdir()
                for c in (task / "children").read_text().split()]
    if children:
        child = children[0]
        found["inference_process"] = {"own_session": os.getsid(child) == child,
                                      "session_nice": session_nice(child), "node_session_nice": session_nice(node)}
    if slice_us:
        slices = [line.split(":")[1].strip() for task in Path(f"/proc/{node}/task").iterdir()
                  for line in (task / "sched").read_text().splitlines() if line.startswith("se.slice")]
        found["node_threads_with_slice"] = slices.count(str(slice_us * 1000))
    return found


def toggles(rec: Recorder) -> dict[str, float | None]:
    """Seconds from re-enabling / re-activating to the node's next ``commanding`` log line, and the total time
    (request → result, ``~/latency``) of the inference whose chunk resumed commanding."""
    out: dict[str, float | None] = {}
    rec.call(rec.enable, SetBool.Request(data=False))
    time.sleep(1.0)
    t0 = time.monotonic()
    rec.call(rec.enable, SetBool.Request(data=True))
    out["enable_to_commanding_s"], out["enable_inference_s"] = resumed(rec, t0)
    for transition in (TRANSITION_DEACTIVATE, TRANSITION_ACTIVATE):
        request = ChangeState.Request()
        request.transition.id = transition
        t0 = time.monotonic()
        rec.call(rec.lifecycle, request)
        if transition == TRANSITION_DEACTIVATE:
            time.sleep(1.0)
    out["activate_to_commanding_s"], out["activate_inference_s"] = resumed(rec, t0)
    return out


def resumed(rec: Recorder, start: float) -> tuple[float | None, float | None]:
    """(s to the first ``commanding`` log line after ``start``, total s of the inference that resumed it).

    The node publishes ``~/latency`` in the tick that takes a chunk up, the same tick that commands again: the
    resuming inference is the last latency message received before the log line (+50 ms for delivery order).
    """
    took = wait_for_log(rec, start)
    if took is None:
        return None, None
    time.sleep(0.2)
    with rec.lock:
        totals = [total for t, total, _ in rec.latency if start <= t <= start + took + 0.05]
    return took, round(totals[-1] / 1e3, 3) if totals else None


def wait_for_log(rec: Recorder, start: float, timeout: float = 60.0) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rec.lock:
            t = first_after(rec.logs, start, "commanding")
        if t is not None:
            return round(t - start, 3)
        time.sleep(0.05)
    return None


def exited(pid: int) -> bool:
    """True once process ``pid`` has ended (gone, or a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return True


def stop_launch(launch: subprocess.Popen, output: list[str], timeout: float = 30.0) -> dict[str, object]:
    """SIGINT to ``ros2 launch`` (as Ctrl-C does): seconds until the node and until launch exited,
    escalations, error lines."""
    started = re.search(r"act_policy_node-1\]: process started with pid \[(\d+)\]", "".join(output))
    node_pid = int(started.group(1)) if started else None
    t0 = time.monotonic()
    node_exit = None
    os.killpg(launch.pid, signal.SIGINT)
    while launch.poll() is None and time.monotonic() - t0 < timeout:
        if node_exit is None and node_pid is not None and exited(node_pid):
            node_exit = round(time.monotonic() - t0, 3)
        time.sleep(0.005)
    if launch.poll() is None:
        os.killpg(launch.pid, signal.SIGKILL)
    launch.wait()
    elapsed = time.monotonic() - t0
    time.sleep(0.2)  # the reader thread drains the pipe
    text = "".join(output)
    tail = text[text.rfind("SIGINT"):] if "SIGINT" in text else text[-2000:]
    return {"exit_s": round(elapsed, 3), "node_exit_s": node_exit, "returncode": launch.returncode,
            "escalated": "SIGTERM" in tail or "SIGKILL" in tail,
            "finished_cleanly": "process has finished cleanly" in tail,
            "error_lines": error_lines(tail)}


def error_lines(text: str, context: int = 12) -> list[str]:
    """Lines that report an error, each traceback with the lines that follow it."""
    lines = text.splitlines()
    found: list[str] = []
    for i, line in enumerate(lines):
        if "Traceback" in line:
            found += lines[i:i + context]
        elif "ERROR" in line or "RCLError" in line:
            found.append(line)
    return found


def markdown_table(records: list[dict]) -> str:
    """One row per run of a results file written by --json."""
    rows = ["| backend | Hz | stress | isolation | nice | FIFO | slice µs | rate Hz (node) | "
            "jitter p50/p99/max ms (node) | jitter p99/max ms (recv) | max gap ms | missed ticks | late callbacks | "
            "holds logged | inference p50 ms (n) | resume enable/activate s (its inference s) | exit s | load 1 min |",
            "|" + "---|" * 18]
    for record in records:
        for r in record["runs"]:
            if "failed" in r:
                rows.append(f"| {r['backend']} | {r['rate_hz']:g} | {r['stress']} | {isolation_of(r)} | "
                            f"{r['inference_nice']} | "
                            f"{r.get('control_realtime_priority') or 'no'} | {slice_of(r)} | "
                            f"failed: {r['failed'].splitlines()[0]} |")
                continue
            node, recv = r.get("node_stamps", {}), r.get("receive_side", {})
            diag, resume = r.get("diagnostics_last", {}), r.get("resume", {})
            jn, jr, inf = node.get("jitter_ms", {}), recv.get("jitter_ms", {}), r.get("inference_total_ms", {})
            holds = "; ".join(h.replace("holding: ", "") for h in r.get("holds_logged", [])) or "none"
            rows.append(" | ".join([
                "", r["backend"], f"{r['rate_hz']:g}", r["stress"], isolation_of(r), str(r["inference_nice"]),
                str(r["control_realtime_priority"] or "no"), slice_of(r), str(node.get("rate_hz")),
                f"{jn.get('p50')}/{jn.get('p99')}/{jn.get('max')}", f"{jr.get('p99')}/{jr.get('max')}",
                str(node.get("gap_ms", {}).get("max")), str(diag.get("missed control ticks")),
                str(diag.get("late input callbacks")), f"{r.get('hold_lines', 0)}: {holds}",
                f"{inf.get('p50')} ({inf.get('count')})",
                f"{resume.get('enable_to_commanding_s')}/{resume.get('activate_to_commanding_s')}"
                f" ({resume.get('enable_inference_s')}/{resume.get('activate_inference_s')})",
                str(r["shutdown"]["exit_s"]), r["uptime_before"].split("load average: ")[1].split(",")[0], ""]).strip())
    return "\n".join(rows)


def isolation_of(run: dict) -> str:
    isolation = run.get("inference_isolation", "thread")  # runs recorded before the parameter existed: a thread
    child = run.get("scheduling", {}).get("inference_process", {})
    # runs recorded before the child's session was read back: the code of that time made it lead one
    own = child.get("own_session", run.get("inference_own_session"))
    return f"{isolation}, own session" if own else isolation


def slice_of(run: dict) -> str:
    return str(run.get("sched_slice_us") or "kernel")  # runs recorded before sched_slice_us: the kernel's default


def main() -> None:
    if sys.argv[1:2] == ["--table"]:  # print the Markdown table of a results file and exit
        print(markdown_table(json.loads(Path(sys.argv[2]).read_text())))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="--table RESULTS.json alone prints a results file as a Markdown table")
    p.add_argument("--bundle", required=True, help="deploy bundle (act_int8.onnx for cpu_int8)")
    p.add_argument("--backend", action="append", help="repeatable; default cpu_int8")
    p.add_argument("--rate", action="append", type=float, help="control rate in Hz, repeatable; default 30")
    p.add_argument("--stress", action="append", choices=["none", "inference", "inference+hog"],
                   help="repeatable; default none")
    p.add_argument("--inference-nice", action="append", type=int, help="repeatable; default: the node's default")
    p.add_argument("--isolation", action="append", choices=["process", "thread"],
                   help="inference_isolation, repeatable; default: the node's default")
    p.add_argument("--num-threads", type=int, default=0, help="without stress; 0 = the node's default")
    p.add_argument("--control-realtime-priority", type=int, default=0)
    p.add_argument("--sched-slice-us", type=int, help="default: the node's default")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds after the first inference, not measured")
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--toggle", action="store_true", help="measure enable and activate resume times")
    p.add_argument("--cli-calls", type=int, default=0,
                   help="after the measured window: this many `ros2 param get` calls per ros2 daemon mode")
    p.add_argument("--json", type=Path, help="append the results to this JSON file")
    args = p.parse_args()
    from act_policy.runtime.parameters import SPECS

    nices = args.inference_nice or [SPECS["inference_nice"].default]
    isolations = args.isolation or [SPECS["inference_isolation"].default]
    if args.sched_slice_us is None:
        args.sched_slice_us = SPECS["sched_slice_us"].default
    rclpy.init()
    rec = Recorder()
    executor = SingleThreadedExecutor()
    executor.add_node(rec)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    record = {"command": " ".join(shlex.quote(a) for a in sys.argv), "machine": {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "usable_cpus": len(os.sched_getaffinity(0))}, "runs": []}
    existing = json.loads(args.json.read_text()) if args.json and args.json.exists() else []
    try:
        for backend in args.backend or ["cpu_int8"]:
            for rate in args.rate or [30.0]:
                for stress in args.stress or ["none"]:
                    for nice, isolation in itertools.product(nices, isolations):
                        print(f"--- {backend} {rate:g} Hz stress={stress} inference_nice={nice} "
                              f"inference_isolation={isolation}", flush=True)
                        try:
                            record["runs"].append(run_one(args, rec, backend, rate, stress, nice, isolation))
                        except RuntimeError as exc:  # recorded, and the next run still happens
                            record["runs"].append({"backend": backend, "rate_hz": rate, "stress": stress,
                                                   "inference_nice": nice, "inference_isolation": isolation,
                                                   "failed": str(exc)})
                        print(json.dumps(record["runs"][-1], indent=1), flush=True)
                        if args.json:  # after every run: a later failure loses nothing
                            args.json.write_text(json.dumps([*existing, record], indent=1) + "\n")
    finally:
        executor.shutdown()
        spinner.join()  # a spinning thread left at interpreter exit aborts the process ("terminate called")
        rec.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

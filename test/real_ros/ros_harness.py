"""Drive the colcon-installed ``act_policy_node`` through real rclpy and Fast DDS.

Nothing here is a double: the node runs as its own process (the executable ``colcon build``
installed, the one ``ros2 run act_policy act_policy_node`` starts), and the test talks to it
through a real rclpy node in its own context — lifecycle, parameter and ``~/enable``/``~/reset``
services, topic subscriptions and publishers. Every test gets its own ROS domain id (claimed with
a lock file, so parallel runs on one machine never see each other's nodes).

Timeouts here are hang guards only, never assertions about speed: they are generous so that a
slow or loaded machine passes, and a test that times out names what it was waiting for.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState

PY_SPY = str(Path(sys.executable).with_name("py-spy"))  # installed with the tests, beside their python
HANG_GUARD_S = 300.0  # a generous bound on any single wait; only reached when something is broken
QUERY_RESEND_S = 5.0  # a query that went unanswered this long is sent again (RosClient.call); not a speed bound
NODE = "/act_policy"
# every log line as "[SEVERITY] [logger]: message", so tests can assert on severities
LOG_FORMAT = "[{severity}] [{name}]: {message}"
DOMAIN_IDS = range(40, 100)  # below 101: Fast DDS's port formula stays clear of Linux ephemeral ports


def wait_until(condition: Callable[[], Any], what: str, timeout: float = HANG_GUARD_S, poll: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class DomainId:
    """A ROS domain id held for the lifetime of this object (an flock'ed file in /tmp per id)."""

    def __init__(self) -> None:
        candidates = list(DOMAIN_IDS)
        random.shuffle(candidates)
        for candidate in candidates:
            handle = open(f"/tmp/act_policy_ros_test_domain_{candidate}.lock", "w")  # noqa: SIM115 - held open
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.value, self._handle = candidate, handle
            return
        raise RuntimeError(f"every ROS domain id in {DOMAIN_IDS} is held by another test process")

    def release(self) -> None:
        self._handle.close()


def ros_env(domain_id: int, **extra: str) -> dict[str, str]:
    """This process's environment (ROS sourced) for a child on ``domain_id``, logging in LOG_FORMAT."""
    return {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "RCUTILS_CONSOLE_OUTPUT_FORMAT": LOG_FORMAT,
            "RCUTILS_COLORIZED_OUTPUT": "0", "PYTHONUNBUFFERED": "1", **extra}


class Inbox:
    """Messages received on one topic, in arrival order, with their steady receive times (s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[float, Any]] = []

    def __call__(self, msg: Any) -> None:
        with self._lock:
            self._items.append((time.monotonic(), msg))

    @property
    def messages(self) -> list[Any]:
        with self._lock:
            return [m for _, m in self._items]

    @property
    def times(self) -> list[float]:
        with self._lock:
            return [t for t, _ in self._items]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def wait(self, what: str, predicate: Callable[[Any], bool] = lambda _: True, after: int = 0,
             timeout: float = HANG_GUARD_S) -> Any:
        """The first message (at index ≥ ``after``) that satisfies ``predicate``."""
        def find():
            return next((m for m in self.messages[after:] if predicate(m)), None)
        return wait_until(find, what, timeout)


class RosClient:
    """A real rclpy node in its own context and domain, spun by a background executor."""

    def __init__(self, domain_id: int, name: str = "act_policy_test") -> None:
        self.domain_id = domain_id
        self.context = Context()
        # no signal handlers: pytest keeps Ctrl-C, and the node processes get their own signals
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        self._clients: dict[tuple[type, str], Any] = {}

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=10.0)

    # ------------------------------------------------------------------ topics
    def subscribe(self, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> Inbox:
        inbox = Inbox()
        self.node.create_subscription(msg_type, topic, inbox, qos)
        return inbox

    def publisher(self, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, qos)

    # ------------------------------------------------------------------ services
    def call(self, srv_type: type, name: str, request: Any, timeout: float = HANG_GUARD_S,
             resend_after: float | None = None) -> Any:
        """Call a service once it is available; the response (fails on timeout).

        ``resend_after`` (only for a request that is safe to repeat, a query): send it again when no answer came
        within that many seconds. Right after a node starts, rmw_fastrtps drops a response whose client reader
        it has not matched yet ("failed to send response (timeout): client will not receive response" in the
        node's log), so the first query to a new node can stay unanswered on a loaded machine.
        """
        key = (srv_type, name)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, name)
        client = self._clients[key]
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} never appeared"
        deadline = time.monotonic() + timeout
        while True:
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _, answered=done: answered.set())
            remaining = max(deadline - time.monotonic(), 0.0)
            if done.wait(remaining if resend_after is None else min(resend_after, remaining)):
                return future.result()
            client.remove_pending_request(future)
            assert time.monotonic() < deadline, f"service {name} did not answer within {timeout:.0f} s"

    def change_state(self, transition: str, node: str = NODE) -> bool:
        """A lifecycle transition by label (configure, activate, deactivate, cleanup, shutdown)."""
        request = ChangeState.Request()
        request.transition.label = transition
        return bool(self.call(ChangeState, f"{node}/change_state", request).success)

    def state(self, node: str = NODE) -> str:
        return self.call(GetState, f"{node}/get_state", GetState.Request(), resend_after=QUERY_RESEND_S
                         ).current_state.label

    def wait_for_state(self, label: str, node: str = NODE, timeout: float = HANG_GUARD_S) -> None:
        wait_until(lambda: self.state(node) == label, f"{node} to reach state {label!r}", timeout, poll=0.2)

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _messages(values: Mapping[str, Any]) -> list[ParameterMsg]:
        return [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]

    def set_parameters(self, values: Mapping[str, Any], node: str = NODE) -> list[SetParametersResult]:
        """``/node/set_parameters``: one result per parameter, each applied or refused on its own."""
        request = SetParameters.Request(parameters=self._messages(values))
        return list(self.call(SetParameters, f"{node}/set_parameters", request).results)

    def set_parameters_atomically(self, values: Mapping[str, Any], node: str = NODE) -> SetParametersResult:
        request = SetParametersAtomically.Request(parameters=self._messages(values))
        return self.call(SetParametersAtomically, f"{node}/set_parameters_atomically", request).result

    def get_parameters(self, *names: str, node: str = NODE) -> dict[str, Any]:
        response = self.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=list(names)),
                             resend_after=QUERY_RESEND_S)
        return {n: parameter_value_to_python(v) for n, v in zip(names, response.values, strict=True)}


class NodeProcess:
    """A ROS process (the installed node, ``ros2 launch``, ...) with its output collected in a file."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv, self.log_path = argv, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        # its own process group: a SIGINT reaches ros2 launch and everything it started, as Ctrl-C would
        self.process = subprocess.Popen(argv, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, severity: str) -> list[str]:
        """Log lines of one severity (DEBUG, INFO, WARN, ERROR, FATAL), in LOG_FORMAT."""
        return [line for line in self.output.splitlines() if line.startswith(f"[{severity}]")]

    def running(self) -> bool:
        return self.process.poll() is None

    def interrupt(self, timeout: float = HANG_GUARD_S) -> int:
        """Ctrl-C: SIGINT to the whole process group; the exit code (fails if it hangs)."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            evidence = self.hang_evidence()
            self.kill()
            raise AssertionError(f"{self.argv[0]} did not exit within {timeout:.0f} s of SIGINT:\n{self.output}\n"
                                 f"{evidence}")

    def hang_evidence(self) -> str:
        """What a hung process tree is doing: the process and all its descendants — also those in sessions of
        their own, like the node's inference process — with state and kernel wait channel, and each Python
        one's thread stacks (py-spy, from the test extras): a rare shutdown hang is otherwise gone without a
        trace."""
        try:
            ps = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,sid=,stat=,wchan:24=,args="], capture_output=True,
                                text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"ps: {exc}"
        rows = {int(row[0]): row for row in (line.split(None, 5) for line in ps.stdout.splitlines())}
        children: dict[int, list[int]] = {}
        for pid, row in rows.items():
            children.setdefault(int(row[1]), []).append(pid)
        tree, todo = [], [self.process.pid]
        while todo:  # breadth first: a process is listed after its parent
            pid = todo.pop(0)
            tree += [rows[pid]] if pid in rows else []
            todo += children.get(pid, [])
        parts = ["processes (pid ppid sid stat wchan args):", *(" ".join(row) for row in tree)]
        for row in tree:
            command = [PY_SPY, "dump", "--native", "--pid", row[0]]
            try:
                dump = subprocess.run(command, capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as exc:
                parts.append(f"{' '.join(command)}: {exc}")
                continue
            parts.append(f"{' '.join(command)}:\n{dump.stdout}{dump.stderr}")
        return "\n".join(parts)

    def kill(self) -> None:
        if self.running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Teardown: SIGINT, then SIGKILL if it hangs; no assertion (tests assert what they mean)."""
        try:
            if self.running():
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(30.0)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        finally:
            self.kill()
            self._log.close()


def write_params(path: Path, values: Mapping[str, Any]) -> Path:
    """A ROS 2 params file for every node name (``/**``), as config/*.yaml are written."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(values)}}, sort_keys=False))
    return path


# ---------------------------------------------------------------------- inputs
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@dataclass
class Streams:
    """What the stand-in drivers currently publish (changed by tests while they run)."""

    camera: bool = True
    joints: bool = True
    reverse_joint_order: bool = False


class InputDrivers:
    """Camera images (rgb8) and joint states published from the test's own node at fixed rates.

    The joint positions follow a known function of the joint *name* (``JOINT_VALUE``), so a test
    can tell whether the node matched them by name when they arrive in another order.
    """

    def __init__(self, ros: RosClient, camera_topic: str = "/camera/image_raw", joint_topic: str = "/joint_states",
                 height: int = 64, width: int = 80, rate_hz: float = 20.0) -> None:
        self.streams = Streams()
        self.positions = {name: 0.05 * (i + 1) for i, name in enumerate(JOINTS)}
        self.height, self.width = height, width
        self.images_sent = self.joint_states_sent = 0
        self._camera = ros.publisher(Image, camera_topic, qos_profile_sensor_data)
        self._joints = ros.publisher(JointState, joint_topic, qos_profile_sensor_data)
        self._frame = 0
        self._timer = ros.node.create_timer(1.0 / rate_hz, self._publish)

    def _publish(self) -> None:
        if self.streams.camera:
            self._frame += 1
            value = np.uint8(self._frame % 200 + 20)
            data = np.full((self.height, self.width, 3), value, np.uint8)
            self._camera.publish(Image(height=self.height, width=self.width, encoding="rgb8", step=self.width * 3,
                                       data=data.tobytes()))
            self.images_sent += 1
        if self.streams.joints:
            names = JOINTS[::-1] if self.streams.reverse_joint_order else JOINTS
            self._joints.publish(JointState(name=names, position=[self.positions[n] for n in names]))
            self.joint_states_sent += 1


def diagnostic_values(array_msg: Any) -> tuple[int, str, dict[str, str]]:
    """(level, message, key → value) of the policy's status in a DiagnosticArray (level is bytes in rclpy)."""
    [status] = [s for s in array_msg.status if s.name.endswith(": policy")]
    level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
    return level, status.message, {kv.key: kv.value for kv in status.values}


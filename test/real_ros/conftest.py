"""Fixtures of the real-ROS tier: a ROS 2 Jazzy (rclpy + Fast DDS) and this package built with colcon.

``bash scripts/test.sh`` sets both up and runs this folder with the ROS Python; without them
every test here is skipped with the reason (and the CI run fails, because it counts them).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("rclpy") is None or importlib.util.find_spec("act_policy.msg") is None:
    pytest.skip("needs ROS 2 Jazzy sourced and this package built with colcon, its install/setup.bash sourced "
                "(bash scripts/test.sh does both)", allow_module_level=True)

from ament_index_python.packages import get_package_prefix
from conftest import tiny_spec
from lerobot_layout import write_checkpoint

import act_policy
from act_policy.core.synthetic import demo_artifacts

from .ros_harness import JOINTS, DomainId, InputDrivers, NodeProcess, RosClient, ros_env, write_params

PREFIX = Path(get_package_prefix("act_policy"))
NODE_EXECUTABLE = PREFIX / "lib" / "act_policy" / "act_policy_node"
if not Path(act_policy.__file__).resolve().is_relative_to(PREFIX.resolve()):
    raise RuntimeError(f"act_policy is imported from {act_policy.__file__}, not from the colcon install {PREFIX}: "
                       "run pytest with `python -P` from the repository, or from another folder")

# what every test node gets unless the test says otherwise: the tiny policy (64x80 camera, 6 joints,
# chunk 10), generous watchdog limits (a loaded machine must not look like a stale input) and frequent
# diagnostics so tests do not wait long for the next report
BASE_PARAMS = {
    "backend": "cpu_fp32",
    "num_threads": 1,
    "joint_names": JOINTS,
    "camera_topics": ["front=/camera/image_raw"],
    "command_topic": "/commands",
    "max_image_age_ms": 2000.0,
    "max_joint_state_age_ms": 2000.0,
    "diagnostics_period_s": 0.2,
}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeRobot ≥ 0.4 checkpoint folder of the tiny policy (cpu_fp32 inference in milliseconds)."""
    return write_checkpoint(demo_artifacts(tiny_spec(), seed=7), tmp_path_factory.mktemp("tiny") / "pretrained_model")


@pytest.fixture
def ros() -> Iterator[RosClient]:
    """The test's own rclpy node, alone in a ROS domain that no other test process uses."""
    domain = DomainId()
    client = RosClient(domain.value)
    try:
        yield client
    finally:
        client.close()
        domain.release()


@pytest.fixture
def start_node(ros: RosClient, tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Callable[..., NodeProcess]]:
    """``start_node(**params)``: the installed act_policy_node with BASE_PARAMS + ``params`` from a params
    file, in the test's domain; returns once its lifecycle services answer (state ``unconfigured``)."""
    processes: list[NodeProcess] = []

    def start(**params) -> NodeProcess:
        n = len(processes)
        values = {**BASE_PARAMS, "model_path": str(tiny_checkpoint), **params}
        params_file = write_params(tmp_path / f"node{n}_params.yaml", values)
        process = NodeProcess([str(NODE_EXECUTABLE), "--ros-args", "--params-file", str(params_file)],
                              ros_env(ros.domain_id), tmp_path / f"node{n}.log")
        processes.append(process)
        ros.wait_for_state("unconfigured")
        return process

    yield start
    for process in processes:
        process.stop()


@pytest.fixture
def drivers(ros: RosClient) -> InputDrivers:
    """Camera (64x80 rgb8 on /camera/image_raw) and joint states (/joint_states) at 20 Hz, switchable."""
    return InputDrivers(ros)


@pytest.fixture
def ros_process(ros: RosClient, tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """``ros_process(*argv)``: any ROS command (``ros2 launch ...``) in the test's domain, stopped at teardown."""
    processes: list[NodeProcess] = []

    def start(*argv: str) -> NodeProcess:
        process = NodeProcess(list(argv), ros_env(ros.domain_id), tmp_path / f"process{len(processes)}.log")
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()

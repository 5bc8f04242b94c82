"""INT8 calibration from recorded data: rosbag2 and LeRobot datasets, through `act-policy quantize` and the API."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import tiny_policy_artifacts

from act_policy import load_policy
from act_policy.core.synthetic import synthetic_observations
from act_policy.data import BagOptions
from act_policy.export.bundle import INT8_GRAPH, POLICY_FILE
from act_policy.export.calibration import (
    CalibrationError,
    Recording,
    calibration_observations,
    calibration_source,
)
from act_policy.tools.cli import main

ARTIFACTS = tiny_policy_artifacts()
SPEC = ARTIFACTS.spec
FRONT = SPEC.cameras[0].name
STATE = SPEC.state.name
JOINTS = [f"arm_{i}" for i in range(6)]
STEPS = 10
RAD_TO_DEG = 57.29578


def scene(steps: int = STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Frames of the synthetic scene and states whose every entry is the step index (to tell steps apart)."""
    frames = np.stack([o[FRONT] for o in synthetic_observations(SPEC, ARTIFACTS.input_stats, steps, seed=4)])
    states = np.repeat(np.arange(steps, dtype=np.float32)[:, None], 6, axis=1) + np.arange(6) / 10
    return frames, states.astype(np.float32)


def write_scene_bag(folder: Path, steps: int = STEPS, joints_to_ros: float = 1.0) -> Path:
    """10 Hz joint states (joints published in reverse order) and bgr8 camera images with padded rows.

    Joint values are the scene's states times ``joints_to_ros``: the ROS units of a policy trained in other units.
    """
    pytest.importorskip("rosbags")
    from dataset_layout import BagMessage, JazzyMessages, write_bag

    m = JazzyMessages()
    frames, states = scene(steps)
    messages = []
    for k in range(steps):
        stamp = 10**18 + k * 10**8
        messages += [BagMessage("/follower/joint_states", stamp, m.joint_state(stamp, JOINTS[::-1],
                                                                               states[k][::-1] * joints_to_ros)),
                     BagMessage("/camera/image_raw", stamp, m.image(stamp, frames[k], encoding="bgr8", pad=2))]
    return write_bag(folder, "sqlite3", messages)


def bag_options(**overrides) -> BagOptions:
    return BagOptions(**({"state_topic": "/follower/joint_states", "camera_topics": {FRONT: "/camera/image_raw"},
                          "joint_names": JOINTS, "rate_hz": 10.0} | overrides))


def bag_flags(bag: Path) -> list[str]:
    return ["--calib", str(bag), "--rate", "10", "--state-topic", "/follower/joint_states",
            "--camera", f"{FRONT}=/camera/image_raw", "--joint-names", ",".join(JOINTS)]


def write_scene_dataset(root: Path, lengths: tuple[int, ...] = (6, STEPS)) -> Path:
    """LeRobot v2.1 with PNG image columns (lossless, so frames compare exactly); episode i has lengths[i] steps."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("av")
    from dataset_layout import EpisodeData, write_v21

    episodes = []
    for length in lengths:
        frames, states = scene(length)
        episodes.append(EpisodeData(states, np.zeros_like(states), {FRONT: frames}))
    return write_v21(root, episodes, fps=10, camera_dtype="image")


@pytest.fixture
def bundle(tiny_bundle: Path) -> Path:
    return tiny_bundle


def fresh(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def quantization_record(bundle: Path) -> dict:
    return json.loads((bundle / POLICY_FILE).read_text())["quantization"]


def test_a_rosbag_gives_evenly_spaced_steps_with_joints_in_the_given_order(tmp_path: Path) -> None:
    pytest.importorskip("av")
    source = calibration_source(write_scene_bag(tmp_path / "bag"), bag_options=bag_options())
    assert isinstance(source, Recording)
    observations = list(calibration_observations(source, SPEC, ARTIFACTS.input_stats, 4))
    frames, states = scene()
    chosen = [0, 3, 6, 9]  # round(linspace(0, 9, 4))
    np.testing.assert_array_equal(np.stack([o[STATE] for o in observations]), states[chosen])
    np.testing.assert_array_equal(np.stack([o[FRONT] for o in observations]), frames[chosen])


def test_a_rosbag_in_radians_is_calibrated_on_the_policys_degrees_with_the_joint_scale(tmp_path: Path) -> None:
    pytest.importorskip("av")
    bag = write_scene_bag(tmp_path / "bag", joints_to_ros=1 / RAD_TO_DEG)
    source = calibration_source(bag, bag_options=bag_options(joint_scale=[RAD_TO_DEG]))
    assert str(source).endswith(", 10 Hz, joint scale [57.29578])")  # recorded in policy.json
    observations = list(calibration_observations(source, SPEC, ARTIFACTS.input_stats, 4))
    np.testing.assert_allclose(np.stack([o[STATE] for o in observations]), scene()[1][[0, 3, 6, 9]], atol=1e-4)


def test_a_lerobot_dataset_gives_steps_of_the_chosen_episode(tmp_path: Path) -> None:
    source = calibration_source(write_scene_dataset(tmp_path / "ds"), episode=1)
    observations = list(calibration_observations(source, SPEC, ARTIFACTS.input_stats, 3))
    frames, states = scene()
    np.testing.assert_array_equal(np.stack([o[STATE] for o in observations]), states[[0, 4, 9]])
    np.testing.assert_array_equal(np.stack([o[FRONT] for o in observations]), frames[[0, 4, 9]])


def test_quantize_cli_calibrates_on_a_rosbag(bundle: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("av")
    bundle = fresh(bundle, tmp_path)
    bag = write_scene_bag(tmp_path / "bag")
    assert main(["quantize", str(bundle), "--samples", "4", *bag_flags(bag)]) == 0
    record = quantization_record(bundle)
    assert record["calibration_samples"] == 4
    assert record["calibration_source"] == (f"{bag} (rosbag2: state /follower/joint_states, "
                                            f"cameras {FRONT}=/camera/image_raw, 10 Hz)")
    assert "calibrated on 4 observations" in capsys.readouterr().out
    frames, states = scene(1)
    action = load_policy(bundle, backend="cpu_int8", num_threads=1).predict_chunk({FRONT: frames[0], STATE: states[0]})
    assert np.all(np.isfinite(action))


def test_quantize_cli_calibrates_on_a_lerobot_dataset_episode(bundle: Path, tmp_path: Path) -> None:
    bundle = fresh(bundle, tmp_path)
    dataset = write_scene_dataset(tmp_path / "ds")
    assert main(["quantize", str(bundle), "--calib", str(dataset), "--episode", "1", "--samples", "5"]) == 0
    record = quantization_record(bundle)
    assert record["calibration_source"] == f"{dataset} (LeRobot dataset, episode 1)"
    assert record["calibration_samples"] == 5


def test_a_bag_with_fewer_steps_than_samples_is_an_error_naming_it_and_its_count(tmp_path: Path) -> None:
    pytest.importorskip("av")
    bag = write_scene_bag(tmp_path / "bag")
    source = calibration_source(bag, bag_options=bag_options())
    with pytest.raises(CalibrationError, match=rf"{bag} \(rosbag2: .*\): 10 observations, but 11 calibration samples "
                                               r"were requested \(a rosbag2 gives more steps at a higher --rate\)"):
        calibration_observations(source, SPEC, ARTIFACTS.input_stats, 11)


def test_a_dataset_episode_shorter_than_samples_is_an_error(tmp_path: Path) -> None:
    dataset = write_scene_dataset(tmp_path / "ds")
    with pytest.raises(CalibrationError, match=r"\(LeRobot dataset, episode 0\): 6 observations, but 7 calibration"):
        calibration_observations(calibration_source(dataset), SPEC, ARTIFACTS.input_stats, 7)


@pytest.mark.parametrize(("flags", "message"), [
    (["--state-topic", "/follower/joint_states", "--camera", f"{FRONT}=/camera"],
     rf"camera '{FRONT}' topic '/camera' is not in the bag; topics: /camera/image_raw \(sensor_msgs/msg/Image\), "
     "/follower/joint_states"),
    (["--camera", f"{FRONT}=/camera/image_raw"], "state topic '/joint_states' is not in the bag"),
    (["--state-topic", "/follower/joint_states"], rf"no camera topic given for \['{FRONT}'\]"),
    (["--state-topic", "/follower/joint_states", "--camera", "front=/camera/image_raw", "--joint-scale", "1,2"],
     r"--joint-scale: expected 1 or 6 values \(one per joint\), got 2; the joints \(--joint-names\): arm_0, "),
])
def test_quantize_cli_names_a_wrong_or_missing_topic(bundle: Path, tmp_path: Path, capsys, flags: list[str],
                                                     message: str) -> None:
    pytest.importorskip("av")
    bag = write_scene_bag(tmp_path / "bag")
    command = ["quantize", str(bundle), "--samples", "2", "--calib", str(bag), "--joint-names", ",".join(JOINTS)]
    assert main([*command, *flags]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (bundle / INT8_GRAPH).exists()


def test_an_episode_index_needs_a_lerobot_dataset(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"episode 2 was requested, but the calibration source .* is not a "
                                               "LeRobot dataset"):
        calibration_source(tmp_path, episode=2)
    with pytest.raises(CalibrationError, match="source synthetic is not a LeRobot dataset"):
        calibration_source(None, episode=1)


@pytest.mark.parametrize("command", [
    ["replay", "CKPT", "--data", "DATA"],
    ["quantize", "BUNDLE"],
    ["hailo-prepare", "BUNDLE", "--calib", "BAG", "--arch", "hailo8l", "--out", "KIT"],
])
def test_every_tool_reading_recordings_shares_the_recording_options(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--camera", "observation.images.front"])
    assert "--camera: expected FEATURE=TOPIC, got 'observation.images.front'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command, "--rate", "0"])
    assert "--rate: must be a positive number, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command, "--joint-scale", "57.3,0"])
    assert "--joint-scale: expected non-zero factors, got '57.3,0'" in capsys.readouterr().err


def test_hailo_prepare_takes_its_calibration_frames_from_a_rosbag(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("av")
    bag = write_scene_bag(tmp_path / "bag")
    kit = tmp_path / "kit"
    assert main(["hailo-prepare", str(bundle), "--arch", "hailo8l", "--out", str(kit), "--calib-size", "4",
                 *bag_flags(bag)]) == 0
    frames, _ = scene()
    np.testing.assert_array_equal(np.load(kit / "models/backbone_64x80/calib.npy"), frames[[0, 3, 6, 9]])

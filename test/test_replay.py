"""Offline replay: errors against recorded actions and cpu_fp32, schedule, latency sampling, rate criterion, plots."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import act_policy.core.policy as policy_module
from act_policy.backends import BACKENDS, BackendOptions
from act_policy.backends.torch_fp32 import TorchFP32Backend
from act_policy.core.errors import BackendError
from act_policy.core.policy import Policy, load_artifacts
from act_policy.core.synthetic import synthetic_observations
from act_policy.data import CameraStream, Episode
from act_policy.evaluation.replay import check_rate, replay

FRONT = "observation.images.front"
OFFSET_NORMALIZED = np.array([0.5, -1.0, 0.25, 0.0, 2.0, -0.125], np.float32)


class OffsetBackend(TorchFP32Backend):
    """cpu_fp32 plus a known per-joint offset in normalized action space."""

    name = "offset_fp32"

    def infer(self, inputs):
        return super().infer(inputs) + OFFSET_NORMALIZED


@pytest.fixture
def offset_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(BACKENDS, "offset_fp32", f"{__name__}:OffsetBackend")
    return "offset_fp32"


class EmulatedBackend(OffsetBackend):
    """Says what the hailo backend says on the fake HailoRT: its timings are not a device's. Shows its extra."""

    name = "emulated_npu"

    @classmethod
    def check_options(cls, extra):
        if set(extra) - {"head"}:  # like the hailo backend, it takes a head option
            raise BackendError(f"emulated_npu: unknown options {sorted(set(extra) - {'head'})}")

    def describe(self):
        return {**super().describe(), "emulated": True, "extra": dict(self.options.extra)}


@pytest.fixture
def emulated_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(BACKENDS, "emulated_npu", f"{__name__}:EmulatedBackend")
    return "emulated_npu"


NUMBER = re.compile(r"\d")


def synthetic_episode(artifacts, steps: int = 14, actions: np.ndarray | None = None) -> Episode:
    observations = list(synthetic_observations(artifacts.spec, artifacts.input_stats, steps, seed=2))
    frames = np.stack([o[FRONT] for o in observations])
    return Episode(source="memory", index=0, fps=30.0, timestamps=np.arange(steps) / 30.0,
                   vectors={"observation.state": np.stack([o["observation.state"] for o in observations])},
                   cameras={FRONT: CameraStream(64, 80, "memory", lambda: iter(frames))},
                   actions=actions, joint_names=tuple(f"joint_{i}" for i in range(6)))


def own_actions(artifacts, episode: Episode, **policy_kwargs) -> np.ndarray:
    policy = Policy(artifacts, TorchFP32Backend(artifacts, BackendOptions(num_threads=1)), **policy_kwargs)
    return np.stack([policy.select_action(o) for o in episode.observations()])


def test_replaying_the_policys_own_actions_gives_zero_error(tiny_checkpoint: Path) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    episode = synthetic_episode(artifacts)
    episode = dataclasses.replace(episode, actions=own_actions(artifacts, episode))
    result = replay(artifacts, episode, ["cpu_fp32"], latency_samples=0, num_threads=1)
    (run,) = result.runs
    assert run.vs_reference is None
    np.testing.assert_allclose(run.vs_recorded.max, 0.0, atol=1e-5)
    assert run.inference_steps == [0, 4, 8, 12]  # tiny checkpoint: n_action_steps 4


def test_a_known_offset_in_the_recording_is_reported_per_joint(tiny_checkpoint: Path) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    episode = synthetic_episode(artifacts)
    offset = np.array([1.0, -2.0, 3.0, 0.5, -0.25, 4.0], np.float32)
    episode = dataclasses.replace(episode, actions=own_actions(artifacts, episode) + offset)
    errors = replay(artifacts, episode, ["cpu_fp32"], latency_samples=0, num_threads=1).runs[0].vs_recorded
    np.testing.assert_allclose(errors.mean, np.abs(offset), atol=1e-4)
    np.testing.assert_allclose(errors.max, np.abs(offset), atol=1e-4)
    np.testing.assert_allclose(errors.per_step, np.abs(offset).mean(), atol=1e-4)


def test_backends_are_compared_with_cpu_fp32_in_action_units(tiny_checkpoint: Path, offset_backend: str) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    result = replay(artifacts, synthetic_episode(artifacts), [offset_backend], latency_samples=0, num_threads=1)
    assert [r.backend for r in result.runs] == ["cpu_fp32", offset_backend]  # reference added and run first
    expected = np.abs(OFFSET_NORMALIZED) * artifacts.action_stats["action"]["std"]  # MEAN_STD: x·std + mean
    vs_ref = result.run(offset_backend).vs_reference
    np.testing.assert_allclose(vs_ref.mean, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(vs_ref.max, expected, rtol=1e-4, atol=1e-4)
    assert result.runs[0].vs_recorded is None  # the synthetic episode has no recorded actions


def test_unknown_backends_are_refused_before_anything_runs(tiny_artifacts) -> None:
    from act_policy import BackendError

    with pytest.raises(BackendError, match=r"unknown backend\(s\) cpu_int9; available: cpu_fp32"):
        replay(tiny_artifacts, synthetic_episode(tiny_artifacts, steps=2), ["cpu_int9"])


def test_temporal_ensembling_infers_every_step_and_matches_the_policy(tiny_checkpoint: Path) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    episode = synthetic_episode(artifacts, steps=6)
    episode = dataclasses.replace(episode, actions=own_actions(artifacts, episode, temporal_ensemble_coeff=0.01))
    run = replay(artifacts, episode, ["cpu_fp32"], temporal_ensemble_coeff=0.01, latency_samples=0,
                 num_threads=1).runs[0]
    assert run.inference_steps == list(range(6)) and run.rate.ensembling
    np.testing.assert_allclose(run.vs_recorded.max, 0.0, atol=1e-5)


def test_extra_latency_samples_do_not_change_the_actions(tiny_checkpoint: Path) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    episode = synthetic_episode(artifacts, steps=8)
    plain = replay(artifacts, episode, ["cpu_fp32"], latency_samples=0, num_threads=1).runs[0]
    sampled = replay(artifacts, episode, ["cpu_fp32"], latency_samples=5, num_threads=1).runs[0]
    assert plain.total_ms.size == 2 and sampled.total_ms.size == 5
    np.testing.assert_allclose(sampled.actions, plain.actions, atol=1e-6)
    assert np.all(sampled.total_ms >= sampled.inference_ms)


@pytest.mark.parametrize(("latency", "chunk", "n", "m", "budget_ticks", "met", "max_rate"), [
    (500.0, 100, 100, 50, 50, True, 100.0),  # k=15 stale rows; the m=50 queued actions cover the inference
    (1700.0, 100, 100, 50, 49, False, 50 / 1.7),  # k=51: only 49 fresh rows remain in the chunk
    (150.0, 10, 10, 8, 5, True, 5 / 0.15),  # back to back: C-k=5 fresh rows < m=8 bound the budget
    (170.0, 10, 10, 8, 4, False, 5 / 0.17),
    (150.0, 100, 10, 8, 8, True, 8 / 0.15),  # rows past n_action_steps refill the queue: m bounds it
    (30.0, 100, 1, 0, 0, False, 0.0),  # async with one action per chunk always starves
])
def test_control_rate_criterion_at_30_hz(latency, chunk, n, m, budget_ticks, met, max_rate) -> None:
    check = check_rate(latency, 30.0, chunk, n, m)
    assert check.budget_ms == pytest.approx(budget_ticks * 1000 / 30)
    assert check.met is met
    assert check.max_rate_hz == pytest.approx(max_rate)
    assert check.slack_ms == pytest.approx(check.budget_ms - latency)


def test_ensembling_budget_is_one_period_and_bad_thresholds_are_refused() -> None:
    assert check_rate(30.0, 30.0, 100, 1, 0, ensembling=True).met
    late = check_rate(40.0, 30.0, 100, 1, 0, ensembling=True)
    assert late.budget_ms == pytest.approx(1000 / 30) and not late.met and late.max_rate_hz == pytest.approx(25.0)
    with pytest.raises(ValueError, match=r"refill threshold must be in \[0, n_action_steps=4\), got 4"):
        check_rate(10.0, 30.0, 10, 4, 4)


def test_report_links_the_plots_and_states_the_measured_numbers(tiny_checkpoint: Path, offset_backend: str,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.image

    from act_policy.evaluation.plots import write_report

    artifacts = load_artifacts(tiny_checkpoint)
    episode = synthetic_episode(artifacts, steps=8)
    episode = dataclasses.replace(episode, actions=own_actions(artifacts, episode) + 1.0)
    result = replay(artifacts, episode, [offset_backend], latency_samples=0, num_threads=1)
    text = write_report(result, tmp_path / "out").read_text()
    for name in ("trajectories_cpu_fp32.png", f"trajectories_{offset_backend}.png", "latency.png",
                 "error_over_time.png"):
        assert f"]({name})" in text
        image = matplotlib.image.imread(tmp_path / "out" / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    offset_run = result.run(offset_backend)
    row = next(line for line in text.splitlines() if line.startswith(f"| {offset_backend} |"))
    assert f"{offset_run.vs_reference.mean.mean():.4g} / {offset_run.vs_reference.max.max():.4g}" in row
    fp32_row = next(line for line in text.splitlines() if line.startswith("| cpu_fp32 |"))
    assert fp32_row.startswith("| cpu_fp32 | 1 / 1 | – / – |")  # recorded = own actions + 1 on every joint


def test_cli_replays_a_lerobot_dataset_and_writes_the_numbers(tiny_checkpoint: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pyarrow")
    pytest.importorskip("av")
    pytest.importorskip("matplotlib")
    from dataset_layout import EpisodeData, write_v30

    from act_policy.data import read_episode
    from act_policy.tools.cli import main

    artifacts = load_artifacts(tiny_checkpoint)
    source = synthetic_episode(artifacts, steps=10)
    frames = np.stack([o[FRONT] for o in source.observations()])
    recorded = np.random.default_rng(1).normal(0, 30, (10, 6)).astype(np.float32)
    root = write_v30(tmp_path / "ds", [EpisodeData(source.vectors["observation.state"], recorded, {FRONT: frames}),
                                       EpisodeData(source.vectors["observation.state"][:4], recorded[:4],
                                                   {FRONT: frames[:4]})])
    out = tmp_path / "out"
    args = ["replay", str(tiny_checkpoint), "--data", str(root), "--episode", "0", "--out", str(out),
            "--max-steps", "8", "--threads", "1", "--latency-samples", "0"]
    assert main(args) == 0
    report = json.loads((out / "replay.json").read_text())
    assert report["episode"]["steps"] == 8 and list(report["backends"]) == ["cpu_fp32"]
    # the same numbers, computed here from the decoded episode and the policy directly
    episode = read_episode(root, 0, artifacts.spec).head(8)
    expected = np.abs(own_actions(artifacts, episode) - recorded[:8]).mean(0)
    per_joint = report["backends"]["cpu_fp32"]["error_vs_recorded"]["per_joint"]
    np.testing.assert_allclose([per_joint[f"joint_{i}.pos"]["mean"] for i in range(6)], expected, rtol=1e-5)
    assert (out / "report.md").is_file() and (out / "latency.png").is_file()
    assert "report:" in capsys.readouterr().out

    assert main([*args[:4], "--episode", "9", *args[6:]]) == 2
    assert "episode 9 does not exist; episodes in this dataset: 0-1" in capsys.readouterr().err


BAG_JOINTS = [f"arm_{i}" for i in range(6)]


def write_episode_bag(source: Episode, path: Path, joints_to_ros: float = 1.0) -> Path:
    """``source`` as a robot records it at 10 Hz: follower state (joints in reverse order), leader commands, camera.

    Joint values are ``policy value * joints_to_ros``: the ROS units of a policy trained in other units.
    """
    pytest.importorskip("rosbags")
    from dataset_layout import BagMessage, JazzyMessages, write_bag

    m = JazzyMessages()
    messages = []
    for k, obs in enumerate(source.observations()):
        stamp = 10**18 + k * 10**8
        ros = obs["observation.state"].astype(np.float64) * joints_to_ros
        messages += [BagMessage("/follower/joint_states", stamp,
                                m.joint_state(stamp, BAG_JOINTS[::-1], ros[::-1].copy())),
                     BagMessage("/leader/joint_states", stamp, m.joint_state(stamp, BAG_JOINTS, ros)),
                     BagMessage("/camera/image_raw", stamp, m.image(stamp, obs[FRONT]))]
    return write_bag(path, "mcap", messages)


def replay_bag_cli(checkpoint: Path, bag: Path, out: Path, *flags: str) -> dict:
    pytest.importorskip("av")
    pytest.importorskip("matplotlib")
    from act_policy.tools.cli import main

    assert main(["replay", str(checkpoint), "--data", str(bag), "--rate", "10", "--out", str(out),
                 "--action-topic", "/leader/joint_states", "--threads", "1", "--latency-samples", "0", *flags]) == 0
    return json.loads((out / "replay.json").read_text())


def own_state_errors(artifacts, source: Episode) -> np.ndarray:
    """Mean error per joint when the recorded actions are the recorded states (what the bags above hold)."""
    return replay(artifacts, dataclasses.replace(source, actions=source.vectors["observation.state"]),
                  ["cpu_fp32"], latency_samples=0, num_threads=1).runs[0].vs_recorded.mean


def test_cli_replays_a_rosbag_with_topic_options(tiny_checkpoint: Path, tmp_path: Path) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    source = synthetic_episode(artifacts, steps=10)
    bag = write_episode_bag(source, tmp_path / "bag")
    report = replay_bag_cli(tiny_checkpoint, bag, tmp_path / "out", "--state-topic", "/follower/joint_states",
                            "--camera", f"{FRONT}=/camera/image_raw", "--joint-names", ",".join(BAG_JOINTS))
    assert report["episode"]["steps"] == 10 and report["joint_names"] == BAG_JOINTS
    # state reversed in the follower's messages and reordered by name: the replay saw the original episode
    recorded = report["backends"]["cpu_fp32"]["error_vs_recorded"]["per_joint"]
    np.testing.assert_allclose([recorded[j]["mean"] for j in BAG_JOINTS], own_state_errors(artifacts, source),
                               rtol=1e-5)
    assert report["backends"]["cpu_fp32"]["control_rate"]["rate_hz"] == 10.0


def test_cli_replays_a_rosbag_in_ros_units_through_the_nodes_params_file(tiny_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    """A policy trained in degrees, a bag in radians: the node's joint_scale gives the replay the policy's units."""
    artifacts = load_artifacts(tiny_checkpoint)
    source = synthetic_episode(artifacts, steps=10)
    bag = write_episode_bag(source, tmp_path / "bag", joints_to_ros=1 / 57.29578)
    params = tmp_path / "robot.yaml"
    params.write_text(f"""/**:
  ros__parameters:
    joint_state_topic: /follower/joint_states
    joint_names: [{", ".join(BAG_JOINTS)}]
    joint_scale: {[57.29578] * 6}
    camera_topics: [front=/camera/image_raw]
""")
    report = replay_bag_cli(tiny_checkpoint, bag, tmp_path / "out", "--node-params", str(params))
    assert report["joint_names"] == BAG_JOINTS
    recorded = report["backends"]["cpu_fp32"]["error_vs_recorded"]["per_joint"]
    np.testing.assert_allclose([recorded[j]["mean"] for j in BAG_JOINTS], own_state_errors(artifacts, source),
                               rtol=1e-4)
    assert f"--node-params {params}" in (tmp_path / "out" / "report.md").read_text()


def test_an_emulated_backend_gets_action_errors_but_no_latency_or_rate_verdict(tiny_checkpoint: Path,
                                                                              emulated_backend: str) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    result = replay(artifacts, synthetic_episode(artifacts, steps=8), [emulated_backend], latency_samples=5,
                    num_threads=1)
    reference, emulated = result.runs
    assert emulated.emulated and emulated.rate is None and emulated.total_ms.size == 0
    assert not reference.emulated and reference.total_ms.size == 5  # the real backend is still timed
    expected = np.abs(OFFSET_NORMALIZED) * artifacts.action_stats["action"]["std"]
    np.testing.assert_allclose(emulated.vs_reference.mean, expected, rtol=1e-4, atol=1e-4)
    report = json.loads(json.dumps(result.as_dict()))["backends"][emulated_backend]
    assert report["emulated"] is True
    assert report["latency_ms"] is None and report["inference_only_ms"] is None and report["control_rate"] is None
    assert report["error_vs_cpu_fp32"]["max"] > 0


def stage_clock(monkeypatch: pytest.MonkeyPatch, stage_s: float) -> None:
    """Make every timed stage of ``Policy.predict_chunk`` last exactly ``stage_s`` (a power of two, so
    differences are exact): latency-based verdicts become a property of the inputs, not of how busy
    the machine is."""
    ticks = itertools.count()
    monkeypatch.setattr(policy_module, "time", SimpleNamespace(perf_counter=lambda: next(ticks) * stage_s))


@pytest.mark.parametrize(("stage_s", "verdict"), [(2.0**-10, "met at"), (2.0**-1, "MISSED at")])
def test_no_latency_number_is_printed_or_plotted_for_an_emulated_backend(tiny_checkpoint: Path, emulated_backend: str,
                                                                         tmp_path: Path, monkeypatch, stage_s: float,
                                                                         verdict: str) -> None:
    pytest.importorskip("matplotlib")
    from act_policy.evaluation.plots import write_report
    from act_policy.tools.replay import console_table

    stage_clock(monkeypatch, stage_s)  # 3 stages: ~3 ms (met at 30 Hz) or 1.5 s (missed) end to end
    artifacts = load_artifacts(tiny_checkpoint)
    result = replay(artifacts, synthetic_episode(artifacts, steps=8), [emulated_backend], latency_samples=0,
                    num_threads=1)
    _header, fp32_line, emulated_line = console_table(result)
    assert emulated_line.split()[:2] == [emulated_backend, "-"]  # no recorded actions
    after_errors = emulated_line.split(maxsplit=5)[5]  # after name, vs recorded, vs cpu_fp32 (raw, norm L2, bias)
    assert after_errors.startswith("emulated") and not NUMBER.search(after_errors), emulated_line
    assert f" {verdict} 30 Hz" in fp32_line
    text = write_report(result, tmp_path / "out").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| {emulated_backend} |"))
    latency_cells = row.strip("|").split("|")[3:]
    assert [c.strip() for c in latency_cells] == ["emulated"] * 4, row
    assert f"{verdict} 30 Hz" in next(line for line in text.splitlines() if line.startswith("| cpu_fp32 |"))


def test_backend_options_reach_only_the_backend_they_name(tiny_checkpoint: Path, emulated_backend: str) -> None:
    artifacts = load_artifacts(tiny_checkpoint)
    result = replay(artifacts, synthetic_episode(artifacts, steps=4), [emulated_backend], latency_samples=0,
                    num_threads=1, backend_options={emulated_backend: {"head": "int8"}})
    assert result.run(emulated_backend).description["extra"] == {"head": "int8"}
    assert "extra" not in result.run("cpu_fp32").description

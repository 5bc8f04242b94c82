"""Assembling the runtime from parameters + a tiny policy; recording; health levels."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from conftest import FallenBackBackend, tiny_spec

from act_policy.backends import create_backend
from act_policy.core.config import ENV_STATE_KEY, STATE_KEY, Feature, FeatureType
from act_policy.core.policy import Policy
from act_policy.core.synthetic import demo_artifacts
from act_policy.runtime.health import Level, assess
from act_policy.runtime.observations import RawImage
from act_policy.runtime.parameters import ParameterError, validate
from act_policy.runtime.recorder import ObservationRecorder
from act_policy.runtime.session import build_runtime, load_node_policy

JOINTS = [f"joint{i}" for i in range(6)]
CAM = "observation.images.front"


@pytest.fixture
def policy(tiny_torch_backend):
    return Policy(*tiny_torch_backend)


def params(**overrides):
    values = {"model_path": "unused", "joint_names": JOINTS, "camera_topics": ["front=/cam/image_raw"]}
    values.update(overrides)
    return values


def test_runtime_is_wired_from_parameters_and_the_policy(policy):
    rt = build_runtime(params(joint_scale=[2.0] * 6, n_action_steps=4), policy)
    try:
        assert rt.camera_topics == {CAM: "/cam/image_raw"}
        assert rt.cache.image_sizes == {CAM: (64, 80)}
        assert rt.loop.schedule.refill_threshold == 2
        assert rt.loop.units.to_policy(np.ones(6)).tolist() == [2.0] * 6
    finally:
        rt.close()


def test_configuration_errors_name_the_parameter(policy):
    with pytest.raises(ParameterError, match="joint_names: the policy has 6 action dimensions, got 2"):
        build_runtime(params(joint_names=["a", "b"]), policy)
    with pytest.raises(ParameterError, match="n_action_steps: expected at most chunk_size=10"):
        build_runtime(params(n_action_steps=11), policy)
    with pytest.raises(ParameterError, match="model_path: expected a LeRobot pretrained_model folder"):
        load_node_policy(params(model_path=""))


def test_policies_needing_environment_state_are_refused():
    spec = tiny_spec()
    spec = dataclasses.replace(spec, inputs=(*spec.inputs, Feature(ENV_STATE_KEY, FeatureType.ENV, (3,))))
    artifacts = demo_artifacts(spec, seed=1)
    p = Policy(artifacts, create_backend("cpu_fp32", artifacts))
    with pytest.raises(ParameterError, match=r"observation\.environment_state"):
        build_runtime(params(), p)


def test_live_changes_are_atomic_including_the_recording_directory(policy, tmp_path):
    rt = build_runtime(params(), policy)
    try:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(ParameterError, match="record_dir: cannot create"):
            rt.apply({"control_rate_hz": 10, "record_dir": str(blocker / "sub")})
        assert rt.settings["control_rate_hz"] == 30.0 and rt.recorder.directory is None
        rt.apply({"control_rate_hz": 10, "record_dir": str(tmp_path / "rec")})
        assert rt.settings["control_rate_hz"] == 10.0 and rt.recorder.directory == tmp_path / "rec"
    finally:
        rt.close()


def test_end_to_end_through_the_runtime_records_calibration_samples(policy, tmp_path):
    # sync mode: no action is skipped however slow this machine is, so the test does not depend on timing
    rt = build_runtime(params(record_dir=str(tmp_path), record_max_samples=2, schedule_mode="sync"), policy)
    rt.loop.set_active(True)
    frame = np.arange(64 * 80 * 3, dtype=np.uint64).astype(np.uint8).reshape(64, 80, 3)
    try:
        sent = 0
        for _ in range(400):
            rt.cache.update_image(CAM, RawImage("bgr8", frame[..., ::-1].tobytes(), 64, 80, 240))
            rt.cache.update_joints(JOINTS[::-1], [0.1] * 6)
            result = rt.tick()
            sent += result.command is not None and result.hold is None
            if sent >= 5 and rt.recorder.written >= 2:
                break
            time.sleep(0.002)  # the worker infers in parallel; no timing is asserted
        rt.recorder.flush()
    finally:
        rt.close()
    assert sent >= 5
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["obs_000000.npz", "obs_000001.npz"]
    with np.load(tmp_path / files[0]) as sample:
        assert set(sample.files) == {STATE_KEY, CAM}
        assert np.array_equal(sample[CAM], frame)  # bgr8 in, RGB recorded at the trained size
        assert sample[STATE_KEY].dtype == np.float32 and np.allclose(sample[STATE_KEY], 0.1)
    from act_policy.export.calibration import npz_observations  # the reader of `act-policy quantize --calib`

    read_back = list(npz_observations(tmp_path, policy.spec, 2))
    assert len(read_back) == 2 and np.array_equal(read_back[0][CAM], frame)
    report = assess(rt.loop, rt.monitor, backend="cpu_fp32", control_rate_hz=30.0)
    assert dict(report.values)["commands sent"] == str(rt.loop.counters.commands)


def test_recorder_keeps_every_nth_sample_continues_numbering_and_stops_at_the_maximum(tmp_path):
    (tmp_path / "obs_000041.npz").write_bytes(b"")
    rec = ObservationRecorder()
    try:
        rec.configure(str(tmp_path), every_n=2, max_samples=2)
        for i in range(10):
            rec({STATE_KEY: np.full(2, i, np.float32)})
        rec.flush()
    finally:
        rec.close()
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "obs_000041.npz")
    assert written == ["obs_000042.npz", "obs_000043.npz"]
    assert [float(np.load(tmp_path / n)[STATE_KEY][0]) for n in written] == [0.0, 2.0]
    assert not list(tmp_path.glob("*.tmp"))


def test_health_levels(policy):
    rt = build_runtime(params(), policy)
    try:
        rt.tick()
        assert assess(rt.loop, rt.monitor, backend="x", control_rate_hz=30).level is Level.OK  # inactive
        rt.loop.set_active(True)
        rt.tick()
        report = rt.report()
        assert report.level is Level.WARN and "waiting for the first observations" in report.message
        assert ("age joint_states (ms)", "never received") in report.values
        rt.cache.update_joints(JOINTS, [0.0] * 6)
        rt.cache.update_image(CAM, RawImage("rgb8", bytes(64 * 80 * 3), 64, 80, 240))
        rt.loop.guard.last_command = np.zeros(6)
        rt.loop.update_settings(dataclasses.replace(rt.loop.settings, max_joint_age_ms=1e-9))
        rt.tick()
        report = rt.report()
        assert report.level is Level.ERROR and "holding: observation too old (joint_states" in report.message
    finally:
        rt.close()


def test_a_fallback_backend_is_named_and_keeps_the_status_at_warning(tiny_torch_backend):
    artifacts, backend = tiny_torch_backend
    rt = build_runtime(params(), Policy(artifacts, FallenBackBackend(backend)))
    try:
        assert rt.backend == "hailo (fallback cpu_fp32)"
        report = rt.report()  # inactive: would be OK on the NPU
        assert report.level is Level.WARN
        assert "running on fallback cpu_fp32: no Hailo device found" in report.message
        assert ("backend", "hailo (fallback cpu_fp32)") in report.values
    finally:
        rt.close()


def ensembling_policy(coeff: float = 0.05) -> Policy:
    """A checkpoint saved the way LeRobot saves one trained for temporal ensembling."""
    artifacts = demo_artifacts(tiny_spec(temporal_ensemble_coeff=coeff, n_action_steps=1), seed=3)
    return Policy(artifacts, create_backend("cpu_fp32", artifacts))


def test_a_checkpoint_trained_with_temporal_ensembling_runs_it_with_its_own_coefficient():
    rt = build_runtime(params(), ensembling_policy(0.05))
    try:
        schedule = rt.loop.schedule
        assert schedule.mode == "temporal_ensemble"
        np.testing.assert_allclose(schedule._ensembler.weights, np.exp(-0.05 * np.arange(10)), rtol=1e-6)
        info = dict(rt.schedule_info())
        assert info == {"schedule mode": "temporal_ensemble (checkpoint)", "n_action_steps": "1 (temporal ensembling)",
                        "temporal_ensemble_coeff": "0.05 (checkpoint)",
                        "chunk_aggregation": "weighted (temporal ensembling)"}
        assert set(info.items()) <= set(rt.report().values)  # and /diagnostics says so
    finally:
        rt.close()


def test_an_explicit_temporal_ensemble_mode_still_takes_the_checkpoints_coefficient():
    rt = build_runtime(params(schedule_mode="temporal_ensemble"), ensembling_policy(0.05))
    try:
        np.testing.assert_allclose(rt.loop.schedule._ensembler.weights, np.exp(-0.05 * np.arange(10)), rtol=1e-6)
        assert dict(rt.schedule_info())["schedule mode"] == "temporal_ensemble (parameter)"
    finally:
        rt.close()


def test_parameters_override_the_checkpoints_schedule_live_and_at_configure():
    rt = build_runtime(params(temporal_ensemble_coeff=0.2), ensembling_policy(0.05))
    try:
        np.testing.assert_allclose(rt.loop.schedule._ensembler.weights, np.exp(-0.2 * np.arange(10)), rtol=1e-6)
        assert dict(rt.schedule_info())["temporal_ensemble_coeff"] == "0.2 (parameter)"
        rt.apply({"temporal_ensemble_coeff": "checkpoint"})
        rt.tick()  # live settings take effect at the next tick
        np.testing.assert_allclose(rt.loop.schedule._ensembler.weights, np.exp(-0.05 * np.arange(10)), rtol=1e-6)
    finally:
        rt.close()
    rt = build_runtime(params(schedule_mode="sync", chunk_aggregation="blend", blend_steps=4), ensembling_policy())
    try:
        assert dict(rt.schedule_info()) == {
            "schedule mode": "sync (parameter)", "n_action_steps": "1 (checkpoint)",
            "temporal_ensemble_coeff": "0.05 (checkpoint)", "chunk_aggregation": "blend over 4 steps"}
    finally:
        rt.close()


def test_diagnostics_report_command_steps_at_switches_and_within_chunks_per_joint(policy):
    rt = build_runtime(params(), policy)
    try:
        for step, value, switch in ((0, 0.0, True), (1, 0.1, False), (2, 0.2, False), (3, 1.2, True)):
            rt.monitor.on_command(step, np.full(6, value), switch)
        values = dict(rt.report().values)
        assert values["command step at chunk switches p95/max per joint"] == " ".join(["1/1"] * 6)
        assert values["command step within chunks p95/max per joint"] == " ".join(["0.1/0.1"] * 6)
        assert values["influence lag steps p50/max"] == "n/a/n/a"
        schedule = rt.loop.schedule  # async, latest: a chunk takes over when it arrives, 2 steps after its observation
        for obs_step in (0, 3):
            schedule.offer(np.zeros((10, 6), np.float32), obs_step, obs_step + 2)
            schedule.next_action(obs_step + 2)
        values = dict(rt.report().values)
        assert values["influence lag steps p50/max"] == "2.0/2.0"
        assert values["arrival delay steps p50/max"] == "2.0/2.0"
    finally:
        rt.close()


def test_a_checkpoint_saved_by_lerobot_with_temporal_ensembling_runs_it_in_the_node(tmp_path):
    """Fixture case c was written by LeRobot 0.4.4 itself: temporal_ensemble_coeff 0.01, n_action_steps 1."""
    from lerobot_layout import materialize_parity_case

    folder, _ = materialize_parity_case("c", tmp_path / "c")
    settings = params(model_path=str(folder))
    rt = build_runtime(settings, load_node_policy(validate(settings)))
    try:
        assert dict(rt.schedule_info()) == {
            "schedule mode": "temporal_ensemble (checkpoint)", "n_action_steps": "1 (temporal ensembling)",
            "temporal_ensemble_coeff": "0.01 (checkpoint)", "chunk_aggregation": "weighted (temporal ensembling)"}
        assert rt.loop.schedule.mode == "temporal_ensemble"  # before: async, one action per inference, starving
    finally:
        rt.close()

"""The control loop: ticks never wait for inference, and an action only runs at the step it was predicted for.

The fake policy makes that checkable without timing: joint positions are set to the current
step number before each tick, and row ``i`` of a chunk computed from the observation of step
``s0`` is (after unit conversion) the value ``s0 + i`` — the step it is meant for. So in
async and ensemble modes every command must equal the step it is sent at.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from act_policy.core.config import STATE_KEY
from act_policy.core.errors import ObservationError
from act_policy.core.joint_units import JointUnits
from act_policy.core.policy import StageTimes
from act_policy.core.scheduling import TemporalEnsembler
from act_policy.runtime.health import HealthMonitor, HoldLog, Level, assess
from act_policy.runtime.observations import ObservationCache, RawImage
from act_policy.runtime.realtime import ActionSchedule, ControlLoop, LoopSettings
from act_policy.runtime.safety import Hold, Limits

CAM = "observation.images.front"
JOINTS = ["a", "b"]
SCALE, OFFSET = 2.0, 1.0  # policy = 2 * ros + 1
CHUNK = 10


class FakeClock:
    def __init__(self) -> None:
        self.t = 10.0

    def __call__(self) -> float:
        return self.t


class GatedPolicy:
    """Stands in for Policy.predict_chunk; blocks while ``gate`` is clear, can fail or emit NaN."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0
        self.error: Exception | None = None
        self.nan = False
        self.cancelled = 0
        self._stop = False

    def cancel(self) -> None:
        """Like ONNX Runtime's RunOptions.terminate: the running call fails soon."""
        self.cancelled += 1
        self._stop = True
        self.gate.set()

    def __call__(self, obs):
        self.calls += 1
        assert obs[CAM].shape == (4, 5, 3)
        assert self.gate.wait(30), "test never opened the gate"
        if self._stop:
            self._stop = False
            raise RuntimeError("Exiting due to terminate flag being set to true")
        if self.error is not None:
            raise self.error
        state = obs[STATE_KEY].astype(np.float64)
        chunk = state[None, :] + SCALE * np.arange(CHUNK)[:, None]  # row i ↦ ros value s0 + i
        if self.nan:
            chunk[:] = np.nan
        return chunk.astype(np.float32), StageTimes(1.0, 2.0, 3.0)


def settings(**overrides) -> LoopSettings:
    values = dict(enabled=True, n_action_steps=8, refill_threshold=3, ensemble_coeff=0.01, limits=Limits(),
                  max_image_age_ms=500.0, max_joint_age_ms=200.0)
    values.update(overrides)
    return LoopSettings(**values)


class Rig:
    def __init__(self, mode: str = "async", **overrides) -> None:
        self.clock = FakeClock()
        self.policy = GatedPolicy()
        self.cache = ObservationCache({CAM: "/cam"}, {CAM: (4, 5)}, JOINTS, "/joint_states", clock=self.clock)
        s = settings(**overrides)
        schedule = ActionSchedule(mode, CHUNK, s.n_action_steps, s.refill_threshold, s.ensemble_coeff)
        self.recorded: list = []
        self.loop = ControlLoop(self.cache, JointUnits([SCALE] * 2, [OFFSET] * 2), schedule, self.policy, s,
                                clock=self.clock, record=self.recorded.append, cancel=self.policy.cancel)
        self.loop.set_active(True)
        self.image = RawImage("rgb8", bytes(4 * 5 * 3), 4, 5, 15)

    def feed(self) -> None:
        step = self.loop.step
        self.cache.update_image(CAM, self.image)
        self.cache.update_joints(JOINTS, [float(step), float(step)])

    def tick(self, feed: bool = True):
        if feed:
            self.feed()
        return self.loop.tick()

    def settle(self) -> None:
        """Wait (not timed) until the worker has finished its job."""
        for _ in range(3000):
            if not self.loop.worker.busy:
                return
            time.sleep(0.001)
        raise AssertionError("worker did not finish")

    def close(self) -> None:
        self.policy.gate.set()
        self.loop.close()


@pytest.fixture
def rig():
    rigs = []

    def make(mode="async", **overrides):
        rigs.append(Rig(mode, **overrides))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def test_ticks_return_while_inference_is_still_running_and_late_rows_are_skipped(rig):
    r = rig()
    r.policy.gate.clear()  # the backend is now slower than any number of ticks
    results = [r.tick() for _ in range(6)]
    assert r.loop.worker.busy and not r.policy.gate.is_set()  # all six ticks returned mid-inference
    assert [x.hold for x in results] == [Hold.STARVED] * 6 and all(x.command is None for x in results)
    r.policy.gate.set()
    r.settle()
    first = r.tick()
    assert first.skipped == 6 and first.command.tolist() == [6.0, 6.0]
    assert first.chunk.job.obs_step == 0 and first.chunk.times.inference_ms == 2.0


def test_a_chunk_slower_than_its_own_window_is_dropped_and_diagnostics_say_what_to_change(rig):
    r = rig()
    r.policy.gate.clear()
    for _ in range(CHUNK):  # the inference outlasts every step its chunk covers
        r.tick()
    r.policy.gate.set()
    r.settle()
    assert r.tick().hold is Hold.STARVED and r.loop.schedule.stale_chunks == 1
    report = assess(r.loop, HealthMonitor(), backend="gated", control_rate_hz=30.0)
    assert report.level is Level.WARN
    assert (f"1 chunks arrived after all their actions were due: inference (p95 n/a ms) took longer than a chunk "
            f"lasts ({CHUNK} steps = {CHUNK * 1000 / 30:.0f} ms at this rate); lower control_rate_hz") in report.message


def test_a_queue_run_dry_is_blamed_on_the_refill_margin_unless_skipped_ticks_and_a_fast_inference_explain_it(rig):
    r = rig()
    r.policy.gate.clear()
    for _ in range(3):
        assert r.tick().hold is Hold.STARVED
    margin = f"{r.loop.schedule.refill_threshold * 1000 / 30:.0f} ms"
    slow = assess(r.loop, HealthMonitor(), backend="gated", control_rate_hz=30.0)
    assert (f"queue ran dry for 3 ticks: inference (p95 n/a ms) is slower than the refill margin ({margin}); "
            "raise refill_threshold") in slow.message
    stalled = assess(r.loop, HealthMonitor(), backend="gated", control_rate_hz=30.0, missed_ticks=12)
    assert "queue ran dry for 3 ticks after skipped control ticks used up its actions" in stalled.message
    assert "raise refill_threshold" not in stalled.message  # a stall is not fixed by a larger margin
    slow_and_stalled = HealthMonitor()
    slow_and_stalled.stages["total"].add(60_000.0)  # an inference of a minute: longer than any margin
    report = assess(r.loop, slow_and_stalled, backend="gated", control_rate_hz=30.0, missed_ticks=12)
    assert "is slower than the refill margin" in report.message and "raise refill_threshold" in report.message


def test_async_mode_only_ever_sends_the_action_predicted_for_the_current_step(rig):
    r = rig()
    sent = 0
    for i in range(60):
        if i % 3 == 0:
            r.settle()  # sometimes the chunk is back within a tick, sometimes it is late
        result = r.tick()
        if result.command is not None and result.hold is None:
            assert result.command.tolist() == [result.step] * 2
            sent += 1
    assert sent >= 20 and r.loop.counters.inferences >= 4
    assert r.loop.schedule.skipped_actions > 0


def test_refill_is_requested_when_the_queue_reaches_the_threshold(rig):
    r = rig(n_action_steps=8, refill_threshold=3)
    r.tick()
    r.settle()
    r.tick()  # chunk from step 0 arrives at step 1: rows 1..8 queued, one popped
    assert r.loop.schedule.depth == 7 and r.policy.calls == 1
    for _ in range(4):
        r.tick()
    r.settle()
    assert r.loop.schedule.depth == 3 and r.policy.calls == 1
    r.tick()
    r.settle()
    assert r.loop.schedule.depth == 2 and r.policy.calls == 2  # asked once 3 remained, not before


def test_sync_mode_runs_the_chunk_from_its_first_row_like_lerobot(rig):
    r = rig("sync", n_action_steps=4)
    assert r.tick().hold is Hold.STARVED  # observation of step 0 goes to the worker; the arm holds
    r.settle()
    commands = [r.tick() for _ in range(5)]
    assert [c.command.tolist()[0] for c in commands[:4]] == [0.0, 1.0, 2.0, 3.0]  # rows 0..3, nothing skipped
    assert commands[4].hold is Hold.STARVED  # queue ran dry: now it infers again


def test_temporal_ensembling_averages_predictions_for_the_same_step(rig):
    r = rig("temporal_ensemble", n_action_steps=1, ensemble_coeff=0.5)
    r.tick()
    for _ in range(8):
        r.settle()
        result = r.tick()
        assert result.command == pytest.approx([result.step] * 2)  # all predictions for a step agree here
    assert r.loop.schedule.ensemble_gaps == 0


def test_ensemble_weights_follow_act_and_a_missed_tick_restarts_the_average():
    coeff = 0.5
    s = ActionSchedule("temporal_ensemble", 4, 1, 0, coeff)
    zeros, ones = np.zeros((4, 1), np.float32), np.ones((4, 1), np.float32)
    s.offer(zeros, obs_step=0, step=1)
    assert s.next_action(1).tolist() == [0.0]
    s.offer(ones, obs_step=1, step=2)
    w0, w1 = 1.0, math.exp(-coeff)  # oldest prediction weighs most
    assert s.next_action(2)[0] == pytest.approx(w1 / (w0 + w1))
    assert s.next_action(3) is None  # no chunk arrived for step 3
    s.offer(ones, obs_step=3, step=4)
    assert s.ensemble_gaps == 1 and s.next_action(4).tolist() == [1.0]
    reference = TemporalEnsembler(coeff, 4)
    reference.update(np.concatenate([zeros[1:], zeros[-1:]]))
    assert reference.update(np.concatenate([ones[1:], ones[-1:]]))[0] == pytest.approx(w1 / (w0 + w1))


def test_a_chunk_whose_every_action_is_due_already_is_dropped():
    s = ActionSchedule("async", 4, 4, 1, 0.0)
    assert s.offer(np.zeros((4, 1)), obs_step=0, step=4) is None
    assert s.stale_chunks == 1 and s.next_action(4) is None


def test_backend_failure_holds_reports_and_retries_with_backoff(rig):
    r = rig()
    r.tick()
    r.settle()
    first = r.tick()
    assert first.command is not None
    last = first.command.tolist()
    r.policy.error = RuntimeError("NPU went away")
    for _ in range(5):  # drain the queue until the next request fails
        r.tick()
        r.settle()
    failed = r.tick()
    assert failed.hold is Hold.BACKEND_ERROR and "RuntimeError: NPU went away" in failed.detail
    assert failed.command is not None and failed.command.tolist() != last  # re-sends the last safe command
    calls = r.policy.calls
    for _ in range(3):
        assert r.tick().hold is Hold.BACKEND_ERROR
    assert r.policy.calls == calls  # no retry before the backoff expires: no crash loop
    r.policy.error = None
    r.clock.t += 1.01
    retry = r.tick()  # the actions queued before the failure belong to steps that passed while holding
    assert retry.hold is Hold.BACKEND_ERROR and r.loop.schedule.depth == 0
    r.settle()
    recovered = r.tick()
    assert recovered.hold is None and r.loop.backend_error is None
    assert recovered.command.tolist() == [recovered.step] * 2


def test_watchdog_holds_on_stale_camera_and_drops_queued_actions(rig):
    r = rig()
    r.tick()
    r.settle()
    sent = r.tick().command
    r.clock.t += 0.6
    r.cache.update_joints(JOINTS, [0.0, 0.0])
    stale = r.loop.tick()
    assert stale.hold is Hold.STALE and "observation.images.front 600 ms > 500 ms" in stale.detail
    assert stale.command.tolist() == sent.tolist() and r.loop.schedule.depth == 0


def test_disable_holds_and_inactive_sends_nothing(rig):
    r = rig()
    r.tick()
    r.settle()
    sent = r.tick().command
    r.loop.update_settings(settings(enabled=False))
    off = r.tick()
    assert off.hold is Hold.DISABLED and off.command.tolist() == sent.tolist()
    r.loop.set_active(False)
    assert r.tick().command is None


def test_live_settings_take_effect_on_the_next_tick(rig):
    r = rig()
    r.loop.update_settings(settings(limits=Limits(np.array([-1.0, -1.0]), np.array([1.5, 1.5]), None)))
    r.tick()
    r.settle()
    assert r.tick().command.tolist() == [1.0, 1.0]
    later = [r.tick() for _ in range(3)]
    assert all(x.command.tolist() == [1.5, 1.5] for x in later)
    assert r.loop.guard.clamp_count == 3


def test_images_the_policy_cannot_use_hold_with_the_topic_named(rig):
    r = rig()
    r.image = RawImage("rgb8", bytes(3 * 5 * 3), 3, 5, 15)
    r.tick()
    r.settle()
    bad = r.tick()
    assert bad.hold is Hold.OBSERVATION_ERROR and "/cam: image is 5x3" in bad.detail
    r.settle()
    assert r.tick().hold is Hold.OBSERVATION_ERROR  # stays the reported reason while retrying, no flapping
    r.image = RawImage("rgb8", bytes(4 * 5 * 3), 4, 5, 15)
    r.settle()
    r.tick()
    r.settle()
    recovered = r.tick()
    assert recovered.hold is None and r.loop.observation_error is None


def test_a_rejected_joint_state_holds_at_once_and_drops_the_queue_until_a_good_one_arrives(rig):
    """The queue would serve 7 more actions, and the last good state is not yet stale: neither matters."""
    r = rig()
    r.tick()
    r.settle()
    sent = r.tick().command
    with pytest.raises(ObservationError):
        r.cache.update_joints(JOINTS, [math.nan, 2.0])
    held = r.tick(feed=False)
    assert held.hold is Hold.OBSERVATION_ERROR and "/joint_states: non-finite position for joint(s) a" in held.detail
    assert held.command.tolist() == sent.tolist() and r.loop.schedule.depth == 0
    r.tick()  # a good state: inference is requested again
    r.settle()
    assert r.tick().hold is None


def test_non_finite_actions_are_never_sent(rig):
    r = rig()
    r.policy.nan = True
    r.tick()
    r.settle()
    result = r.tick()
    assert result.hold is Hold.NON_FINITE and result.command is None
    assert r.loop.counters.commands == 0


def test_inference_observations_are_handed_to_the_recorder(rig):
    r = rig()
    r.tick()
    r.settle()
    assert len(r.recorded) == 1
    assert set(r.recorded[0]) == {CAM, STATE_KEY}
    assert r.recorded[0][STATE_KEY].tolist() == [1.0, 1.0]  # ros 0 → policy 2 * 0 + 1


def test_async_chunk_aggregation_blends_the_old_chunk_into_the_new_one_and_measures_the_lag():
    s = ActionSchedule("async", 8, 6, 3, 0.01, "blend", 3)
    old, new = np.zeros((8, 1), np.float32), np.ones((8, 1), np.float32)
    assert s.offer(old, obs_step=0, step=1) == 1
    assert [s.next_action(t)[0] for t in (1, 2, 3, 4)] == [0.0] * 4
    assert s.depth == 2 and s.needs_inference()  # 6 actions from step 1: steps 5 and 6 remain
    assert s.offer(new, obs_step=4, step=5) == 1  # the old chunk still covers steps 5..7
    got = [s.next_action(t)[0] for t in range(5, 10)]
    assert got == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])  # alpha = (t - 5 + 1) / 4
    assert s.aggregation == "blend"
    s.lag.finish()
    assert list(s.lag.arrivals) == [1, 1]  # both chunks came one step after their observation
    # lag = arrival delay + sum of (1 - weight of the newest chunk): old 1 + 0, new 1 + 0.75 + 0.5 + 0.25
    assert list(s.lag.lags) == [1.0, 2.5]


def test_chunk_aggregation_changes_live_and_latest_replaces_at_once():
    s = ActionSchedule("async", 8, 6, 3, 0.01, "average")
    s.offer(np.zeros((8, 1), np.float32), obs_step=0, step=1)
    s.next_action(1)
    s.offer(np.full((8, 1), 2, np.float32), obs_step=1, step=2)
    assert s.next_action(2)[0] == pytest.approx(1.0)
    s.reconfigure(6, 3, 0.01, "latest", 0)
    assert s.next_action(3)[0] == 2.0


def test_sync_mode_aggregates_the_previous_chunks_unexecuted_tail():
    s = ActionSchedule("sync", 8, 4, 0, 0.01, "average")
    s.offer(np.zeros((8, 1), np.float32), obs_step=0, step=1)  # runs from its arrival, as LeRobot's queue
    assert [s.next_action(t)[0] for t in range(1, 5)] == [0.0] * 4
    assert s.needs_inference() and s.next_action(5) is None  # the arm holds while the next chunk is inferred
    s.offer(np.full((8, 1), 2, np.float32), obs_step=6, step=7)
    assert s.next_action(7)[0] == pytest.approx(1.0)  # the first chunk covers steps 1..8
    assert s.next_action(9)[0] == 2.0
def test_after_a_reset_every_tick_holds_the_last_safe_command_until_the_new_episode_commands(rig):
    r = rig()
    r.tick()
    r.settle()
    r.policy.gate.clear()  # the next inference stays in flight until the reset comes
    for _ in range(20):  # until the queue reaches the refill threshold and an inference is requested
        sent = r.tick().command
        if r.loop.worker.busy:
            break
    assert r.loop.worker.busy and sent is not None
    r.loop.request_reset()
    held = [r.tick() for _ in range(4)]
    assert [x.hold for x in held] == [Hold.STARVED] * 4
    assert all(x.command is not None and x.command.tolist() == sent.tolist() for x in held)  # never silent
    r.policy.gate.set()
    r.settle()
    assert r.tick().chunk is not None  # the dropped inference's chunk is discarded ...
    r.settle()
    resumed = r.tick()  # ... and the new episode's first chunk is used
    assert resumed.hold is None and resumed.command.tolist() == [float(resumed.step)] * 2


def test_activation_forgets_the_last_command_because_the_arm_may_have_moved_meanwhile(rig):
    r = rig()
    r.tick()
    r.settle()
    assert r.tick().command is not None
    r.loop.set_active(False)
    r.loop.set_active(True)
    assert r.loop.tick().command is None and r.loop.guard.last_command is None


def test_a_reset_cancels_the_inference_in_flight_so_the_next_request_need_not_wait_behind_it(rig):
    r = rig()
    r.policy.gate.clear()
    r.tick()  # an inference starts and would block until the gate opens
    r.loop.request_reset()
    r.tick()
    assert r.policy.cancelled == 1  # stopped, not waited for
    r.settle()
    restarted = r.tick()  # the cancelled run's failure is discarded; the new episode's request goes out now
    assert restarted.hold is Hold.STARVED and r.loop.backend_error is None
    assert r.loop.counters.backend_failures == 0
    r.settle()
    assert r.policy.calls == 2 and r.tick().hold is None
    r.loop.update_settings(settings(enabled=False))
    r.tick()
    assert r.policy.cancelled == 1  # nothing was in flight: nothing to cancel


def test_the_log_says_each_change_of_state_once_and_leaves_the_lifecycle_hold_to_the_transitions():
    log = HoldLog()
    # configure starts the control thread before it logs its summary: the inactive ticks add nothing to it
    assert log.line(Hold.INACTIVE) is None and log.line(Hold.INACTIVE) is None
    # activated ("active" is the transition's): what follows, once per change
    waiting = "joint_states never received"
    assert log.line(Hold.WAITING, waiting) == (Level.WARN, f"holding: {Hold.WAITING.value} ({waiting})")
    assert log.line(Hold.WAITING, waiting) is None
    assert log.line(None) == (Level.OK, "commanding")
    assert log.line(Hold.STARVED) is None  # a momentarily empty queue is /diagnostics' to count
    assert log.line(None) is None
    stale = log.line(Hold.STALE, "observation.images.front 250 ms > 200 ms")
    assert stale == (Level.WARN, "holding: observation too old (observation.images.front 250 ms > 200 ms)")
    assert log.line(Hold.STALE, "observation.images.front 266 ms > 200 ms") is None  # only the ages changed
    assert log.line(Hold.STALE, "joint_states 210 ms > 200 ms") is not None  # another input went stale
    assert log.line(Hold.DISABLED) == (Level.OK, "holding: disabled")  # asked for: news, not a warning
    # deactivated ("inactive: holding, ..." is the transition's), then activated again: commanding is news again
    assert log.line(Hold.INACTIVE) is None
    assert log.line(None) == (Level.OK, "commanding")

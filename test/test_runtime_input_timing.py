"""Input staleness is the age of the data, not how late its callback ran; late callbacks are their own warning."""

from __future__ import annotations

import pytest

from act_policy.core.policy import Policy
from act_policy.runtime.health import Level
from act_policy.runtime.observations import ObservationCache, RawImage, delivery_delay_s
from act_policy.runtime.safety import Hold, stale_sources
from act_policy.runtime.session import build_runtime

JOINTS = [f"joint{i}" for i in range(6)]
CAM = "observation.images.front"


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_delivery_delay_is_measured_from_the_middlewares_receive_time():
    assert delivery_delay_s(1_000_000_000, 1_250_000_000) == pytest.approx(0.25)
    assert delivery_delay_s(0, 5_000_000_000) == 0.0  # the middleware gave no time: counts from the callback
    assert delivery_delay_s(2_000_000_000, 1_000_000_000) == 0.0  # system clock stepped back


def test_a_late_callback_does_not_make_fresh_data_look_stale():
    clock = FakeClock()
    cache = ObservationCache({CAM: "/cam"}, {CAM: (4, 5)}, ["a"], "/joint_states", clock=clock)
    # received 20 ms ago by the middleware, handed to us now: 20 ms old, however late the callback
    cache.update_joints(["a"], [0.0], received_at=clock.t - 0.020)
    cache.update_image(CAM, RawImage("rgb8", bytes(60), 4, 5, 15), received_at=clock.t - 0.030)
    clock.t += 0.150
    ages = cache.ages_ms()
    assert ages["joint_states"] == pytest.approx(170.0) and ages[CAM] == pytest.approx(180.0)
    assert stale_sources(ages, max_image_age_ms=500.0, max_joint_age_ms=200.0) == []


def test_late_callbacks_are_reported_in_diagnostics_as_their_own_condition(tiny_torch_backend):
    clock = FakeClock()
    rt = build_runtime({"model_path": "unused", "joint_names": JOINTS, "camera_topics": ["front=/cam"],
                        "control_rate_hz": 30.0}, Policy(*tiny_torch_backend), clock=clock)
    try:
        rt.loop.set_active(True)
        image = RawImage("rgb8", bytes(64 * 80 * 3), 64, 80, 240)
        for delay in (0.001, 0.120):  # the second callback ran 120 ms after its message arrived
            rt.cache.update_image(CAM, image, received_at=clock.t - delay)
            rt.on_input("/cam", delay)
            rt.cache.update_joints(JOINTS, [0.0] * 6, received_at=clock.t - delay)
            rt.on_input("/joint_states", delay)
        result = rt.tick()
        assert result.hold is not Hold.STALE  # 120 ms old joints are within max_joint_state_age_ms (200)
        report = rt.report()
        assert report.level is Level.WARN
        assert "2 input callbacks ran more than one control period (33.3 ms) after their message arrived " \
               "(max 120.0 ms)" in report.message
        values = dict(report.values)
        assert values["late input callbacks"] == "2"
        assert values["input callback delay ms p50/p95/max"].endswith("/120.0")
        assert "input callbacks" not in rt.report().message  # judged per report interval
    finally:
        rt.close()

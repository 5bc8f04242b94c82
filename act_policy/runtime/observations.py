"""The latest camera images and joint states, turned into what the policy was trained on.

Images are stored as they arrive (a reference to the message buffer, no conversion) and
converted only when an inference needs them: a camera at 30 fps feeding a policy that infers
at 5 Hz should not pay for 25 conversions a second. The conversion itself (zero-copy for
unpadded ``rgb8`` / ``bgr8`` / ``mono8``, OpenCV or PyAV for the rest) is
:mod:`act_policy.core.image_messages`, shared with the readers of recorded data.

Joint states are matched by name, per joint, so a driver that publishes the gripper in a
separate JointState message works; each joint keeps its own arrival time. Ages use the
monotonic clock of the process (never ROS time, which stalls under ``use_sim_time``), counted from when
the middleware received the message: a callback that runs late must not make fresh data look stale.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from act_policy.core.errors import ObservationError
from act_policy.core.image_messages import RawImage, decode_image


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR convention), no anti-aliasing.

    Pure NumPy so the node needs no image library; separable: rows, then columns.
    """
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image

    def axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis(src_h, height)
    x0, x1, wx = axis(src_w, width)
    img = image.astype(np.float32)
    rows = img[y0] * (1 - wy)[:, None, None] + img[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_policy_image(raw: RawImage, size: tuple[int, int], *, allow_resize: bool, source: str) -> np.ndarray:
    """Decode, then check or resize to the trained (height, width); errors name the source topic."""
    image = decode_image(raw, source)
    if image.shape[:2] == size:
        return image
    if not allow_resize:
        raise ObservationError(f"{source}: image is {image.shape[1]}x{image.shape[0]} but the policy was trained "
                               f"on {size[1]}x{size[0]}; set the camera to that resolution or allow_resize:=true")
    return resize_bilinear(image, *size)


def delivery_delay_s(received_ns: int, now_ns: int) -> float:
    """Seconds between the middleware receiving a message (``received_ns``, e.g. rmw's ``received_timestamp``)
    and ``now_ns`` on the same clock; 0 when the middleware gives no time (0) or the clock stepped back."""
    if received_ns <= 0:
        return 0.0
    return max(0.0, (now_ns - received_ns) * 1e-9)


@dataclass(frozen=True)
class Capture:
    """The latest data at one instant, unconverted (cheap to take in the control tick)."""

    images: dict[str, RawImage]
    joint_positions: np.ndarray  # ROS units, joint_names order
    ages_ms: dict[str, float]


class ObservationCache:
    """Latest image per camera and latest position per joint, safe to update from any thread."""

    def __init__(self, camera_topics: Mapping[str, str], image_sizes: Mapping[str, tuple[int, int]],
                 joint_names: Sequence[str], joint_topic: str, *, allow_resize: bool = False,
                 clock: Callable[[], float]) -> None:
        self.camera_topics = dict(camera_topics)
        self.image_sizes = dict(image_sizes)
        self.joint_names = tuple(joint_names)
        self.joint_topic = joint_topic
        self.allow_resize = allow_resize
        self._clock = clock
        self._lock = threading.Lock()
        self._images: dict[str, tuple[RawImage, float]] = {}
        self._positions = np.full(len(self.joint_names), np.nan)
        self._joint_stamps = np.full(len(self.joint_names), -np.inf)
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self.errors: dict[str, str] = {}  # source → last error (cleared by the next good message)
        self.counts: dict[str, int] = {}

    def update_image(self, feature: str, raw: RawImage, received_at: float | None = None) -> None:
        """Store the latest image of ``feature``; ``received_at`` (this cache's clock, s) is when the middleware
        received it — its age counts from then, not from when a possibly late callback ran. Default: now."""
        now = self._clock() if received_at is None else received_at
        with self._lock:
            self._images[feature] = (raw, now)
            self.counts[feature] = self.counts.get(feature, 0) + 1

    def update_joints(self, names: Sequence[str], positions: Sequence[float], received_at: float | None = None
                      ) -> None:
        """Store the positions of our joints from one JointState; a bad message is rejected whole.
        ``received_at`` as in :meth:`update_image`."""
        now = self._clock() if received_at is None else received_at
        source = self.joint_topic
        try:
            if len(positions) != len(names):
                raise ObservationError(f"{source}: {len(names)} names but {len(positions)} positions")
            values = np.asarray(positions, np.float64)
            updates = {self._index[n]: values[i] for i, n in enumerate(names) if n in self._index}
            bad = [self.joint_names[j] for j, v in updates.items() if not math.isfinite(v)]
            if bad:
                raise ObservationError(f"{source}: non-finite position for joint(s) {', '.join(bad)}")
        except ObservationError as exc:
            with self._lock:
                self.errors[source] = str(exc)
            raise
        with self._lock:
            for j, v in updates.items():
                self._positions[j] = v
                self._joint_stamps[j] = now
            self.errors.pop(source, None)
            self.counts[source] = self.counts.get(source, 0) + 1

    def rejected_joint_state(self) -> str | None:
        """Why the latest JointState message was rejected, or None when it was used (until the next good one)."""
        with self._lock:
            return self.errors.get(self.joint_topic)

    def missing_joints(self) -> list[str]:
        with self._lock:
            return [n for n, t in zip(self.joint_names, self._joint_stamps, strict=True) if t == -np.inf]

    def ages_ms(self) -> dict[str, float]:
        """Age of each camera's latest image and of the oldest joint ("joint_states"); inf = never seen."""
        now = self._clock()
        with self._lock:
            ages = {f: (now - self._images[f][1]) * 1e3 if f in self._images else math.inf
                    for f in self.camera_topics}
            oldest = float(self._joint_stamps.min()) if self.joint_names else now
            ages["joint_states"] = (now - oldest) * 1e3
        return ages

    def joint_positions(self) -> np.ndarray | None:
        """Latest positions (ROS units) when every joint has been seen, else None."""
        with self._lock:
            return None if np.isnan(self._positions).any() else self._positions.copy()

    def capture(self) -> Capture:
        """References to the latest data; ObservationError names what was never received."""
        ages = self.ages_ms()
        with self._lock:
            images = {f: raw for f, (raw, _) in self._images.items()}
            positions = self._positions.copy()
        missing = [n for n, v in zip(self.joint_names, positions, strict=True) if np.isnan(v)]
        if missing:
            raise ObservationError(f"{self.joint_topic}: no position received yet for joint(s) {', '.join(missing)}")
        for feature, topic in self.camera_topics.items():
            if feature not in images:
                raise ObservationError(f"{topic}: no image received yet (camera {feature})")
        return Capture(images, positions, ages)

    def convert(self, capture: Capture) -> dict[str, np.ndarray]:
        """Camera feature → uint8 RGB at the trained size; ObservationError names the topic at fault."""
        converted = {}
        for feature, topic in self.camera_topics.items():
            try:
                converted[feature] = to_policy_image(capture.images[feature], self.image_sizes[feature],
                                                     allow_resize=self.allow_resize, source=topic)
            except ObservationError as exc:
                with self._lock:
                    self.errors[topic] = str(exc)
                raise
            with self._lock:
                self.errors.pop(topic, None)
        return converted

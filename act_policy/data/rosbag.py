"""Read a rosbag2 recording (sqlite3 or mcap) as one :class:`Episode` sampled at a fixed rate.

Messages are deserialized with the ``rosbags`` package and its ROS 2 Jazzy type store
(sensor_msgs/JointState, Image, CompressedImage; std_msgs/Float64MultiArray), so no ROS
installation is needed.

Time alignment — *latest-before sampling*: the episode's steps are ``t_k = t_0 + k / rate``
where ``t_0`` is the first instant at which every selected topic has published at least
once and the last step is not after the earliest "last message" of those topics. At step
``k`` each topic contributes its latest message stamped ``<= t_k`` — exactly what a node
holding "the last message received" would have seen at that control tick; nothing is
interpolated and no message from the future is used. A topic whose latest message is older
than ``max_age_s`` at some step (a recording gap) is an error naming the topic and time.
Stamps are the bag's receive times by default, or the messages' ``header.stamp`` with
``use_header_stamps`` (topics without a header, such as Float64MultiArray, always use the
receive time).

Joint values — state and recorded actions — are ROS units (radians) in the bag; ``joint_scale`` /
``joint_offset`` convert them to the policy's units with the node's own :class:`JointUnits`, so a
calibration or replay on a bag sees exactly the values the node would feed the policy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from act_policy.core.config import ACTION_KEY, STATE_KEY, PolicySpec
from act_policy.core.dependencies import needs
from act_policy.core.image_messages import RawImage
from act_policy.core.joint_units import JointUnits
from act_policy.data.decoding import recorded_image
from act_policy.data.episode import CameraStream, DatasetError, Episode, check_features, recorded_name

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
FLOAT64_ARRAY = "std_msgs/msg/Float64MultiArray"


@dataclass(frozen=True)
class BagOptions:
    """Which topics feed which features, in what joint order and units, sampled at what rate."""

    state_topic: str = "/joint_states"
    camera_topics: Mapping[str, str] = field(default_factory=dict)  # feature name → Image/CompressedImage topic
    action_topic: str | None = None  # JointState or Float64MultiArray of the commands; None: no recorded actions
    joint_names: Sequence[str] | None = None  # order of state/action entries; None: the first state message's
    rate_hz: float = 30.0
    use_header_stamps: bool = False
    max_age_s: float = 0.5
    # policy = ros * scale + offset for state and action entries, read like the node's joint_scale / joint_offset
    # parameters: empty = 1 (resp. 0) for every joint, one value = every joint, else one per joint
    joint_scale: Sequence[float] = ()
    joint_offset: Sequence[float] = ()


@dataclass
class _Topic:
    topic: str
    msgtype: str
    connections: list[Any]
    stamps: list[int] = field(default_factory=list)  # nanoseconds, one per message in bag order
    values: list[np.ndarray] = field(default_factory=list)  # decoded vectors (joint/action topics only)


def _rosbags():
    with needs("reading rosbag2 files"):
        from rosbags.rosbag2 import Reader
        from rosbags.typesys import Stores, get_typestore
    return Reader, get_typestore(Stores.ROS2_JAZZY)


def _bag_dir(path: Path) -> Path:
    """rosbags opens a bag directory (metadata.yaml + storage files); accept a storage file too."""
    if path.is_file() and (path.parent / "metadata.yaml").is_file():
        return path.parent
    if not (path / "metadata.yaml").is_file():
        raise DatasetError(f"{path}: not a rosbag2 directory (no metadata.yaml)")
    return path


def _stamp_ns(msg: Any, receive_ns: int, use_header: bool) -> int:
    """Integer nanoseconds: float seconds since 1970 would lose sub-microsecond precision."""
    if use_header and hasattr(msg, "header"):
        return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)
    return int(receive_ns)


def image_to_rgb(msg: Any, msgtype: str, source: str) -> np.ndarray:
    """sensor_msgs Image or CompressedImage → uint8 HxWx3 RGB, converted exactly as the live node does."""
    return recorded_image(RawImage.from_message(msg, compressed=msgtype == COMPRESSED_IMAGE), source)


class RosbagEpisodeReader:
    """Reads the selected topics of one bag; :meth:`episode` returns them aligned to ``options.rate_hz``."""

    def __init__(self, path: str | Path, options: BagOptions) -> None:
        if options.rate_hz <= 0:
            raise DatasetError(f"rate must be positive, got {options.rate_hz}")
        self.path = _bag_dir(Path(path))
        self.options = options
        self._reader_cls, self._typestore = _rosbags()

    def _open(self):
        try:
            return self._reader_cls(self.path)
        except Exception as exc:  # rosbags raises its own ReaderError types and sqlite/mcap errors
            raise DatasetError(f"{self.path}: cannot open rosbag2: {exc}") from exc

    def _topic(self, reader: Any, topic: str, allowed: tuple[str, ...], role: str) -> _Topic:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            present = ", ".join(sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections))
            raise DatasetError(f"{self.path}: {role} topic {topic!r} is not in the bag; topics: {present}")
        msgtype = connections[0].msgtype
        if msgtype not in allowed:
            raise DatasetError(f"{self.path}: {role} topic {topic!r} has type {msgtype}; "
                               f"expected {' or '.join(allowed)}")
        return _Topic(topic, msgtype, connections)

    def episode(self, spec: PolicySpec | None = None) -> Episode:
        """Read and align; with ``spec``, check joints and camera resolutions against the policy first."""
        o = self.options
        if spec is not None:
            missing = [recorded_name(spec, f.name) for f in spec.cameras
                       if recorded_name(spec, f.name) not in o.camera_topics]
            if missing:
                raise DatasetError(f"{self.path}: no camera topic given for {missing}; "
                                   f"camera mapping: {dict(o.camera_topics) or 'empty'}")
        with self._open() as reader:
            state = self._topic(reader, o.state_topic, (JOINT_STATE,), "state")
            action = self._topic(reader, o.action_topic, (JOINT_STATE, FLOAT64_ARRAY), "action") \
                if o.action_topic else None
            cameras = {name: self._topic(reader, topic, (IMAGE, COMPRESSED_IMAGE), f"camera {name!r}")
                       for name, topic in o.camera_topics.items()}
            joint_names, shapes = self._scan(reader, state, action, cameras)
        units = self._units(joint_names, action)
        available = {STATE_KEY: (len(joint_names),), **shapes}
        if action is not None:
            available[ACTION_KEY] = action.values[0].shape
        if spec is not None:
            check_features(spec, available, str(self.path), need_action=action is not None)

        topics = [state, *cameras.values(), *([action] if action else [])]
        times = self._grid(topics)
        picks = {t.topic: self._pick(t, times) for t in topics}
        seconds = (times - times[0]) * 1e-9
        streams = {
            name: CameraStream(shapes[name][0], shapes[name][1], f"{self.path}: {topic.topic}",
                               lambda t=topic, idx=picks[topic.topic]: self._frames(t, idx))
            for name, topic in cameras.items()
        }
        states = np.stack(state.values)[picks[state.topic]]
        actions = np.stack(action.values)[picks[action.topic]] if action else None
        notes = [f"rosbag2 {self.path.name}: {len(times)} steps at {o.rate_hz:g} Hz, latest-before sampling on "
                 f"{'header' if o.use_header_stamps else 'receive'} stamps"]
        if units is not None:
            states = units.to_policy(states)
            actions = units.to_policy(actions) if actions is not None else None
            notes.append(f"joint units: policy = ros * {units.scale.tolist()} + {units.offset.tolist()}")
        return Episode(
            source=str(self.path), index=0, fps=o.rate_hz, timestamps=seconds,
            vectors={STATE_KEY: states}, cameras=streams, actions=actions,
            joint_names=tuple(joint_names), notes=tuple(notes))

    def _units(self, joint_names: list[str], action: _Topic | None) -> JointUnits | None:
        """The ROS → policy mapping for these joints; None when the values are used as recorded."""
        o = self.options
        if not o.joint_scale and not o.joint_offset:
            return None
        try:
            units = JointUnits.from_parameters(o.joint_scale, o.joint_offset, len(joint_names))
        except ValueError as exc:
            order = "the given joint_names" if o.joint_names else "the first state message's order"
            raise DatasetError(f"{self.path}: {exc}; the state joints ({order}): {', '.join(joint_names)}")
        if action is not None and action.values[0].shape[0] != len(joint_names):
            raise DatasetError(f"{self.path}: {action.topic} has {action.values[0].shape[0]} values per message but "
                               f"the joint unit mapping is for the {len(joint_names)} state joints {joint_names}")
        return units

    def _scan(self, reader: Any, state: _Topic, action: _Topic | None,
              cameras: dict[str, _Topic]) -> tuple[list[str], dict[str, tuple[int, int, int]]]:
        """One pass: stamps of every topic, joint vectors in ``joint_names`` order, each camera's resolution."""
        o = self.options
        joint_names = list(o.joint_names) if o.joint_names else None
        shapes: dict[str, tuple[int, int, int]] = {}
        by_connection = {c.id: t for t in (state, action, *cameras.values()) if t for c in t.connections}
        camera_of = {t.topic: name for name, t in cameras.items()}
        connections = [c for t in by_connection.values() for c in t.connections]
        for connection, receive_ns, raw in reader.messages(connections=connections):
            topic = by_connection[connection.id]
            msg = self._typestore.deserialize_cdr(raw, topic.msgtype)
            topic.stamps.append(_stamp_ns(msg, receive_ns, o.use_header_stamps))
            if topic.msgtype == JOINT_STATE:
                if joint_names is None:
                    joint_names = list(msg.name)
                topic.values.append(self._joints(msg, joint_names, topic.topic, len(topic.stamps) - 1))
            elif topic.msgtype == FLOAT64_ARRAY:
                topic.values.append(np.asarray(msg.data, np.float32))
            elif topic.topic in camera_of and camera_of[topic.topic] not in shapes:
                source = f"{self.path}: {topic.topic} message 0"
                shapes[camera_of[topic.topic]] = image_to_rgb(msg, topic.msgtype, source).shape
        for t in by_connection.values():
            if not t.stamps:
                raise DatasetError(f"{self.path}: topic {t.topic!r} has no messages")
        if action is not None and action.msgtype == FLOAT64_ARRAY:
            lengths = {v.shape[0] for v in action.values}
            if len(lengths) != 1:
                raise DatasetError(f"{self.path}: {action.topic} arrays change length: {sorted(lengths)}")
        return joint_names or [], shapes

    def _joints(self, msg: Any, names: list[str], topic: str, index: int) -> np.ndarray:
        position = dict(zip(msg.name, np.asarray(msg.position, np.float64), strict=False))
        missing = [n for n in names if n not in position]
        if missing or len(msg.position) != len(msg.name):
            raise DatasetError(f"{self.path}: {topic} message {index} lacks position(s) for {missing or 'some'} "
                               f"joints; it names {list(msg.name)} with {len(msg.position)} positions")
        values = np.array([position[n] for n in names], np.float32)
        if not np.all(np.isfinite(values)):
            raise DatasetError(f"{self.path}: {topic} message {index} has NaN/inf positions: {values}")
        return values

    def _grid(self, topics: list[_Topic]) -> np.ndarray:
        """Step times (int64 ns) from the first instant all topics have spoken to the first topic's end."""
        start = max(min(t.stamps) for t in topics)
        end = min(max(t.stamps) for t in topics)
        if end < start:
            raise DatasetError(f"{self.path}: the selected topics never overlap in time "
                               f"({', '.join(t.topic for t in topics)})")
        offsets = np.round(np.arange(int((end - start) * self.options.rate_hz / 1e9) + 2) * 1e9
                           / self.options.rate_hz).astype(np.int64)
        return start + offsets[offsets <= end - start]

    def _pick(self, topic: _Topic, times: np.ndarray) -> np.ndarray:
        """Index (bag order) of the latest message of ``topic`` stamped at or before each time."""
        stamps = np.asarray(topic.stamps, np.int64)
        order = np.argsort(stamps, kind="stable")
        position = np.searchsorted(stamps[order], times, side="right") - 1
        picked = order[position]
        age = (times - stamps[picked]) * 1e-9
        if np.any(age > self.options.max_age_s):
            k = int(np.argmax(age > self.options.max_age_s))
            raise DatasetError(f"{self.path}: {topic.topic} has no message in the {self.options.max_age_s} s before "
                               f"t={(times[k] - times[0]) * 1e-9:.3f} s (step {k}; latest is {age[k]:.3f} s old); "
                               "raise max_age_s or cut the recording")
        return picked

    def _frames(self, topic: _Topic, picks: np.ndarray) -> Iterator[np.ndarray]:
        """Stream the picked frames in step order, holding only frames still needed by a later step."""
        last_use = {int(i): step for step, i in enumerate(picks)}
        cache: dict[int, np.ndarray] = {}
        with self._open() as reader:
            messages = reader.messages(connections=topic.connections)
            ordinal = -1
            for step, wanted in enumerate(int(i) for i in picks):
                while wanted not in cache:
                    _, _, raw = next(messages)
                    ordinal += 1
                    if ordinal in last_use:
                        msg = self._typestore.deserialize_cdr(raw, topic.msgtype)
                        cache[ordinal] = image_to_rgb(msg, topic.msgtype, f"{self.path}: {topic.topic} "
                                                                           f"message {ordinal}")
                yield cache[wanted]
                if last_use[wanted] == step:
                    del cache[wanted]


def read_rosbag_episode(path: str | Path, options: BagOptions, spec: PolicySpec | None = None) -> Episode:
    """Convenience: ``RosbagEpisodeReader(path, options).episode(spec)``."""
    return RosbagEpisodeReader(path, options).episode(spec)

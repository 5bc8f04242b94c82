"""Write tiny LeRobot datasets (v2.1 and v3.0 on-disk layouts) and rosbag2 files for reader tests.

The paths, column names and metadata rows follow LeRobot's source (see the docstring of
act_policy/data/lerobot_dataset.py for the files they come from); they are spelled out
literally here rather than imported from the reader, so a reader bug cannot hide behind a
shared constant.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class EpisodeData:
    state: np.ndarray  # (T, S) float32
    action: np.ndarray  # (T, A) float32
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # camera key → (T, H, W, 3) uint8


def flat_color_frames(steps: int, height: int, width: int, offset: int = 0) -> np.ndarray:
    """Each frame one distinct flat colour, so even a lossy codec keeps frames tellable apart."""
    values = (offset + 23 * np.arange(steps)) % 200 + 20
    frames = np.empty((steps, height, width, 3), np.uint8)
    frames[..., 0] = values[:, None, None]
    frames[..., 1] = 255 - values[:, None, None]
    frames[..., 2] = (values[:, None, None] * 3) % 256
    return frames


def frame_index_of(frame: np.ndarray, steps: int, offset: int = 0) -> int:
    """Which frame of ``flat_color_frames`` a decoded frame is (nearest mean colour)."""
    reference = flat_color_frames(steps, 1, 1, offset)[:, 0, 0].astype(np.float32)
    mean = frame.reshape(-1, 3).mean(0)
    return int(np.argmin(np.abs(reference - mean).sum(1)))


def encode_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def encode_png(image: np.ndarray) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as container:
        stream = container.add_stream("png")
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def _features(first: EpisodeData, camera_dtype: str, fps: int) -> dict:
    features = {
        "action": {"dtype": "float32", "shape": [first.action.shape[1]],
                   "names": [f"joint_{i}.pos" for i in range(first.action.shape[1])]},
        "observation.state": {"dtype": "float32", "shape": [first.state.shape[1]],
                              "names": [f"joint_{i}.pos" for i in range(first.state.shape[1])]},
    }
    for key, frames in first.frames.items():
        h, w = frames.shape[1:3]
        features[key] = {"dtype": camera_dtype, "shape": [h, w, 3], "names": ["height", "width", "channels"],
                         "info": {"video.fps": fps, "video.codec": "h264", "video.pix_fmt": "yuv420p"}}
    for key in ("timestamp",):
        features[key] = {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        features[key] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def _frame_table(ep: EpisodeData, episode_index: int, first_index: int, fps: int, camera_dtype: str,
                 embed_images: bool):
    import pyarrow as pa

    steps = ep.state.shape[0]
    columns = {
        "action": pa.array(list(ep.action), type=pa.list_(pa.float32())),
        "observation.state": pa.array(list(ep.state), type=pa.list_(pa.float32())),
        "timestamp": pa.array(np.arange(steps, dtype=np.float32) / fps),
        "frame_index": pa.array(np.arange(steps, dtype=np.int64)),
        "episode_index": pa.array(np.full(steps, episode_index, np.int64)),
        "index": pa.array(first_index + np.arange(steps, dtype=np.int64)),
        "task_index": pa.array(np.zeros(steps, np.int64)),
    }
    if camera_dtype == "image":
        for key, frames in ep.frames.items():
            cells = [{"bytes": encode_png(f) if embed_images else None, "path": f"frame_{i:06d}.png"}
                     for i, f in enumerate(frames)]
            columns[key] = pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    return pa.table(columns)


def write_v21(root: Path, episodes: list[EpisodeData], fps: int = 30, camera_dtype: str = "video",
              embed_images: bool = True, chunks_size: int = 1000) -> Path:
    """LeRobot v2.1: one parquet + one mp4 per episode, meta/episodes.jsonl."""
    import pyarrow.parquet as pq

    (root / "meta").mkdir(parents=True, exist_ok=True)
    info = {
        "codebase_version": "v2.1", "robot_type": "so101_follower",
        "total_episodes": len(episodes), "total_frames": sum(len(e.state) for e in episodes),
        "total_tasks": 1, "total_videos": len(episodes) * len(episodes[0].frames), "total_chunks": 1,
        "chunks_size": chunks_size, "fps": fps, "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        if camera_dtype == "video" else None,
        "features": _features(episodes[0], camera_dtype, fps),
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    lines, first = [], 0
    for i, ep in enumerate(episodes):
        chunk = i // chunks_size
        path = root / f"data/chunk-{chunk:03d}/episode_{i:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_frame_table(ep, i, first, fps, camera_dtype, embed_images), path)
        if camera_dtype == "video":
            for key, frames in ep.frames.items():
                encode_mp4(root / f"videos/chunk-{chunk:03d}/{key}/episode_{i:06d}.mp4", frames, fps)
        elif not embed_images:
            for key, frames in ep.frames.items():
                for j, frame in enumerate(frames):
                    image = root / f"images/{key}/episode_{i:06d}/frame_{j:06d}.png"
                    image.parent.mkdir(parents=True, exist_ok=True)
                    image.write_bytes(encode_png(frame))
        lines.append(json.dumps({"episode_index": i, "tasks": ["pick the cube"], "length": len(ep.state)}))
        first += len(ep.state)
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "pick the cube"}) + "\n")
    return root


def write_v30(root: Path, episodes: list[EpisodeData], fps: int = 30) -> Path:
    """LeRobot v3.0: all episodes in data/chunk-000/file-000.parquet and one mp4 per camera."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    info = {
        "codebase_version": "v3.0", "robot_type": "so101_follower",
        "total_episodes": len(episodes), "total_frames": sum(len(e.state) for e in episodes), "total_tasks": 1,
        "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": _features(episodes[0], "video", fps),
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    tables, rows, first, start_s = [], [], 0, 0.0
    for i, ep in enumerate(episodes):
        steps = len(ep.state)
        tables.append(_frame_table(ep, i, first, fps, "video", True))
        row = {"episode_index": i, "tasks": ["pick the cube"], "length": steps,
               "data/chunk_index": 0, "data/file_index": 0,
               "dataset_from_index": first, "dataset_to_index": first + steps,
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
               "stats/action/mean": [float(v) for v in ep.action.mean(0)]}
        for key in ep.frames:
            row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                        f"videos/{key}/from_timestamp": start_s, f"videos/{key}/to_timestamp": start_s + steps / fps})
        rows.append(row)
        first += steps
        start_s += steps / fps
    (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), root / "data/chunk-000/file-000.parquet")
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    for key in episodes[0].frames:
        encode_mp4(root / f"videos/{key}/chunk-000/file-000.mp4",
                   np.concatenate([ep.frames[key] for ep in episodes]), fps)
    return root


@dataclass
class BagMessage:
    topic: str
    receive_ns: int
    msg: object


def write_bag(path: Path, storage: str, messages: list[BagMessage]) -> Path:
    """Write ``messages`` (already built with the Jazzy type store) to a rosbag2 with sqlite3 or mcap storage."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for m in sorted(messages, key=lambda m: m.receive_ns):
            if m.topic not in connections:
                connections[m.topic] = writer.add_connection(m.topic, m.msg.__msgtype__, typestore=typestore)
            writer.write(connections[m.topic], m.receive_ns, typestore.serialize_cdr(m.msg, m.msg.__msgtype__))
    return path


class JazzyMessages:
    """Builders for the messages a robot records, with the field names of the Jazzy definitions."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.types = get_typestore(Stores.ROS2_JAZZY).types

    def header(self, stamp_ns: int, frame_id: str = "") -> object:
        t = self.types
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                                              nanosec=stamp_ns % 10**9),
                                        frame_id=frame_id)

    def joint_state(self, stamp_ns: int, names: list[str], positions: np.ndarray) -> object:
        positions = np.asarray(positions, np.float64)
        return self.types["sensor_msgs/msg/JointState"](
            header=self.header(stamp_ns), name=list(names), position=positions,
            velocity=np.zeros(0, np.float64), effort=np.zeros(0, np.float64))

    def image(self, stamp_ns: int, rgb: np.ndarray, encoding: str = "rgb8", pad: int = 0) -> object:
        """``pad`` extra bytes per row exercise ``step`` handling."""
        pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
        h, w, _ = rgb.shape
        rows = np.zeros((h, w * 3 + pad), np.uint8)
        rows[:, : w * 3] = pixels.reshape(h, w * 3)
        return self.types["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, "camera"), height=h, width=w, encoding=encoding, is_bigendian=0,
            step=w * 3 + pad, data=rows.reshape(-1))

    def compressed_png(self, stamp_ns: int, rgb: np.ndarray) -> object:
        return self.types["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_ns, "camera"), format="png", data=np.frombuffer(encode_png(rgb), np.uint8))

    def float64_array(self, values: np.ndarray) -> object:
        t = self.types
        layout = t["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        return t["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(values, np.float64))

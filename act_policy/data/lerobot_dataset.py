"""Read one episode of a LeRobot dataset on disk (codebase v2.0/v2.1 and v3.0 layouts).

Layouts, as defined in huggingface/lerobot:

- v2.x (``src/lerobot/datasets/utils.py`` before the v3 change; the legacy names are kept
  as ``LEGACY_DEFAULT_PARQUET_PATH`` / ``LEGACY_DEFAULT_VIDEO_PATH`` and described in
  ``src/lerobot/scripts/convert_dataset_v21_to_v30.py``): one parquet file per episode,
  ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet`` with
  ``episode_chunk = episode_index // chunks_size``, one mp4 per episode and camera at
  ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``, and the
  episode list in ``meta/episodes.jsonl`` (``{"episode_index", "tasks", "length"}``).
- v3.0 (``src/lerobot/datasets/utils.py``: ``DEFAULT_DATA_PATH``, ``DEFAULT_VIDEO_PATH``,
  ``DEFAULT_EPISODES_PATH``; ``src/lerobot/datasets/dataset_metadata.py``:
  ``get_data_file_path`` / ``get_video_file_path``): many episodes per file,
  ``data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet`` and
  ``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4``; per-episode rows in
  ``meta/episodes/chunk-*/file-*.parquet`` give ``data/chunk_index``, ``data/file_index`` and,
  per camera, ``videos/{key}/chunk_index``, ``videos/{key}/file_index``,
  ``videos/{key}/from_timestamp``.

Both: ``meta/info.json`` holds ``codebase_version``, ``fps``, ``chunks_size``, the path
templates (``data_path``, ``video_path``) and ``features`` (dtype ``video`` or ``image`` for
cameras with shape ``[H, W, 3]``). A frame's video time is ``from_timestamp + timestamp``
(``from_timestamp`` is 0 in v2), as in ``_query_videos`` of
``src/lerobot/datasets/dataset_reader.py``. Image features (dtype ``image``) are stored in
the parquet column as ``{"bytes": PNG, "path": ...}`` (``embed_images`` in
``src/lerobot/datasets/io_utils.py``); unembedded ones are read from ``path`` or the
``images/`` folder (v2: ``episode_{i:06d}/frame_{j:06d}.png``, v3: ``episode-…/frame-….png``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from act_policy.core.config import ACTION_KEY, PolicySpec
from act_policy.core.dependencies import require
from act_policy.data.decoding import decode_image_bytes, video_frames
from act_policy.data.episode import (
    CameraStream,
    DatasetError,
    Episode,
    check_features,
    describe_indices,
    recorded_name,
)

CAMERA_DTYPES = ("video", "image")
IMAGE_FOLDER = {2: "images/{key}/episode_{episode:06d}/frame_{frame:06d}.png",
                3: "images/{key}/episode-{episode:06d}/frame-{frame:06d}.png"}
DEFAULT_TOLERANCE_S = 1e-4  # LeRobotDataset's default tolerance_s


def _pyarrow():
    return require("pyarrow.parquet", "reading LeRobot datasets")


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; is this a LeRobot dataset folder (meta/info.json)?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON: {exc}") from exc


def dataset_features(info: dict[str, Any], info_path: Path) -> dict[str, tuple[int, ...]]:
    """Observation and action features of a dataset with their shapes (cameras as (H, W, 3))."""
    features = info.get("features")
    if not isinstance(features, dict):
        raise DatasetError(f"{info_path}: 'features' missing or not an object")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, ft in features.items():
        if not (name.startswith("observation.") or name == ACTION_KEY):
            continue
        shape = tuple(ft.get("shape", ()))
        if ft.get("dtype") in CAMERA_DTYPES:
            names = ft.get("names") or []
            if len(shape) == 3 and len(names) == 3 and names[0] in ("channel", "channels"):
                shape = (shape[1], shape[2], shape[0])  # (c, h, w) → (h, w, c)
        shapes[name] = shape
    return shapes


class LeRobotDataset:
    """A LeRobot dataset folder; :meth:`episode` reads one episode as an :class:`Episode`."""

    def __init__(self, root: str | Path, tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        self.root = Path(root)
        self.info_path = self.root / "meta" / "info.json"
        self.info: dict[str, Any] = _load_json(self.info_path)
        version = str(self.info.get("codebase_version", ""))
        if version.startswith("v2."):
            self.major = 2
        elif version.startswith("v3."):
            self.major = 3
        else:
            raise DatasetError(f"{self.info_path}: codebase_version {version!r} is not supported; "
                               "expected v2.0, v2.1 or v3.0")
        self.version = version
        try:
            self.fps = float(self.info["fps"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{self.info_path}: 'fps' missing or not a number")
        self.features = dataset_features(self.info, self.info_path)
        self.camera_keys = [k for k, ft in self.info["features"].items() if ft.get("dtype") in CAMERA_DTYPES]
        self.tolerance_s = tolerance_s
        self._episodes: dict[int, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ metadata
    @property
    def episodes(self) -> dict[int, dict[str, Any]]:
        """Episode index → its metadata row (``meta/episodes.jsonl`` or ``meta/episodes/*.parquet``)."""
        if self._episodes is None:
            self._episodes = self._load_episodes_v2() if self.major == 2 else self._load_episodes_v3()
        return self._episodes

    def _load_episodes_v2(self) -> dict[int, dict[str, Any]]:
        path = self.root / "meta" / "episodes.jsonl"
        if not path.is_file():
            raise DatasetError(f"{path} does not exist (v2 datasets list their episodes there)")
        rows = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    rows[int(row["episode_index"])] = row
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise DatasetError(f"{path}:{n}: expected a JSON object with 'episode_index': {exc}")
        return rows

    def _load_episodes_v3(self) -> dict[int, dict[str, Any]]:
        pq = _pyarrow()
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{self.root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet files "
                               "(v3 datasets list their episodes there)")
        rows = {}
        for path in files:
            schema = pq.read_schema(path)
            columns = [c for c in schema.names if not c.startswith("stats/")]
            if "episode_index" not in columns:
                raise DatasetError(f"{path}: no 'episode_index' column")
            for row in pq.read_table(path, columns=columns).to_pylist():
                row["_file"] = str(path)
                rows[int(row["episode_index"])] = row
        return rows

    def _episode_row(self, index: int) -> dict[str, Any]:
        if index not in self.episodes:
            raise DatasetError(f"{self.root}: episode {index} does not exist; episodes in this dataset: "
                               f"{describe_indices(list(self.episodes))}")
        return self.episodes[index]

    def _template(self, key: str) -> str:
        template = self.info.get(key)
        if not isinstance(template, str):
            raise DatasetError(f"{self.info_path}: '{key}' path template missing")
        return template

    def data_file(self, index: int) -> Path:
        row = self._episode_row(index)
        if self.major == 2:
            chunk = index // int(self.info.get("chunks_size", 1000))
            return self.root / self._template("data_path").format(episode_chunk=chunk, episode_index=index)
        return self.root / self._template("data_path").format(
            chunk_index=self._meta_int(row, "data/chunk_index"), file_index=self._meta_int(row, "data/file_index"))

    def video_file(self, index: int, key: str) -> tuple[Path, float]:
        """The mp4 holding ``key`` for episode ``index`` and the episode's start time inside it."""
        row = self._episode_row(index)
        if self.major == 2:
            chunk = index // int(self.info.get("chunks_size", 1000))
            path = self._template("video_path").format(episode_chunk=chunk, video_key=key, episode_index=index)
            return self.root / path, 0.0
        path = self._template("video_path").format(
            video_key=key, chunk_index=self._meta_int(row, f"videos/{key}/chunk_index"),
            file_index=self._meta_int(row, f"videos/{key}/file_index"))
        return self.root / path, float(self._meta_value(row, f"videos/{key}/from_timestamp"))

    def _meta_value(self, row: dict[str, Any], column: str) -> Any:
        if row.get(column) is None:
            raise DatasetError(f"{row['_file']}: episode {row['episode_index']} has no '{column}'")
        return row[column]

    def _meta_int(self, row: dict[str, Any], column: str) -> int:
        return int(self._meta_value(row, column))

    # ------------------------------------------------------------------ episodes
    def episode(self, index: int, spec: PolicySpec | None = None) -> Episode:
        """Episode ``index``; with ``spec``, only the policy's features, checked against it first."""
        self._episode_row(index)
        if spec is not None:
            check_features(spec, self.features, str(self.info_path), need_action=ACTION_KEY in self.features)
            wanted = [recorded_name(spec, f.name) for f in spec.inputs]
        else:
            wanted = [k for k in self.features if k != ACTION_KEY]
        cameras = [k for k in wanted if k in self.camera_keys]
        vectors = [k for k in wanted if k not in self.camera_keys]
        path = self.data_file(index)
        table = self._episode_table(path, index, [*vectors, *(k for k in cameras if self._is_image(k))])
        timestamps = np.asarray(table.column("timestamp").to_numpy(), np.float64)
        actions = (_matrix(table, ACTION_KEY, path, self.features[ACTION_KEY][0])
                   if ACTION_KEY in self.features and ACTION_KEY in table.column_names else None)
        streams = {}
        for key in cameras:
            h, w, _ = self.features[key]
            if self._is_image(key):
                column = table.column(key).to_pylist()
                streams[key] = CameraStream(h, w, f"{path}: column {key!r}", self._image_frames(key, index, column))
            else:
                video, start = self.video_file(index, key)
                query = start + timestamps
                source = f"{video} ({key}, episode {index})"
                streams[key] = CameraStream(
                    h, w, source, lambda v=video, q=query, s=source: video_frames(v, q, self.tolerance_s, s))
        return Episode(
            source=str(self.root), index=index, fps=self.fps, timestamps=timestamps - timestamps[0],
            vectors={k: _matrix(table, k, path, self.features[k][0]) for k in vectors},
            cameras=streams, actions=actions,
            joint_names=self._names(ACTION_KEY),
            notes=(f"LeRobot dataset {self.version}, {self.fps:g} fps, episode {index}: {len(timestamps)} frames",))

    def _is_image(self, key: str) -> bool:
        return self.info["features"][key].get("dtype") == "image"

    def _names(self, key: str) -> tuple[str, ...] | None:
        names = self.info["features"].get(key, {}).get("names")
        if isinstance(names, dict):  # older datasets: {"motors": [...]}
            names = next(iter(names.values()), None)
        return tuple(str(n) for n in names) if isinstance(names, list) else None

    def _episode_table(self, path: Path, index: int, columns: list[str]):
        pq = _pyarrow()
        if not path.is_file():
            raise DatasetError(f"{path} does not exist (data file of episode {index})")
        available = pq.read_schema(path).names
        required = ["timestamp", "frame_index", "episode_index", *columns]
        if ACTION_KEY in available:
            required.append(ACTION_KEY)
        missing = [c for c in required if c not in available]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing}; columns present: {available}")
        table = pq.read_table(path, columns=required, filters=[("episode_index", "=", index)])
        if table.num_rows == 0:
            raise DatasetError(f"{path}: no rows with episode_index == {index}")
        order = np.argsort(table.column("frame_index").to_numpy(), kind="stable")
        return table.take(order)

    def _image_frames(self, key: str, index: int, cells: list[Any]):
        def frames() -> Iterator[np.ndarray]:
            for frame_index, cell in enumerate(cells):
                source = f"{self.root}: {key!r} episode {index} frame {frame_index}"
                if isinstance(cell, dict) and cell.get("bytes"):
                    yield decode_image_bytes(cell["bytes"], source)
                    continue
                candidates = []
                if isinstance(cell, dict) and cell.get("path"):
                    candidates += [Path(cell["path"]), self.root / cell["path"]]
                candidates.append(self.root / IMAGE_FOLDER[self.major].format(key=key, episode=index,
                                                                                frame=frame_index))
                file = next((p for p in candidates if p.is_file()), None)
                if file is None:
                    raise DatasetError(f"{source}: image not embedded and none of {[str(p) for p in candidates]} "
                                       "exists")
                yield decode_image_bytes(file.read_bytes(), str(file))

        return frames


def _matrix(table, key: str, path: Path, width: int) -> np.ndarray:
    """A list/fixed-size-list column of ``width`` numbers per row as float32 (rows, width)."""
    column = table.column(key).combine_chunks()
    try:
        values = np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32)
    except (AttributeError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: column {key!r} is not a numeric vector column: {exc}") from exc
    lengths = np.diff(column.offsets.to_numpy()) if hasattr(column, "offsets") else None
    if values.size != table.num_rows * width or (lengths is not None and np.any(lengths != width)):
        raise DatasetError(f"{path}: column {key!r} should hold {width} numbers per row (meta/info.json shape)")
    matrix = values.reshape(table.num_rows, width)
    if not np.all(np.isfinite(matrix)):
        bad = int(np.argwhere(~np.isfinite(matrix))[0][0])
        raise DatasetError(f"{path}: column {key!r} contains NaN or infinity (first at row {bad})")
    return matrix


def read_lerobot_episode(root: str | Path, index: int, spec: PolicySpec | None = None,
                         tolerance_s: float = DEFAULT_TOLERANCE_S) -> Episode:
    """Convenience: ``LeRobotDataset(root).episode(index, spec)``."""
    return LeRobotDataset(root, tolerance_s).episode(index, spec)

"""Where static INT8 calibration gets its observations (``act-policy quantize / hailo-prepare --calib SOURCE``).

INT8 ranges are only as good as the observations they are measured on, so calibrate on what
the robot's cameras and joints really produce. SOURCE is one of:

* **a folder of ``.npz`` files** (e.g. written by the node's ``record_dir``), read in file-name order,
  or **one ``.npz`` file**:

  - keys are the policy's input feature names (``observation.state``,
    ``observation.images.<camera>``, ...; names from the checkpoint's ``rename_map`` are accepted too);
  - images are uint8 RGB, ``(H, W, 3)``; vectors are float ``(N,)``;
  - one observation per file, or one episode per file with a leading time axis on every key
    (``(T, H, W, 3)`` images, ``(T, N)`` vectors; T equal for all keys);
  - extra keys (e.g. ``action``, ``timestamp``) are ignored.

* **a LeRobot dataset folder** (``meta/info.json``; v2.x or v3.0): one episode (``--episode``).
* **a rosbag2** (folder or storage file, sqlite3 or mcap; read with ``rosbags``, no ROS needed):
  the state topic, ``FEATURE=TOPIC`` per camera and the joint order are given as options, and
  the bag is sampled at ``--rate`` Hz with latest-before alignment (:mod:`act_policy.data.rosbag`).
* **``synthetic``** (or no source): the demo's synthetic scenes, with a loud warning — fine
  for trying the flow, not for a robot.

Datasets and bags are read by :func:`act_policy.data.read_episode`, the reader replay uses,
so features, resolutions and topics are checked before any calibration starts. From every
source, ``samples`` observations evenly spaced over the whole recording are used; a source
holding fewer is an error naming it and its count, never a smaller calibration. A dataset
episode or bag is decoded step by step up to the last chosen step (lower ``--rate`` to skim
a long bag faster).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from act_policy.core.config import FeatureType, PolicySpec
from act_policy.core.errors import CheckpointError
from act_policy.core.synthetic import synthetic_observations
from act_policy.data import LEROBOT_DATASET, ROSBAG2, BagOptions, read_episode, recording_kind
from act_policy.data.episode import recorded_name

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
CALIBRATION_SEED = 101  # distinct from the benchmark's held-out seed
SYNTHETIC_DT = 0.1  # 10 Hz steps: more scene motion per sample than the demo's 30 Hz


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class CalibrationError(CheckpointError):
    """A calibration source is missing, malformed or too small."""


@dataclass(frozen=True)
class Recording:
    """A LeRobot dataset episode or a rosbag2 to calibrate on; ``bag_options`` are needed for a bag."""

    path: Path
    episode: int = 0
    bag_options: BagOptions | None = None

    def __str__(self) -> str:
        """How the source is recorded in policy.json and named in errors."""
        if recording_kind(self.path) == LEROBOT_DATASET:
            return f"{self.path} (LeRobot dataset, episode {self.episode})"
        o = self.bag_options
        if o is None:
            return f"{self.path} (rosbag2)"
        cameras = ", ".join(f"{feature}={topic}" for feature, topic in o.camera_topics.items())
        units = "".join(f", {name} {list(values)}" for name, values in (("joint scale", o.joint_scale),
                                                                         ("joint offset", o.joint_offset)) if values)
        return f"{self.path} (rosbag2: state {o.state_topic}, cameras {cameras or 'none'}, {o.rate_hz:g} Hz{units})"


@dataclass(frozen=True)
class _Episode:
    path: Path
    length: int
    batched: bool  # True: leading time axis on every key


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of every array in an ``.npz`` without reading the data."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in _HEADER_READERS:
                        raise ValueError(f"{info.filename}: unsupported .npy format version {version}")
                    shape, _, dtype = _HEADER_READERS[version](f)
                headers[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CalibrationError(f"{path}: not a readable .npz file ({exc})")
    return headers


def _feature_keys(spec: PolicySpec, available: set[str]) -> dict[str, str]:
    """Map each input feature to the file key holding it (its own name or a rename_map source)."""
    keys = {}
    for f in spec.inputs:
        candidates = [f.name] + [src for src, dst in spec.rename_map.items() if dst == f.name]
        keys[f.name] = next((c for c in candidates if c in available), "")
    return keys


def _inspect(path: Path, spec: PolicySpec) -> _Episode:
    headers = _npz_headers(path)
    keys = _feature_keys(spec, set(headers))
    missing = [name for name, key in keys.items() if not key]
    if missing:
        raise CalibrationError(f"{path}: missing keys {missing}; found {sorted(headers)}")
    lengths = set()
    for f in spec.inputs:
        shape, dtype = headers[keys[f.name]]
        expected = (f.shape[1], f.shape[2], 3) if f.type is FeatureType.VISUAL else f.shape
        if f.type is FeatureType.VISUAL and dtype != np.uint8:
            raise CalibrationError(f"{path}: {keys[f.name]!r} has dtype {dtype}, expected uint8 RGB")
        if shape == expected:
            lengths.add(None)
        elif shape[1:] == expected:
            lengths.add(shape[0])
        else:
            raise CalibrationError(f"{path}: {keys[f.name]!r} has shape {shape}, expected {expected} "
                                   f"(one observation) or (T, {', '.join(map(str, expected))}) (an episode)")
    if len(lengths) != 1:
        raise CalibrationError(f"{path}: keys disagree on the number of observations ({sorted(map(str, lengths))})")
    length = lengths.pop()
    return _Episode(path, 1 if length is None else length, length is not None)


def npz_observations(folder: str | Path, spec: PolicySpec, samples: int,
                     held_out: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """``samples`` observations spread evenly over the recordings in ``folder`` (or the one ``.npz`` file).

    With ``held_out`` > 0: instead, up to that many observations spread evenly over the steps the
    calibration with ``samples`` does NOT use. Every file is checked (keys, shapes, dtypes,
    count) before the first observation is returned.
    """
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationError(f"{folder}: does not exist")
    if folder.is_file() and folder.suffix == ".npz":
        files = [folder]
    elif folder.is_dir():
        files = sorted(folder.glob("*.npz"))
    else:
        raise CalibrationError(f"{folder}: not a LeRobot dataset or rosbag2, so the calibration source must be a "
                               f".npz file, a folder of .npz files or '{SYNTHETIC}'")
    episodes = [_inspect(p, spec) for p in files]
    total = sum(e.length for e in episodes)
    if total < samples:
        raise CalibrationError(f"{folder}: {total} observations in {len(episodes)} .npz files, "
                               f"but {samples} calibration samples were requested")
    return _read(episodes, _chosen(total, samples, held_out), spec)


def _spread(total: int, samples: int) -> list[int]:
    """``samples`` distinct indices evenly spaced over ``range(total)`` (``samples <= total``)."""
    return sorted(set(np.linspace(0, total - 1, samples).round().astype(int).tolist()))


def _chosen(total: int, samples: int, held_out: int) -> list[int]:
    """The calibration steps, or (``held_out`` > 0) up to ``held_out`` steps evenly spread over the others."""
    calibration = _spread(total, samples)
    if held_out <= 0:
        return calibration
    rest = sorted(set(range(total)) - set(calibration))
    return [rest[i] for i in _spread(len(rest), min(held_out, len(rest)))] if rest else []


def _read(episodes: list[_Episode], wanted: list[int], spec: PolicySpec) -> Iterator[dict[str, np.ndarray]]:
    start = 0
    for episode in episodes:
        chosen = [i - start for i in wanted if start <= i < start + episode.length]
        start += episode.length
        if not chosen:
            continue
        with np.load(episode.path) as data:
            keys = _feature_keys(spec, set(data.files))
            arrays = {name: data[key] for name, key in keys.items()}
        for i in chosen:
            yield {name: (a[i] if episode.batched else a) for name, a in arrays.items()}


def recorded_observations(recording: Recording, spec: PolicySpec, samples: int,
                          held_out: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """``samples`` observations spread evenly over a LeRobot dataset episode or a rosbag2
    (``held_out`` > 0: the steps not used for calibration instead, as :func:`npz_observations`).

    The recording is opened and checked against ``spec`` (features, resolutions, topics) and
    its length compared with ``samples`` before the first observation is returned.
    """
    episode = read_episode(recording.path, recording.episode, spec, recording.bag_options)
    if len(episode) < samples:
        hint = " (a rosbag2 gives more steps at a higher --rate)" if recording_kind(recording.path) == ROSBAG2 else ""
        raise CalibrationError(f"{recording}: {len(episode)} observations, but {samples} calibration samples were "
                               f"requested{hint}")
    keys = {f.name: recorded_name(spec, f.name) for f in spec.inputs}
    return _steps(episode.observations(), _chosen(len(episode), samples, held_out), keys)


def _steps(observations: Iterator[dict[str, np.ndarray]], wanted: list[int],
           keys: dict[str, str]) -> Iterator[dict[str, np.ndarray]]:
    """The ``wanted`` steps (ascending) of an episode, keyed by policy feature names like the .npz source."""
    chosen = iter(wanted)
    target = next(chosen, None)
    for step, obs in enumerate(observations):
        if step == target:
            yield {name: obs[key] for name, key in keys.items()}
            target = next(chosen, None)
            if target is None:
                return


def calibration_source(calib: str | Path | Recording | None, episode: int = 0,
                       bag_options: BagOptions | None = None) -> Path | Recording | None:
    """What ``--calib`` names: None (synthetic scenes), a :class:`Recording`, or a folder of .npz files."""
    if isinstance(calib, Recording):
        return calib
    synthetic = calib is None or str(calib) == SYNTHETIC
    path = None if synthetic else Path(calib)
    if path is not None and recording_kind(path) is not None:
        return Recording(path, episode, bag_options)
    if episode != 0:
        raise CalibrationError(f"episode {episode} was requested, but the calibration source "
                               f"{calib or SYNTHETIC} is not a LeRobot dataset")
    return path


def calibration_observations(source: str | Path | Recording | None, spec: PolicySpec, stats: dict,
                             samples: int, held_out: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Observations from ``source`` (see the module docstring), keyed by the policy's feature names.

    ``held_out`` > 0 gives, instead, up to that many observations of a recorded source that a
    calibration with ``samples`` does not use (none when it uses every step); for synthetic
    scenes, :func:`act_policy.export.fidelity.held_out_observations` is the held-out set.
    """
    if samples < 1:
        raise CalibrationError(f"calibration needs at least 1 sample, got {samples}")
    source = calibration_source(source)
    if source is None and held_out > 0:
        raise ValueError("synthetic calibration scenes have no held-out steps; use fidelity.held_out_observations")
    if source is None:
        log.warning("calibrating on SYNTHETIC scenes, not your robot's camera images: INT8 accuracy on the "
                    "real robot is unknown. Record observations and pass --calib FOLDER, DATASET or BAG for "
                    "deployment.")
        return synthetic_observations(spec, stats, samples, seed=CALIBRATION_SEED, dt=SYNTHETIC_DT)
    if isinstance(source, Recording):
        return recorded_observations(source, spec, samples, held_out)
    return npz_observations(source, spec, samples, held_out)

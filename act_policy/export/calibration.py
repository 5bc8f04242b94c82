"""Calibration observations for static INT8 quantization, and the quantization itself.

Recorded observations (``--calib FOLDER``) are ``.npz`` files, read in file-name order:

* keys are the policy's input feature names (``observation.state``,
  ``observation.images.<camera>``, ...; names from the checkpoint's ``rename_map`` are accepted too);
* images are uint8 RGB, ``(H, W, 3)``; vectors are float ``(N,)``;
* one observation per file, or one episode per file with a leading time axis on every key
  (``(T, H, W, 3)`` images, ``(T, N)`` vectors; T equal for all keys).

Extra keys (e.g. ``action``, ``timestamp``) are ignored. When more observations exist than
requested, evenly spaced ones are taken so the whole recording is covered; fewer is an error.
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

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
CALIBRATION_SEED = 101  # distinct from the benchmark's held-out seed
SYNTHETIC_DT = 0.1  # 10 Hz steps: more scene motion per sample than the demo's 30 Hz


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class CalibrationError(CheckpointError):
    """A calibration source is missing, malformed or too small."""


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


def npz_observations(folder: str | Path, spec: PolicySpec, samples: int) -> Iterator[dict[str, np.ndarray]]:
    """``samples`` observations spread evenly over the recordings in ``folder``.

    Every file is checked (keys, shapes, dtypes, count) before the first observation is returned.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: calibration source must be a folder of .npz files or '{SYNTHETIC}'")
    episodes = [_inspect(p, spec) for p in sorted(folder.glob("*.npz"))]
    total = sum(e.length for e in episodes)
    if total < samples:
        raise CalibrationError(f"{folder}: {total} observations in {len(episodes)} .npz files, "
                               f"but {samples} calibration samples were requested")
    wanted = sorted(set(np.linspace(0, total - 1, samples).round().astype(int).tolist()))
    return _read(episodes, wanted, spec)


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


def calibration_observations(source: str | Path | None, spec: PolicySpec, stats: dict,
                             samples: int) -> Iterator[dict[str, np.ndarray]]:
    """Observations from ``source`` (a folder of .npz files) or, if None/'synthetic', the demo scenes."""
    if samples < 1:
        raise CalibrationError(f"calibration needs at least 1 sample, got {samples}")
    if source is None or str(source) == SYNTHETIC:
        log.warning("calibrating on SYNTHETIC scenes, not your robot's camera images: INT8 accuracy on the "
                    "real robot is unknown. Record observations and pass --calib FOLDER for deployment.")
        return synthetic_observations(spec, stats, samples, seed=CALIBRATION_SEED, dt=SYNTHETIC_DT)
    return npz_observations(source, spec, samples)

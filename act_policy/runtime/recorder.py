"""Save the observations the policy sees, so INT8 / Hailo calibration can use the user's own scenes.

Format (one sample per file; read by ``act_policy.export.calibration``, i.e. ``act-policy quantize
--calib DIR`` and ``act-policy hailo-prepare --calib DIR``):
``<record_dir>/obs_<NNNNNN>.npz`` written with ``numpy.savez``; its keys are the policy's
observation feature names exactly as ``Policy.predict_chunk`` takes them —
``observation.state`` float32 (S,) in policy (dataset) units and one
``observation.images.<camera>`` uint8 (H, W, 3) RGB at the trained resolution per camera.
Files are written to a temporary name and renamed, so a reader never sees half a file;
numbering continues after existing files instead of overwriting them.

Writing happens on a background thread with a small bounded queue: the inference worker
hands a sample over and never waits for the disk; samples that do not fit are counted as dropped.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from act_policy.runtime.cpu_scheduling import make_current_thread_normal

FILE_PATTERN = re.compile(r"obs_(\d{6,})\.npz$")


def next_index(directory: Path) -> int:
    indices = [int(m.group(1)) for p in directory.iterdir() if (m := FILE_PATTERN.match(p.name))]
    return max(indices, default=-1) + 1


def write_sample(path: Path, observation: Mapping[str, np.ndarray]) -> None:
    """Atomically write one sample (see module docstring for the format)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **{k: np.ascontiguousarray(v) for k, v in observation.items()})
    tmp.replace(path)


class ObservationRecorder:
    """Callable sink for observations; ``configure`` switches recording on, off or elsewhere (live)."""

    def __init__(self, queue_size: int = 8) -> None:
        self._queue: queue.Queue[tuple[Path, dict[str, np.ndarray]] | None] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._directory: Path | None = None
        self._every_n = 1
        self._max_samples = 0
        self._seen = 0
        self._index = 0
        self._accepted = 0
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="act_policy-recorder", daemon=True)
        self._thread.start()

    @property
    def directory(self) -> Path | None:
        return self._directory

    def configure(self, directory: str, every_n: int, max_samples: int) -> None:
        """Start (non-empty ``directory``), retarget or stop recording; raises OSError if it can't be created."""
        with self._lock:
            target = Path(directory).expanduser() if directory else None
            if target != self._directory:
                if target is not None:
                    target.mkdir(parents=True, exist_ok=True)
                    self._index = next_index(target)
                self._directory, self._seen, self._accepted = target, 0, 0
            self._every_n, self._max_samples = every_n, max_samples

    def __call__(self, observation: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            if self._directory is None or self._accepted >= self._max_samples:
                return
            self._seen += 1
            if (self._seen - 1) % self._every_n:
                return
            path = self._directory / f"obs_{self._index:06d}.npz"
            try:
                self._queue.put_nowait((path, {k: np.array(v) for k, v in observation.items()}))
            except queue.Full:
                self.dropped += 1
                return
            self._index += 1
            self._accepted += 1

    def _run(self) -> None:
        # a background writer: not the short slice the node's threads ask for (it cannot fail where that worked)
        make_current_thread_normal()
        while (item := self._queue.get()) is not None:
            path, observation = item
            try:
                write_sample(path, observation)
                self.written += 1
            except OSError as exc:
                self.last_error = f"{path}: {exc}"
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5.0)

"""The control thread: calls the control tick at a fixed rate on the monotonic clock, on a thread of its own.

Why not a ROS timer: a timer callback is dispatched by an rclpy executor, whose threads also take every
camera image and service request and run Python per wake-up; under load the tick then waits for them
(issue 15 measured 17 Hz instead of 30). A dedicated thread waits on absolute deadlines, so lateness does
not accumulate, and it is the one thread that can be given a real-time priority
(:func:`act_policy.runtime.cpu_scheduling.make_current_thread_realtime`) without lifting anything else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def next_deadline(due: float, now: float, period: float) -> tuple[float, int]:
    """The next tick time after the tick due at ``due`` finished at ``now``, and how many ticks were missed.

    Normally ``due + period``. When that time has passed already (the thread got no CPU for longer than a
    period), the ticks in between are skipped rather than run back to back: a burst of commands would
    reach the arm as one jump. Times in seconds.
    """
    following = due + period
    if following >= now:
        return following, 0
    missed = int((now - due) // period)
    return due + (missed + 1) * period, missed


class Ticker:
    """Runs ``tick()`` every ``period()`` seconds (re-read each time, so rate changes apply next tick).

    ``setup`` runs first in the thread and returns messages for the log (e.g. a refused real-time
    priority). ``missed`` counts skipped ticks; a tick that raises ends nothing — ``tick`` must handle its
    own errors, the ticker only keeps time.
    """

    def __init__(self, tick: Callable[[], None], period: Callable[[], float], *,
                 setup: Callable[[], list[str]] | None = None, clock: Callable[[], float] = time.monotonic,
                 name: str = "act_policy-control") -> None:
        self._tick = tick
        self._period = period
        self._setup = setup
        self._clock = clock
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.missed = 0
        self.setup_messages: list[str] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> list[str]:
        """Start the thread; returns the messages of ``setup`` once it ran."""
        self._thread.start()
        self._ready.wait()
        return self.setup_messages

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop after the current tick (no tick starts afterwards); True if the thread ended in time."""
        self._stop.set()
        if self._thread.ident is None:
            return True
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.setup_messages = list(self._setup()) if self._setup is not None else []
        finally:
            self._ready.set()
        due = self._clock()
        while not self._stop.is_set():
            self._tick()
            due, missed = next_deadline(due, self._clock(), self._period())
            self.missed += missed
            delay = due - self._clock()
            if delay > 0 and self._stop.wait(delay):
                return

"""A client-side limiter shared by a worker's threads, keeping an outside API under its documented limits.

DocSpace answers 429 at once (no queue) beyond 15 concurrent non-GET requests or 1500 requests a minute per user
(../shared/reference/docspace-api.md, section 7); HubSpot allows 100 requests in any 10 seconds per account and
Pipedrive a burst per 2 seconds (../shared/reference/crm-apis.md). Waiting here is cheaper than being refused
there; and when a 429 does come, every thread pauses for its wait instead of each finding out on its own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

WINDOW_SECONDS = 60.0


class Limiter:
    """Caps concurrent writes and requests per sliding window (a minute unless told); honours 429s' pauses."""

    def __init__(self, max_concurrent_writes: int, rate_per_minute: int,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 window_seconds: float = WINDOW_SECONDS) -> None:
        """A limiter letting rate_per_minute requests start in any window_seconds."""
        self.max_concurrent_writes = max_concurrent_writes
        self.rate_per_minute = rate_per_minute
        self.window_seconds = window_seconds
        self._writes = threading.BoundedSemaphore(max_concurrent_writes)
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self.in_flight_writes = 0
        self.peak_writes = 0

    @contextmanager
    def slot(self, write: bool) -> Iterator[None]:
        """Wait for a turn under the rate (and, for a write, the concurrency cap), then hold it."""
        self._wait_for_rate()
        if not write:
            yield
            return
        with self._writes:
            with self._lock:
                self.in_flight_writes += 1
                self.peak_writes = max(self.peak_writes, self.in_flight_writes)
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight_writes -= 1

    def pause(self, seconds: float) -> None:
        """Hold every new request for the next seconds (DocSpace said Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait_for_rate(self) -> None:
        """Block until a request may start without exceeding the rate or a pause."""
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window_seconds:
                    self._sent.popleft()
                if self._paused_until > now:
                    wait = self._paused_until - now
                elif len(self._sent) < self.rate_per_minute:
                    self._sent.append(now)
                    return
                else:
                    wait = self._sent[0] + self.window_seconds - now
            self._sleep(wait)

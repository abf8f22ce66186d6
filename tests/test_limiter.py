"""The limiter: never more concurrent writes than allowed, never more requests per minute, pauses honoured."""

from __future__ import annotations

import threading
import time

from onboarding.limiter import Limiter


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        """The current time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Move time forward."""
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_is_a_sliding_minute():
    clock = FakeClock()
    limiter = Limiter(15, 3, clock=clock.time, sleep=clock.sleep)
    for _ in range(3):
        with limiter.slot(write=False):
            clock.now += 1
    assert clock.slept == []
    with limiter.slot(write=False):
        pass
    assert clock.now == 60.0


def test_a_pause_holds_every_request():
    clock = FakeClock()
    limiter = Limiter(15, 100, clock=clock.time, sleep=clock.sleep)
    limiter.pause(7)
    with limiter.slot(write=True):
        pass
    assert clock.now == 7.0


def test_concurrent_writes_never_exceed_the_cap():
    limiter = Limiter(3, 10_000)
    inside = []
    lock = threading.Lock()
    current = [0]

    def write():
        with limiter.slot(write=True):
            with lock:
                current[0] += 1
                inside.append(current[0])
            time.sleep(0.02)
            with lock:
                current[0] -= 1

    threads = [threading.Thread(target=write) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(inside) == 3
    assert limiter.peak_writes == 3

"""Random bytes for ids, drawn from the operating system a page at a time.

Every accepted delivery needs 36 random bytes (its event's and its onboarding's ids, and the request's id). One
os.urandom call each is a system call that lets go of the GIL, which a busy process pays for in thread switches;
one call per 4 KiB pays for a hundred requests. The bytes are the operating system's, so ids stay as unpredictable
as before; a forked process (gunicorn's workers) forgets what it inherited, so no two processes hand out the
same bytes. Nothing secret is drawn from here: keys and tokens come from the secrets module.
"""

from __future__ import annotations

import os
import threading

PAGE = 4096


class _Pool:
    """A page of os.urandom bytes, handed out in order, each byte once."""

    def __init__(self) -> None:
        """An empty pool (filled on first use)."""
        self._lock = threading.Lock()
        self._page = b""
        self._used = 0

    def take(self, count: int) -> bytes:
        """count random bytes (count <= PAGE)."""
        with self._lock:
            start = self._used
            if start + count > len(self._page):
                self._page, start = os.urandom(PAGE), 0
            self._used = start + count
            return self._page[start:start + count]

    def forget(self) -> None:
        """Drop the page (in a new child process: the parent and its other children hold the same bytes)."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._page, self._used = b"", 0


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.forget)


def random_bytes(count: int) -> bytes:
    """count bytes from the operating system's random source, without a system call each time."""
    return _pool.take(count)

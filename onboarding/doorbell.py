"""The doorbell: an idle worker wakes the moment new deals are committed, not at its next poll.

Workers still poll (WORKER_POLL_SECONDS): a ring that nobody hears costs only the wait until that poll, so the
bell is never needed for correctness. The group commit rings it for every batch of new deals:

- on PostgreSQL with NOTIFY, sent inside the batch's transaction, so the workers of every machine hear it when,
  and only if, the batch commits;
- on SQLite, where web and workers share one machine, with a byte written, after the commit, to a named pipe
  beside the database file that idle workers read. A byte wakes one reader: the others find the work at their
  next poll.

Other ways an onboarding becomes due (an operator's retry, a replay, a retry's backoff ending) wait for the poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import threading
from collections.abc import Callable

import psycopg

from onboarding.db import Database

CHANNEL = "onboarding_ready"
NOTIFY = f"NOTIFY {CHANNEL}"
LISTEN_SECONDS = 1.0  # how often a listener looks at its stop flag
RECONNECT_SECONDS = 5.0
log = logging.getLogger(__name__)


def pipe_path(db: Database) -> str | None:
    """The named pipe of a SQLite database file (None for PostgreSQL or an in-memory database)."""
    if not db.is_sqlite or not db.url.database or db.url.database == ":memory:":
        return None
    return f"{db.url.database}.doorbell"


def ring_pipe(path: str) -> None:
    """Write one byte to the pipe if a worker is reading it; never blocks, never raises."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no pipe yet (no worker has started), or nobody reading it (ENXIO)
        return
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, b"\0")
    except OSError:  # the pipe is full: its readers have rings they have not read yet
        pass
    finally:
        os.close(fd)


def listen(db: Database, wake: Callable[[], None], stopping: threading.Event) -> None:
    """Call wake whenever the bell rings, until stopping is set; run it in a thread of its own."""
    path = pipe_path(db)
    try:
        if path is not None:
            _listen_to_pipe(path, wake, stopping)
        elif not db.is_sqlite:
            _listen_to_notifications(db, wake, stopping)
    except OSError as error:
        log.warning("the doorbell cannot listen (%s); workers rely on polling", error)


def _listen_to_pipe(path: str, wake: Callable[[], None], stopping: threading.Event) -> None:
    """Read the SQLite database's pipe, making it if it is not there yet."""
    with contextlib.suppress(FileExistsError):
        os.mkfifo(path, 0o600)
    # Opened for reading and writing: the pipe then never reads as closed while web processes come and go.
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            log.warning("the doorbell %s is not a named pipe; workers rely on polling", path)
            return
        while not stopping.is_set():
            readable, _, _ = select.select([fd], [], [], LISTEN_SECONDS)
            if readable:
                try:
                    os.read(fd, 4096)
                except BlockingIOError:  # another worker read the ring first
                    continue
                wake()
    finally:
        os.close(fd)


def _listen_to_notifications(db: Database, wake: Callable[[], None], stopping: threading.Event) -> None:
    """LISTEN on a PostgreSQL connection of its own, connecting again whenever it is lost."""
    conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while not stopping.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True) as connection:
                connection.execute(f"LISTEN {CHANNEL}")
                while not stopping.is_set():
                    for _ in connection.notifies(timeout=LISTEN_SECONDS, stop_after=1):
                        wake()
        except psycopg.Error as error:
            log.warning("the doorbell cannot listen (%s); workers rely on polling until it reconnects",
                        type(error).__name__)
            stopping.wait(RECONNECT_SECONDS)

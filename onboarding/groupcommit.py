"""Group commit: the small writes of concurrent requests of one process share one transaction and one fsync.

A durable commit costs an fsync and, on SQLite, the database-wide write lock. When many requests each commit on
their own, they queue for that lock one by one; here a single writer thread takes every write waiting at that
moment, runs each in its own SAVEPOINT (so one duplicate does not undo its neighbours), commits once, and only
then lets the requests answer. Each request still learns whether its own rows went in.
"""

from __future__ import annotations

import queue
import threading
import weakref
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from onboarding.db import Database

MAX_BATCH = 256


@dataclass
class _Job:
    """The statements of one request, and how they fared."""

    statements: list[tuple]
    done: threading.Event = field(default_factory=threading.Event)
    inserted: bool = False
    error: BaseException | None = None


class GroupCommit:
    """One writer thread per database per process, started on first use (after gunicorn's fork)."""

    def __init__(self, db: Database) -> None:
        """A group committer for db."""
        self.db = db
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def write(self, statements: list[tuple]) -> bool:
        """Run (statement, params) pairs atomically in the next group; False if they broke a unique constraint."""
        job = _Job(statements)
        self._ensure_thread()
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.inserted

    def _ensure_thread(self) -> None:
        """Start the writer thread once."""
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        """Commit whatever is waiting, forever."""
        while True:
            batch = [self._jobs.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        """One transaction for the batch, a savepoint per job; every job is released, whatever happens."""
        try:
            with self.db.writing() as connection:
                for job in batch:
                    try:
                        with connection.begin_nested():
                            for statement, params in job.statements:
                                connection.execute(statement, params)
                        job.inserted = True
                    except IntegrityError:
                        job.inserted = False
                    except Exception as error:  # this job's own data is at fault: only it fails
                        job.error = error
        except Exception as error:  # the commit itself failed: nobody's rows are in
            for job in batch:
                job.error, job.inserted = error, False
        finally:
            for job in batch:
                job.done.set()


_committers: weakref.WeakKeyDictionary[Database, GroupCommit] = weakref.WeakKeyDictionary()
_committers_lock = threading.Lock()


def group_commit(db: Database) -> GroupCommit:
    """The group committer of a database in this process."""
    with _committers_lock:
        committer = _committers.get(db)
        if committer is None:
            committer = _committers[db] = GroupCommit(db)
        return committer

"""The worker registry: who is alive (host, pid, heartbeat, onboardings running), and taking over from the dead.

A worker killed without warning leaves its onboardings claimed until their leases expire (LEASE_SECONDS, kept
short and renewed by the heartbeat). A new worker starting on the same host does not wait: it finds the
predecessors whose process is gone, queues their onboardings again at once and gives back their slots of the
fleet's limits. Claim tokens still fence every write, so an onboarding never runs twice at once: a process that
is gone writes nothing more.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from sqlalchemy import delete, select, update

from onboarding.db import Database
from onboarding.models import Onboarding, WorkerEntry, utcnow

log = logging.getLogger("onboarding.workers")

# A worker whose heartbeat is older than this many leases is not listed as live.
LIVE_FOR_LEASES = 3


def process_name() -> str:
    """This process's name in the registry and in onboardings' claimed_by: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def _alive(pid: int) -> bool:
    """Whether a process of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Registry:
    """The workers table."""

    def __init__(self, db: Database, lease_seconds: float) -> None:
        """A registry in db; a worker is live while its heartbeat is younger than a few leases."""
        self.db = db
        self.lease_seconds = lease_seconds

    def register(self, name: str) -> list[str]:
        """Enter this worker, first taking over from the dead workers of this host; return their names."""
        host, pid, now = socket.gethostname()[:100], os.getpid(), utcnow()
        with self.db.writing() as connection:
            neighbours = connection.execute(select(WorkerEntry.name, WorkerEntry.pid)
                                            .where(WorkerEntry.host == host)).all()
            # A process that is gone, or one whose pid this process now has (a restarted container).
            dead = [other for other, other_pid in neighbours if other_pid == pid or not _alive(other_pid)]
            released = 0
            if dead:
                released = connection.execute(
                    update(Onboarding).where(Onboarding.claimed_by.in_(dead), Onboarding.status == "running")
                    .values(status="queued", claim_token=None, lease_expires_at=None, run_at=now,
                            updated_at=now)).rowcount
                connection.execute(delete(WorkerEntry).where(WorkerEntry.name.in_(dead)))
            connection.execute(WorkerEntry.__table__.insert().values(
                name=name, host=host, pid=pid, started_at=now, heartbeat_at=now, running=0))
        if dead:
            log.warning("took over from %d dead worker(s) of this host: %d onboarding(s) queued again",
                        len(dead), released, extra={"count": released})
        return dead

    def heartbeat(self, name: str, running: int) -> None:
        """Note that this worker is alive and how many onboardings it runs."""
        with self.db.writing() as connection:
            connection.execute(update(WorkerEntry).where(WorkerEntry.name == name)
                               .values(heartbeat_at=utcnow(), running=running))

    def deregister(self, name: str) -> None:
        """Leave the registry (a clean stop)."""
        with self.db.writing() as connection:
            connection.execute(delete(WorkerEntry).where(WorkerEntry.name == name))

    def live(self) -> list[dict]:
        """The live workers, oldest first."""
        since = utcnow() - timedelta(seconds=LIVE_FOR_LEASES * self.lease_seconds)
        with self.db.reading() as session:
            rows = session.scalars(select(WorkerEntry).where(WorkerEntry.heartbeat_at >= since)
                                   .order_by(WorkerEntry.started_at)).all()
            return [{"name": row.name, "host": row.host, "pid": row.pid,
                     "started_at": row.started_at.isoformat(timespec="seconds") + "Z",
                     "last_heartbeat_at": row.heartbeat_at.isoformat(timespec="seconds") + "Z",
                     "onboardings_running": row.running} for row in rows]

    def live_count(self) -> int:
        """How many workers are live (at least 1: the one asking); 1 when the database cannot say."""
        try:
            return max(1, len(self.live()))
        except Exception:
            return 1

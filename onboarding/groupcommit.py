"""Group commit: the new deals of concurrent requests in one process share one transaction and one fsync.

A durable commit costs an fsync and, on SQLite, the database-wide write lock; when every request commits on its
own, requests queue for that lock one by one and each pays for its own fsync. Here the new deals waiting at one
moment in a process are inserted in one transaction and committed once, and only then do their requests answer:
nothing is acknowledged before it is on disk.

The inserts go straight to the database driver, a whole batch per statement (SQLAlchemy's per-statement work
would cost more than the rows themselves), with ON CONFLICT DO NOTHING, so a repeated deal or delivery id in
the batch skips only its own rows. Whoever gets False back, or whose batch failed as a whole (a lost connection,
a deadlock between instances), takes the careful path in intake.py, which finds the original or reports the
error for that request alone. Each batch that inserts new deals rings the workers' doorbell (doorbell.py).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Table

from onboarding import doorbell
from onboarding.db import Database
from onboarding.domain import DEAL_COLUMNS
from onboarding.models import Event, Onboarding

MAX_BATCH = 128
# The columns a new deal fills; the rest keep their defaults (NULL). A row missing one of them is a bug: KeyError.
ONBOARDING_COLUMNS = ("id", *DEAL_COLUMNS, "status", "attempts", "run_at", "created_at", "updated_at")
EVENT_COLUMNS = ("id", "source", "delivery_id", "received_at", "last_received_at", "deliveries", "headers", "body",
                 "outcome", "event_type", "deal_id", "onboarding_id")
log = logging.getLogger(__name__)


class _Rows:
    """Multi-row SQL on some columns of a table, written for the database's driver, with SQLAlchemy's conversions.

    A whole batch goes in one statement: besides saving work, every driver call lets go of the GIL and must win
    it back, and in a busy process each of those waits would be spent holding the database's write lock.
    """

    def __init__(self, table: Table, columns: tuple[str, ...], dialect) -> None:
        """Statements on these columns of table, for dialect's driver."""
        quote = dialect.identifier_preparer.quote
        self.columns = columns
        self.table = quote(table.name)
        self.marker = "?" if dialect.paramstyle == "qmark" else "%s"
        self.column_list = ", ".join(quote(column) for column in columns)
        self.row = "(" + ", ".join([self.marker] * len(columns)) + ")"
        self.converters: list[tuple[int, Callable]] = [
            (index, converter) for index, column in enumerate(columns)
            if (converter := table.c[column].type.dialect_impl(dialect).bind_processor(dialect)) is not None]

    def insert_or_skip(self, count: int) -> str:
        """INSERT count rows, skipping each one a unique constraint already holds."""
        rows = ", ".join([self.row] * count)
        return f"INSERT INTO {self.table} ({self.column_list}) VALUES {rows} ON CONFLICT DO NOTHING"

    def where_id_in(self, action: str, count: int) -> str:
        """SELECT id or DELETE the rows whose id is one of count values."""
        return f"{action} FROM {self.table} WHERE id IN ({', '.join([self.marker] * count)})"

    def parameters(self, values: dict) -> list:
        """The driver's parameters for one row of values (a statement on several rows takes them one after
        another)."""
        row = [values[column] for column in self.columns]
        for index, converter in self.converters:
            row[index] = converter(row[index])
        return row


@dataclass(eq=False)  # each request's deal is itself: compared by identity
class _NewDeal:
    """The rows of one request and what became of them."""

    onboarding: dict
    event: dict
    # Their rows as the driver takes them, made by the request itself before it joins the queue.
    onboarding_parameters: list
    event_parameters: list
    # Held from the start; released when the deal's batch is committed, or when this request is to lead the next.
    turn: threading.Lock = field(default_factory=threading.Lock)
    leads: bool = False
    inserted: bool = False


class GroupCommit:
    """Group commit for one database in one process, led by the requests themselves (no thread of its own).

    The first request to arrive while nothing is being committed leads: it commits everything waiting, itself
    included, in one transaction. Requests arriving meanwhile wait; when the commit ends, they are released
    with their outcome and the first of those still waiting is woken to lead the next batch.
    """

    def __init__(self, db: Database, max_batch: int = MAX_BATCH) -> None:
        """A group committer for db."""
        self.db = db
        self.max_batch = max_batch
        dialect = db.engine.dialect
        self._onboardings = _Rows(Onboarding.__table__, ONBOARDING_COLUMNS, dialect)
        self._events = _Rows(Event.__table__, EVENT_COLUMNS, dialect)
        self._lock = threading.Lock()
        self._waiting: list[_NewDeal] = []
        self._committing = False
        self._connection = None
        self._pipe = doorbell.pipe_path(db)
        db.on_dispose(self.close)

    def insert(self, onboarding: dict, event: dict) -> bool:
        """Durably insert a new onboarding and the event that asked for it; False if either was already there."""
        deal = _NewDeal(onboarding, event, self._onboardings.parameters(onboarding), self._events.parameters(event))
        deal.turn.acquire()
        with self._lock:
            self._waiting.append(deal)
            deal.leads = not self._committing
            self._committing = True
        if not deal.leads:
            deal.turn.acquire()  # until a leader has committed this deal, or made this request the next leader
            if not deal.leads:
                return deal.inserted
        self._lead(deal)
        return deal.inserted

    def _lead(self, leader: _NewDeal) -> None:
        """Commit the waiting deals (the leader's among them), then hand over to whoever waits next."""
        batch: list[_NewDeal] = []
        try:
            batch = self._commit_waiting()
        finally:
            with self._lock:
                if not batch:  # interrupted before it took its batch: each takes the careful path
                    batch = self._take()
                successor = self._waiting[0] if self._waiting else None
                self._committing = successor is not None
            for deal in batch:
                if deal is not leader:
                    deal.turn.release()
            if successor is not None:
                successor.leads = True
                successor.turn.release()

    def _take(self) -> list[_NewDeal]:
        """The deals waiting now (up to max_batch), taken off the queue; the caller holds self._lock."""
        batch = self._waiting[:self.max_batch]
        del self._waiting[:self.max_batch]
        return batch

    def _commit_waiting(self) -> list[_NewDeal]:
        """Once the database is ours to write, take the waiting deals and insert them in one transaction; return
        them. On any failure nobody's rows are in and all take the careful path.

        The batch is taken after the writer's turn comes (on SQLite, another process may hold it for a while):
        every deal that arrived meanwhile shares this commit instead of waiting for the next one.
        """
        batch: list[_NewDeal] = []
        try:
            with self.db.writer_turn():
                with self._lock:
                    batch = self._take()
                # The same order in every process, so two instances inserting the same deals never wait on each
                # other in a cycle.
                batch.sort(key=lambda deal: deal.onboarding["deal_id"])
                connection = self._connect()
                cursor = connection.cursor()
                if self.db.is_sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                cursor.execute(self._onboardings.insert_or_skip(len(batch)),
                               [value for deal in batch for value in deal.onboarding_parameters])
                inserted = batch
                if cursor.rowcount != len(inserted):  # some deals are known: the careful path answers for them
                    inserted = self._present(cursor, self._onboardings, inserted, "onboarding")
                if inserted:
                    cursor.execute(self._events.insert_or_skip(len(inserted)),
                                   [value for deal in inserted for value in deal.event_parameters])
                    if cursor.rowcount != len(inserted):  # a known delivery id (reused for another deal's body)
                        recorded = self._present(cursor, self._events, inserted, "event")
                        orphans = [deal.onboarding["id"] for deal in inserted if deal not in recorded]
                        cursor.execute(self._onboardings.where_id_in("DELETE", len(orphans)), orphans)
                        inserted = recorded
                if inserted and not self.db.is_sqlite:
                    cursor.execute(doorbell.NOTIFY)  # heard by the workers when (and if) this commits
                connection.commit()
        except Exception:
            if not batch:  # the writer's turn itself failed
                with self._lock:
                    batch = self._take()
            log.warning("a group commit of %d new deals failed; each is retried on its own", len(batch),
                        exc_info=True)
            self._disconnect()
            return batch
        for deal in inserted:
            deal.inserted = True
        if inserted and self._pipe is not None:
            doorbell.ring_pipe(self._pipe)
        return batch

    @staticmethod
    def _present(cursor, rows: _Rows, deals: list[_NewDeal], part: str) -> list[_NewDeal]:
        """The deals whose row (their "onboarding" or "event") this transaction inserted."""
        ids = [getattr(deal, part)["id"] for deal in deals]
        cursor.execute(rows.where_id_in("SELECT id", len(ids)), ids)
        present = {row[0] for row in cursor.fetchall()}
        return [deal for deal in deals if getattr(deal, part)["id"] in present]

    def _connect(self):
        """The group's driver connection (one leader at a time uses it), from the engine's pool and its settings."""
        if self._connection is None:
            self._connection = self.db.engine.raw_connection()
        return self._connection

    def close(self) -> None:
        """Give the connection back (when the database is disposed); the next batch, if any, opens another."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _disconnect(self) -> None:
        """Drop the connection after a failure: whatever state it is in, the next batch starts afresh."""
        if self._connection is not None:
            try:
                self._connection.invalidate()
            finally:
                self._connection = None


_group_commits: weakref.WeakKeyDictionary[Database, GroupCommit] = weakref.WeakKeyDictionary()
_group_commits_lock = threading.Lock()


def group_commit(db: Database) -> GroupCommit:
    """The group committer of a database in this process."""
    with _group_commits_lock:
        committer = _group_commits.get(db)
        if committer is None:
            committer = _group_commits[db] = GroupCommit(db)
        return committer

"""Group commit: the new deals of concurrent requests in one process share one transaction and one fsync.

A durable commit costs an fsync and, on SQLite, the database-wide write lock; when every request commits on its
own, requests queue for that lock one by one and each pays for its own fsync. Here the new deals waiting at one
moment in a process are inserted in one transaction and committed once, and only then do their requests answer:
nothing is acknowledged before it is on disk.

The inserts go straight to the database driver with statements compiled once (SQLAlchemy's per-statement work
would cost more than the rows themselves) and with ON CONFLICT DO NOTHING, so a repeated deal or delivery id in
the batch skips only its own rows. Whoever gets False back, or whose batch failed as a whole (a lost connection,
a deadlock between instances), takes the careful path in intake.py, which finds the original or reports the
error for that request alone.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite

from onboarding.db import Database
from onboarding.models import Event, Onboarding

MAX_BATCH = 128
# The columns a new deal fills; the rest keep their defaults (NULL). A row missing one of them is a bug: KeyError.
ONBOARDING_COLUMNS = ("id", "source", "deal_id", "deal_title", "client_id", "client_name", "client_email",
                      "client_user_id", "manager_user_id", "status", "attempts", "run_at", "created_at", "updated_at")
EVENT_COLUMNS = ("id", "source", "delivery_id", "received_at", "last_received_at", "deliveries", "headers", "body",
                 "outcome", "event_type", "deal_id", "onboarding_id")
log = logging.getLogger(__name__)


class _Statement:
    """One SQL statement compiled for the database's driver, with SQLAlchemy's conversion of each value."""

    def __init__(self, statement, dialect, columns: tuple[str, ...] | None = None) -> None:
        """Compile statement once (for these columns, if an INSERT); remember its parameters' order and types."""
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        self.sql = compiled.string
        self.names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        self.positional = compiled.positional
        converters = {}
        for name in self.names:
            converter = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if converter is not None:
                converters[name] = converter
        self.converters: dict[str, Callable] = converters

    def parameters(self, values: dict) -> tuple | dict:
        """The driver's parameters for one row of values."""
        converted = {name: values[name] for name in self.names}
        for name, converter in self.converters.items():
            converted[name] = converter(converted[name])
        return tuple(converted[name] for name in self.names) if self.positional else converted


def _insert_or_skip(table: Table, columns: tuple[str, ...], dialect) -> _Statement:
    """INSERT these columns into table, doing nothing when a unique constraint already holds the row."""
    module = sqlite if dialect.name == "sqlite" else postgresql
    return _Statement(module.insert(table).on_conflict_do_nothing(), dialect, columns)


@dataclass
class _NewDeal:
    """The rows of one request and what became of them."""

    onboarding: dict
    event: dict
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
        self._insert_onboarding = _insert_or_skip(Onboarding.__table__, ONBOARDING_COLUMNS, dialect)
        self._insert_event = _insert_or_skip(Event.__table__, EVENT_COLUMNS, dialect)
        self._undo_onboarding = _Statement(delete(Onboarding.__table__)
                                           .where(Onboarding.__table__.c.id == bindparam("id")), dialect)
        self._lock = threading.Lock()
        self._waiting: list[_NewDeal] = []
        self._committing = False
        self._connection = None

    def insert(self, onboarding: dict, event: dict) -> bool:
        """Durably insert a new onboarding and the event that asked for it; False if either was already there."""
        deal = _NewDeal(onboarding, event)
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
        with self._lock:
            batch = self._waiting[:self.max_batch]
            del self._waiting[:self.max_batch]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                successor = self._waiting[0] if self._waiting else None
                self._committing = successor is not None
            for deal in batch:
                if deal is not leader:
                    deal.turn.release()
            if successor is not None:
                successor.leads = True
                successor.turn.release()

    def _commit(self, batch: list[_NewDeal]) -> None:
        """Insert the batch in one transaction; on any failure nobody's rows are in and all take the careful path."""
        # The same order in every process, so two instances inserting the same deals never wait on each other
        # in a cycle.
        ordered = sorted(batch, key=lambda deal: deal.onboarding["deal_id"])
        try:
            with self.db.writer_turn():
                connection = self._connect()
                cursor = connection.cursor()
                if self.db.is_sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                for deal in ordered:
                    cursor.execute(self._insert_onboarding.sql, self._insert_onboarding.parameters(deal.onboarding))
                    if cursor.rowcount != 1:
                        continue  # the deal is known: the careful path answers with its onboarding
                    cursor.execute(self._insert_event.sql, self._insert_event.parameters(deal.event))
                    if cursor.rowcount != 1:  # the delivery id is known (another deal's body under a reused id)
                        cursor.execute(self._undo_onboarding.sql,
                                       self._undo_onboarding.parameters({"id": deal.onboarding["id"]}))
                        continue
                    deal.inserted = True
                connection.commit()
        except Exception:
            log.warning("a group commit of %d new deals failed; each is retried on its own", len(batch),
                        exc_info=True)
            for deal in batch:
                deal.inserted = False
            self._disconnect()

    def _connect(self):
        """The group's driver connection (one leader at a time uses it), from the engine's pool and its settings."""
        if self._connection is None:
            self._connection = self.db.engine.raw_connection()
        return self._connection

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

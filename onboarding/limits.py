"""Limits that hold for the whole fleet: every worker process on every machine that shares a database and an API key
keeps, together, to the limits the API gives that key.

DocSpace refuses a 16th concurrent write and the 1,501st request of a minute per API key; HubSpot allows 100
requests in 10 seconds per account, Pipedrive a burst per 2 seconds per token. Each worker enforcing them on its own
lets three workers send three times that. Here the state is shared: a log of the calls of the current window, the
writes in flight (each with a lease, so a dead worker's slots come back by themselves) and a pause until which no
worker may call (set by a 429's wait). A call starts only in a transaction that finds room for it under all three.

Where it lives: on PostgreSQL, unlogged tables in a schema of their own (onboarding_limits) of the service's
database: nothing about them needs to survive a crash, so they cost no WAL flush. On SQLite (one machine), a side
file beside the database (<database>.limits) with synchronous off, so the limiter's many tiny transactions neither
wait for the disk nor take the main database's write lock. Both are made on first use.

pyrate-limiter's SQLite and PostgreSQL buckets were considered: they share a rate, but not the concurrency slots
with leases or the fleet-wide pause, which the three limits need in one atomic step. If the shared state cannot be
reached, a worker falls back to its own share of the limits (the limits divided by the live workers) rather than
stopping.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import create_engine, event

from onboarding.db import Database, use_wal
from onboarding.limiter import Limiter

log = logging.getLogger("onboarding.limits")

SCHEMA = "onboarding_limits"
# How long a write slot is held at most without being released (a worker killed mid-call): the call's own timeout
# plus this.
SLOT_GRACE_SECONDS = 5.0
# Waiting for a write slot: poll again after a random pause in this range (seconds). One thread of a process polls
# at a time (the others queue behind it in the process), so a fleet polls a few times per pause, not once per
# waiting thread.
SLOT_POLL = (0.005, 0.02)
RETRY_STORE_AFTER_SECONDS = 5.0
SIDE_FILE_TIMEOUT_SECONDS = 30.0
LOCK_ID = 4_242_001
# Connections of one process to the shared state: its transactions are a few statements long, so a few suffice,
# and a fleet of workers must stay well inside the database's max_connections (100 by default on PostgreSQL).
POOL_SIZE, POOL_OVERFLOW = 3, 2  # the advisory lock taken while the tables are made

# Calls are counted per bucket of a sixtieth of the window (a second of DocSpace's minute): a call is admitted only
# while the buckets that overlap the window hold fewer than the rate, so the sliding window's limit is never passed,
# and counting reads at most 61 small rows instead of every call of the window.
BUCKETS_PER_WINDOW = 60
SLOT_BUSY = -1.0  # what try_acquire answers when the write slots are all taken

_TABLES = (
    "CREATE TABLE IF NOT EXISTS {p}limit_keys (key VARCHAR(80) PRIMARY KEY, paused_until {real} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}limit_buckets (key VARCHAR(80) NOT NULL, slot BIGINT NOT NULL, "
    "calls INTEGER NOT NULL, PRIMARY KEY (key, slot))",
    "CREATE TABLE IF NOT EXISTS {p}limit_writes (call_id VARCHAR(32) PRIMARY KEY, key VARCHAR(80) NOT NULL, "
    "holder VARCHAR(100) NOT NULL, expires_at {real} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS limit_writes_key ON {p}limit_writes (key)",
)
# On PostgreSQL the decision is one function call: one round trip, the key's row locked only while it runs.
_PG_TRY_ACQUIRE = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.try_acquire(p_key text, p_call text, p_holder text, p_write boolean,
    p_max integer, p_rate integer, p_window double precision, p_width double precision,
    p_lease double precision, p_now double precision) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    paused double precision;
    total bigint;
    oldest bigint;
    writes integer;
BEGIN
    SELECT paused_until INTO paused FROM {SCHEMA}.limit_keys WHERE key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO {SCHEMA}.limit_keys (key, paused_until) VALUES (p_key, 0) ON CONFLICT DO NOTHING;
        SELECT paused_until INTO paused FROM {SCHEMA}.limit_keys WHERE key = p_key FOR UPDATE;
    END IF;
    -- The caller's clock, moved on by however long this call waited for the key's row: the call starts now.
    p_now := p_now + extract(epoch FROM clock_timestamp() - statement_timestamp());
    IF paused > p_now THEN
        RETURN paused - p_now;
    END IF;
    DELETE FROM {SCHEMA}.limit_buckets WHERE key = p_key AND slot < floor((p_now - p_window) / p_width);
    SELECT coalesce(sum(calls), 0), min(slot) INTO total, oldest FROM {SCHEMA}.limit_buckets WHERE key = p_key;
    IF total >= p_rate THEN
        RETURN greatest(0.001, (oldest + 1) * p_width + p_window - p_now);
    END IF;
    IF p_write THEN
        DELETE FROM {SCHEMA}.limit_writes WHERE key = p_key AND expires_at < p_now;
        SELECT count(*) INTO writes FROM {SCHEMA}.limit_writes WHERE key = p_key;
        IF writes >= p_max THEN
            RETURN {SLOT_BUSY};
        END IF;
        INSERT INTO {SCHEMA}.limit_writes (call_id, key, holder, expires_at)
            VALUES (p_call, p_key, p_holder, p_now + p_lease);
    END IF;
    INSERT INTO {SCHEMA}.limit_buckets (key, slot, calls) VALUES (p_key, floor(p_now / p_width)::bigint, 1)
        ON CONFLICT (key, slot) DO UPDATE SET calls = {SCHEMA}.limit_buckets.calls + 1;
    RETURN 0;
END $$"""


@dataclass(frozen=True)
class LimitState:
    """One key's limits right now: what /metrics shows."""

    writes_in_flight: int
    calls_in_window: int
    paused_until: float


class LimitStore:
    """The shared state of every fleet limiter of one database, reached through raw driver connections."""

    def __init__(self, db: Database) -> None:
        """A store beside db: the same PostgreSQL database, or a side file next to the SQLite one."""
        self.is_sqlite = db.is_sqlite
        if self.is_sqlite:
            path = f"{db.url.database}.limits" if db.url.database not in (None, "", ":memory:") else ":memory:"
            self.engine = create_engine(f"sqlite:///{path}", pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                                        connect_args={"timeout": SIDE_FILE_TIMEOUT_SECONDS, "isolation_level": None,
                                                      "check_same_thread": False})
            event.listen(self.engine, "connect", _side_file_pragmas)
            prefix, real, self.marker = "", "REAL", "?"
        else:
            # Every statement is its own transaction: the decision is a function, the rest single statements.
            self.engine = create_engine(db.url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_pre_ping=True,
                                        isolation_level="AUTOCOMMIT")
            prefix, real, self.marker = f"{SCHEMA}.", "DOUBLE PRECISION", "%s"
        self.prefix = prefix
        self._tables = [statement.format(p=prefix, real=real) for statement in _TABLES]
        if not self.is_sqlite:
            self._tables = [f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"] + [
                statement.replace("CREATE TABLE", "CREATE UNLOGGED TABLE") for statement in self._tables
            ] + [_PG_TRY_ACQUIRE]
        self._ready = False
        self._ready_lock = threading.Lock()
        db.on_dispose(self.engine.dispose)

    def try_acquire(self, key: str, call_id: str, holder: str, write: bool, max_writes: int, rate: int,
                    window: float, lease: float) -> float:
        """Take a turn for one call if there is room: 0.0 when taken, SLOT_BUSY when every write slot is taken,
        else how long to wait before trying again."""
        width = window / BUCKETS_PER_WINDOW
        if not self.is_sqlite:
            with self._connection() as cursor:
                cursor.execute(f"SELECT {SCHEMA}.try_acquire(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                               (key, call_id, holder[:100], write, max_writes, rate, window, width, lease,
                                time.time()))
                return cursor.fetchone()[0]
        with self._sqlite_transaction(key) as (cursor, paused_until):
            # Read once the transaction is ours: a call admitted after waiting for another process's turn starts
            # now, not when it began to wait (its count would otherwise leave the window early).
            now = time.time()
            if paused_until > now:
                return paused_until - now
            cursor.execute("DELETE FROM limit_buckets WHERE key = ? AND slot < ?",
                           (key, math.floor((now - window) / width)))
            cursor.execute("SELECT coalesce(sum(calls), 0), min(slot) FROM limit_buckets WHERE key = ?", (key,))
            total, oldest = cursor.fetchone()
            if total >= rate:
                return max(0.001, (oldest + 1) * width + window - now)
            if write:
                cursor.execute("DELETE FROM limit_writes WHERE key = ? AND expires_at < ?", (key, now))
                cursor.execute("SELECT count(*) FROM limit_writes WHERE key = ?", (key,))
                if cursor.fetchone()[0] >= max_writes:
                    return SLOT_BUSY
                cursor.execute("INSERT INTO limit_writes (call_id, key, holder, expires_at) VALUES (?, ?, ?, ?)",
                               (call_id, key, holder[:100], now + lease))
            cursor.execute("INSERT INTO limit_buckets (key, slot, calls) VALUES (?, ?, 1) ON CONFLICT (key, slot) "
                           "DO UPDATE SET calls = calls + 1", (key, math.floor(now / width)))
            return 0.0

    def release(self, call_id: str) -> None:
        """Give a write slot back."""
        self._execute("DELETE FROM {p}limit_writes WHERE call_id = ?", (call_id,))

    def release_holder(self, holder: str) -> int:
        """Give back every write slot a (dead) worker holds; return how many."""
        return self._execute("DELETE FROM {p}limit_writes WHERE holder = ?", (holder[:100],))

    def pause(self, key: str, until: float) -> None:
        """No call with this key may start before until (epoch seconds), in any process."""
        latest = "max" if self.is_sqlite else "greatest"
        self._execute("INSERT INTO {p}limit_keys (key, paused_until) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                      f"paused_until = {latest}({{p}}limit_keys.paused_until, excluded.paused_until)", (key, until))

    def state(self, key: str, window: float) -> LimitState:
        """A key's writes in flight, calls in the current window and pause."""
        now, width = time.time(), window / BUCKETS_PER_WINDOW
        with self._connection() as cursor:
            cursor.execute(self._sql("SELECT count(*) FROM {p}limit_writes WHERE key = ? AND expires_at >= ?"),
                           (key, now))
            writes = cursor.fetchone()[0]
            cursor.execute(self._sql("SELECT coalesce(sum(calls), 0) FROM {p}limit_buckets WHERE key = ? "
                                     "AND slot >= ?"), (key, math.floor((now - window) / width)))
            calls = cursor.fetchone()[0]
            cursor.execute(self._sql("SELECT paused_until FROM {p}limit_keys WHERE key = ?"), (key,))
            row = cursor.fetchone()
        return LimitState(writes, calls, row[0] if row else 0.0)

    def _execute(self, statement: str, parameters: tuple) -> int:
        """One statement in a transaction of its own; the rows it touched."""
        with self._connection() as cursor:
            cursor.execute(self._sql(statement), parameters)
            return cursor.rowcount

    @contextmanager
    def _sqlite_transaction(self, key: str) -> Iterator[tuple]:
        """A writing transaction of the side file (one process at a time), with the key's pause."""
        with self._connection() as cursor:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute("SELECT paused_until FROM limit_keys WHERE key = ?", (key,))
            row = cursor.fetchone()
            # On an error the pool rolls the connection back when it is returned.
            yield cursor, row[0] if row else 0.0
            cursor.execute("COMMIT")

    @contextmanager
    def _connection(self) -> Iterator:
        """A pooled driver connection (autocommit) and a cursor, the tables made on first use."""
        self._ensure_tables()
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            connection.close()

    def _ensure_tables(self) -> None:
        """Create the schema, tables (and on PostgreSQL the function) once per process."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                # One process at a time: "IF NOT EXISTS" alone still races on PostgreSQL's catalogs.
                cursor.execute("BEGIN IMMEDIATE" if self.is_sqlite else f"SELECT pg_advisory_lock({LOCK_ID})")
                try:
                    for statement in self._tables:
                        cursor.execute(statement)
                finally:
                    cursor.execute("COMMIT" if self.is_sqlite else f"SELECT pg_advisory_unlock({LOCK_ID})")
            finally:
                connection.close()
            self._ready = True

    def _sql(self, statement: str) -> str:
        """A statement with the store's table prefix and the driver's placeholders."""
        return statement.format(p=self.prefix).replace("?", self.marker)


def _side_file_pragmas(dbapi_connection, _record) -> None:
    """The side file's settings: WAL for readers beside the writer, no fsync (the state may be lost)."""
    use_wal(dbapi_connection, SIDE_FILE_TIMEOUT_SECONDS)
    dbapi_connection.execute("PRAGMA synchronous=OFF").close()


def limit_key(service: str, *secrets_and_urls: str) -> str:
    """A store key for one API and credential: the service's name and a hash (the credential never stored)."""
    digest = hashlib.sha256("\0".join(secrets_and_urls).encode()).hexdigest()[:16]
    return f"{service}:{digest}"


class FleetLimiter:
    """Keeps every process of the fleet under one API key's limits together; a drop-in for limiter.Limiter."""

    def __init__(self, store: LimitStore, key: str, *, max_concurrent_writes: int, rate: int,
                 window_seconds: float, slot_lease_seconds: float, holder: Callable[[], str],
                 live_workers: Callable[[], int] = lambda: 1) -> None:
        """A limiter for key; holder names this process in the store, live_workers sizes the fallback share."""
        self.store = store
        self.key = key
        self.max_concurrent_writes = max_concurrent_writes
        self.rate = rate
        self.window_seconds = window_seconds
        self.slot_lease_seconds = slot_lease_seconds
        self.holder = holder
        self.live_workers = live_workers
        self._fallback: Limiter | None = None
        self._store_down_until = 0.0
        self._lock = threading.Lock()
        self._next_writer = threading.Lock()
        # Rung when this process gives a write slot back: its waiting writer asks again at once instead of at its
        # next poll (slots freed by other processes are found by polling).
        self._slot_freed = threading.Condition()

    @contextmanager
    def slot(self, write: bool) -> Iterator[None]:
        """Wait for the fleet's room for one call (a write also takes a concurrent-write slot), then hold it."""
        call_id = uuid.uuid4().hex
        if not self._take(call_id, write):
            with self._fallback_limiter().slot(write):
                yield
            return
        try:
            yield
        finally:
            if write:
                self._quietly(lambda: self.store.release(call_id))
                with self._slot_freed:
                    self._slot_freed.notify()

    def pause(self, seconds: float) -> None:
        """No process of the fleet calls this API for the next seconds."""
        if not self._quietly(lambda: self.store.pause(self.key, time.time() + seconds)):
            self._fallback_limiter().pause(seconds)

    def state(self) -> LimitState:
        """The key's state in the store."""
        return self.store.state(self.key, self.window_seconds)

    def _take(self, call_id: str, write: bool) -> bool:
        """Wait until the store admits the call; False when the store cannot be reached (use the fallback)."""
        if not write:
            return self._take_turn(call_id, write)
        with self._next_writer:
            return self._take_turn(call_id, write)

    def _take_turn(self, call_id: str, write: bool) -> bool:
        """_take's loop: ask the store until it admits the call."""
        while True:
            if time.monotonic() < self._store_down_until:
                return False
            try:
                wait = self.store.try_acquire(self.key, call_id, self.holder(), write, self.max_concurrent_writes,
                                              self.rate, self.window_seconds, self.slot_lease_seconds)
            except Exception as error:  # the database is away: our own share of the limits, for a while
                self._store_unreachable(error)
                return False
            if wait == 0:
                return True
            if wait == SLOT_BUSY:
                with self._slot_freed:
                    self._slot_freed.wait(random.uniform(*SLOT_POLL))
            else:
                time.sleep(wait)

    def _quietly(self, action: Callable[[], object]) -> bool:
        """Run a store action; False (logged once) when the store cannot be reached."""
        try:
            action()
            return True
        except Exception as error:
            self._store_unreachable(error)
            return False

    def _store_unreachable(self, error: Exception) -> None:
        """Note that the store is away: use the fallback for a while, and say so once."""
        with self._lock:
            if time.monotonic() >= self._store_down_until:
                log.warning("the fleet's limits cannot be reached (%s); using this worker's share for %s s",
                            type(error).__name__, RETRY_STORE_AFTER_SECONDS, extra={"reason": str(error)[:200]})
            self._store_down_until = time.monotonic() + RETRY_STORE_AFTER_SECONDS

    def _fallback_limiter(self) -> Limiter:
        """This worker's share of the limits: each divided by the live workers (at least 1 of each)."""
        with self._lock:
            if self._fallback is None:
                workers = max(1, self.live_workers())
                self._fallback = Limiter(max(1, self.max_concurrent_writes // workers), max(1, self.rate // workers),
                                         window_seconds=self.window_seconds)
            return self._fallback

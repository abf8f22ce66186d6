"""The database: one engine per process, short transactions, and the schema's migration state.

SQLite (the default, a file under var/) runs in WAL mode with a busy timeout, and every writing transaction
starts with BEGIN IMMEDIATE: a deferred transaction that later upgrades to a writer can fail with "database is
locked" however long the busy timeout is. PostgreSQL needs none of that.
"""

from __future__ import annotations

import fcntl
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Point postgres:// and postgresql:// URLs at psycopg 3, the driver this service ships with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Database:
    """The engine and the two kinds of session the service uses: writing and reading."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        """Create the engine; for SQLite also the file's folder and the connection pragmas."""
        self.url = make_url(normalize_url(url))
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._lock_file = None
        self._thread_lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
                self._lock_file = open(f"{self.url.database}.lock", "a")  # noqa: SIM115 - held for the process
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size,
                                        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size,
                                        pool_pre_ping=True)
        self._writer_engine = self.engine.execution_options(immediate=True)
        self._writing = sessionmaker(self._writer_engine, expire_on_commit=False)
        self._reading = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A writing unit of work: committed when the block ends, rolled back if it raises."""
        with self.writer_turn(), self._writing() as session, session.begin():
            yield session

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """Like transaction, for SQL without the ORM: a Connection in a writing transaction."""
        with self.writer_turn(), self._writer_engine.begin() as connection:
            yield connection

    @contextmanager
    def writer_turn(self) -> Iterator[None]:
        """On SQLite, queue writers of every process on a file lock before they ask SQLite for its lock.

        SQLite makes a blocked writer sleep and poll (1, 2, 5 ... 100 ms) until the lock is free, which turns a
        few concurrent writers into long tail latencies; a blocking flock wakes the next writer the moment the
        lock is released. flock is per open file, so threads of one process also take a thread lock.
        """
        if self._lock_file is None:
            yield
            return
        with self._thread_lock:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session that never holds the SQLite write lock."""
        with self._reading() as session:
            try:
                yield session
            finally:
                session.rollback()

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def schema_state(self) -> tuple[str | None, str]:
        """The schema's current revision and the newest one the code knows."""
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        return current, self.head_revision()

    @functools.cache  # noqa: B019 - one Database per process; the migrations do not change while it runs
    def head_revision(self) -> str:
        """The newest migration in migrations/."""
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def upgrade(self, revision: str = "head") -> None:
        """Apply the migrations up to revision."""
        self._migrate(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Revert the migrations down to revision ("base" = no schema)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, action, revision: str) -> None:
        """Run an Alembic command on this database's engine, one migrating process at a time."""
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                # Several instances may run `db upgrade` as they start: the second waits, then finds nothing to do.
                connection.execute(text("SELECT pg_advisory_xact_lock(7424001)"))
            config = self._alembic_config()
            config.attributes["connection"] = connection
            action(config, revision)

    def _alembic_config(self) -> Config:
        """An Alembic configuration built in code, so no alembic.ini has to be found."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%"))
        return config

    def on_dispose(self, close: Callable[[], None]) -> None:
        """Have dispose() call close first: for whoever holds a connection of its own (the group commit)."""
        self._closers.append(close)

    def dispose(self) -> None:
        """Close every connection, held or pooled, and the lock file."""
        for close in self._closers:
            close()
        self.engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _sqlite_connect(dbapi_connection, _record) -> None:
    """Per connection: WAL, a busy timeout, durable commits, foreign keys, and SQLAlchemy-managed BEGIN."""
    dbapi_connection.isolation_level = None
    use_wal(dbapi_connection, SQLITE_BUSY_TIMEOUT_MS / 1000)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def use_wal(dbapi_connection, timeout: float) -> None:
    """Put a SQLite file in WAL mode, waiting up to timeout (seconds) while other connections do the same.

    Connections that open a new file at the same moment race to convert it, and the losers are told "database is
    locked" at once: SQLite does not call the busy handler there. So the pragma is asked again, a little later each
    time, until the file is in WAL mode or the timeout has passed.
    """
    deadline, pause = time.monotonic() + timeout, 0.001
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _sqlite_begin(connection) -> None:
    """Start writing transactions as IMMEDIATE so they queue for the lock instead of failing later."""
    immediate = connection.get_execution_options().get("immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


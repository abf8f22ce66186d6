"""The database away: 503 with Retry-After on the webhooks, the admin API and the console; logged once per outage.

PostgreSQL "stops" and "starts" behind a TCP forwarder written here, so that one app sees its database go away and
come back without the real server being touched; SQLite's directory is moved away and back.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
import threading
import time

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from onboarding import unavailable
from onboarding.db import Database
from tests.conftest import ADMIN_TOKEN, BOTH_ACCEPT_PATHS, deal_payload, reset_postgres, signed
from tests.processes import free_port

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AWAY = {"error": "The database is unavailable, so deliveries cannot be recorded right now; retry later."}
GENERIC_500 = {"error": "Internal error; it has been logged."}


@pytest.fixture(params=BOTH_ACCEPT_PATHS)
def accept_path(request) -> str:
    """Every test here runs through the fast path and through Flask alone (see conftest.accept_path)."""
    return request.param


class Forwarder:
    """A TCP forwarder to PostgreSQL on a port of its own, which can be stopped (connections cut, the port closed)
    and started again on the same port: the database going away and coming back."""

    def __init__(self, target_port: int) -> None:
        """A stopped forwarder to 127.0.0.1:target_port."""
        self.port = free_port()
        self.target = ("127.0.0.1", target_port)
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and forward."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        listener.settimeout(0.05)
        self._stopped.clear()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the port and cut every forwarded connection."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            cut, self._sockets = self._sockets, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        """Accept connections until stopped, each piped both ways to the server."""
        with listener:
            while not self._stopped.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.target)
                with self._lock:
                    self._sockets += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        """Copy one direction until either side closes."""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture(autouse=True)
def no_known_outage():
    """Every test starts and ends without an outage known to the process."""
    unavailable._away = False
    yield
    unavailable._away = False


def wired(app):
    """The app with the 503 handlers (until create_app registers them itself)."""
    if DBAPIError not in app.error_handler_spec[None][None]:
        unavailable.init_app(app)
    return app


def deliver(client, deal_id: str | None = None):
    """POST a signed new deal to the generic webhook."""
    body, headers = signed(deal_payload(deal_id))
    return client.post("/webhooks/deal-won", data=body, headers=headers)


def assert_away(answer) -> None:
    """A 503 with Retry-After: 5 and the JSON error."""
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.headers["Retry-After"] == "5"
    assert answer.get_json() == AWAY


def outage_lines(caplog) -> list[tuple[int, str]]:
    """What the outage logger said: (level, message) each."""
    return [(record.levelno, record.getMessage()) for record in caplog.records
            if record.name == "onboarding.unavailable"]


def sign_in(client) -> None:
    """Give the test client a console session."""
    with client.session_transaction("/console") as session:
        session["operator"] = "tester"
        session["signed_in_at"] = time.time()


@pytest.fixture
def migrated_postgres(postgres_database) -> str:
    """The run's PostgreSQL database, empty and migrated."""
    reset_postgres(postgres_database)
    database = Database(postgres_database)
    database.upgrade()
    database.dispose()
    return postgres_database


def recorded(url: str) -> tuple[list[str], int]:
    """The deal ids of the onboardings and the number of events in a PostgreSQL database, read directly."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as connection:
        deals = sorted(row[0] for row in connection.execute("SELECT deal_id FROM onboardings"))
        events = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    return deals, events


@pytest.mark.parametrize(("error", "away"), [
    (psycopg.OperationalError("connection failed: Connection refused"), True),  # no SQLSTATE: client side
    (psycopg.errors.AdminShutdown(), True),
    (psycopg.errors.CannotConnectNow(), True),
    (psycopg.errors.TooManyConnections(), True),
    (psycopg.errors.DiskFull(), True),
    (psycopg.errors.DeadlockDetected(), False),
    (psycopg.errors.SerializationFailure(), False),
    (psycopg.errors.QueryCanceled(), False),
    (sqlite3.OperationalError("unable to open database file"), True),
    (sqlite3.OperationalError("disk I/O error"), True),
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("no such table: events"), False),
    (OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection unexpectedly")), True),
    (OperationalError("SELECT 1", {}, psycopg.errors.DeadlockDetected()), False),
    (IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()), False),
    (DBAPIError("SELECT 1", {}, psycopg.InterfaceError("the connection is closed"), connection_invalidated=True), True),
    (DBAPIError("SELECT 1", {}, psycopg.InterfaceError("cursor already closed")), False),
])
def test_away_is_decided_by_what_failed(error, away):
    assert unavailable.database_away(error) is away


def test_postgresql_where_nothing_listens_answers_503_and_records_nothing(make_app, migrated_postgres):
    nowhere = make_url(migrated_postgres).set(port=9).render_as_string(hide_password=False)
    app = wired(make_app(database_url=nowhere))
    client = app.test_client()
    for _ in range(3):
        assert_away(deliver(client))
    assert_away(client.get("/api/onboardings", headers=ADMIN))
    sign_in(client)
    assert_away(client.get("/console"))
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    assert recorded(migrated_postgres) == ([], 0)
    app.extensions["onboarding"].db.dispose()


@pytest.fixture
def forwarder(migrated_postgres):
    """A running forwarder to the PostgreSQL server of the run's database."""
    proxy = Forwarder(make_url(migrated_postgres).port or 5432)
    proxy.start()
    yield proxy
    proxy.stop()


def test_postgresql_stopped_gets_503_and_back_is_accepted_at_once(make_app, migrated_postgres, forwarder, caplog):
    caplog.set_level(logging.INFO, logger="onboarding.unavailable")
    through = make_url(migrated_postgres).set(port=forwarder.port).render_as_string(hide_password=False)
    app = wired(make_app(database_url=through))
    client = app.test_client()
    assert deliver(client, "D-before").status_code == 202

    forwarder.stop()
    for number in range(3):
        assert_away(deliver(client, f"D-during-{number}"))
    assert_away(client.get("/api/onboardings", headers=ADMIN))
    assert_away(client.post("/api/onboardings/retry", json={}, headers=ADMIN))

    forwarder.start()
    assert deliver(client, "D-during-0").status_code == 202
    assert client.get("/api/onboardings", headers=ADMIN).status_code == 200

    assert recorded(migrated_postgres) == (["D-before", "D-during-0"], 2)
    lines = outage_lines(caplog)
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert lines[0][1].startswith("database unavailable: ") and lines[1][1] == "database available again"
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) <= 1, "at most the first failed group commit's, not one per request"
    app.extensions["onboarding"].db.dispose()


def test_sqlite_out_of_reach_gets_503_and_back_is_accepted_at_once(make_app, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="onboarding.unavailable")
    folder = tmp_path / "data"
    url = f"sqlite:///{folder / 'onboarding.db'}"
    database = Database(url)
    database.upgrade()
    database.dispose()
    app = wired(make_app(database_url=url))
    client = app.test_client()

    folder.rename(tmp_path / "elsewhere")  # before the app's first connection, which would keep the file open
    for _ in range(2):
        assert_away(deliver(client))
    assert_away(client.get("/api/onboardings", headers=ADMIN))

    (tmp_path / "elsewhere").rename(folder)
    assert deliver(client, "D-after").status_code == 202
    listed = client.get("/api/onboardings", headers=ADMIN).get_json()["onboardings"]
    assert [item["deal"]["id"] for item in listed] == ["D-after"]
    assert [level for level, _ in outage_lines(caplog)] == [logging.WARNING, logging.INFO]
    app.extensions["onboarding"].db.dispose()


def test_only_an_unreachable_database_is_a_503(make_app):
    app = make_app()

    def raises(error: Exception):
        """A view that fails with error."""
        def view():
            raise error
        return view

    for path, error in {
        "/api/constraint": IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()),
        "/api/deadlock": OperationalError("UPDATE", {}, psycopg.errors.DeadlockDetected()),
        "/webhooks/raw-driver-error": sqlite3.OperationalError("unable to open database file"),
        "/webhooks/psycopg-error": psycopg.OperationalError("connection failed: Connection refused"),
        "/elsewhere": OperationalError("SELECT 1", {}, sqlite3.OperationalError("unable to open database file")),
    }.items():
        app.add_url_rule(path, path, raises(error))
    client = wired(app).test_client()

    for path in ("/api/constraint", "/api/deadlock", "/elsewhere"):
        answer = client.get(path)
        assert (answer.status_code, answer.get_json()) == (500, GENERIC_500), path
    assert_away(client.get("/webhooks/raw-driver-error"))
    assert_away(client.get("/webhooks/psycopg-error"))
    app.extensions["onboarding"].db.dispose()

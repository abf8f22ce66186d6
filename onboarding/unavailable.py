"""Honest answers while the database is away: 503 with Retry-After instead of a 500, and one log line per outage.

A delivery that cannot be recorded must not be acknowledged, and its sender should come back: every CRM retries a
503. So while the database cannot be reached, the webhooks, the admin API and the console answer 503 with
Retry-After and a JSON error, never a 2xx and never the generic 500. Other paths keep the app's own handling
(/readyz already answers 503 by itself).

"Away" is decided by what failed, not by the exception's class alone: a connection refused, lost or invalidated;
a PostgreSQL server that is shutting down, starting up, out of connections, disk or memory, or failing its I/O; an
SQLite file that cannot be opened, read or written, or whose lock another writer held past the busy timeout. A
statement the database refused (a constraint: IntegrityError), a deadlock, a serialization failure or a cancelled
query are not outages: they keep the app's generic handling (a 500 with its traceback logged).

The log says so once per outage: one WARNING "database unavailable: ..." at the first failure, and one INFO
"database available again" once a request to these paths succeeds afterwards and a ping confirms it. While an
outage is known, the group commit's warning about each failed batch (with its traceback) is held back too.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

import psycopg
from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

RETRY_AFTER_SECONDS = 5
MESSAGE = "The database is unavailable, so deliveries cannot be recorded right now; retry later."
PATHS = ("/webhooks/", "/api/", "/console")
# SQLSTATE classes of a server that cannot serve us: connection exception (08), insufficient resources (53: too
# many connections, disk full, out of memory) and system error (58: I/O); and the server shutting down or starting
# up (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now). Client-side failures (refused, lost)
# carry no SQLSTATE at all.
AWAY_SQLSTATE_CLASSES = ("08", "53", "58")
AWAY_SQLSTATES = ("57P01", "57P02", "57P03")
# SQLite's words for a file it cannot use right now. "database is locked" means a writer held the lock past the
# busy timeout (30 s): the delivery could not be recorded, and a retry a little later will be.
AWAY_SQLITE_MESSAGES = ("unable to open database", "disk i/o error", "database or disk is full", "database is locked")
# The classes handled here: SQLAlchemy's wrapper of every driver error, and the drivers' own errors, which reach a
# request unwrapped from raw driver connections.
HANDLED = (DBAPIError, psycopg.OperationalError, sqlite3.OperationalError)

log = logging.getLogger(__name__)
_lock = threading.Lock()
_away = False  # an outage is known (and was logged); cleared by the first request that succeeds afterwards


def database_away(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached or used right now, rather than that a statement failed."""
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:  # SQLAlchemy recognised a disconnect
            return True
        error = error.orig
    if isinstance(error, psycopg.OperationalError):
        state = error.sqlstate
        return state is None or state.startswith(AWAY_SQLSTATE_CLASSES) or state in AWAY_SQLSTATES
    if isinstance(error, sqlite3.OperationalError):
        return any(words in str(error).lower() for words in AWAY_SQLITE_MESSAGES)
    return False


def outage_known() -> bool:
    """Whether an outage is known and not yet seen to end (fastpath.py leaves such requests to the app)."""
    return _away


def answer_database_error(error: Exception):
    """503 with Retry-After when the database is away and the request needs it; otherwise what the app would do."""
    if not database_away(error):
        return _next_handler(error)
    _outage_began(error)
    if not request.path.startswith(PATHS):
        return _next_handler(error)
    response = jsonify(error=MESSAGE)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def note_recovery(response: Response) -> Response:
    """End a known outage at the first request to these paths that succeeds, once a ping confirms the database."""
    if _away and response.status_code < 300 and request.path.startswith(PATHS):
        try:
            current_app.extensions["onboarding"].db.ping()
        except SQLAlchemyError:
            return response  # still away: this request did not need the database
        _outage_ended()
    return response


def _outage_began(error: BaseException) -> None:
    """Log the outage, unless it is already known."""
    global _away
    with _lock:
        if _away:
            return
        _away = True
    log.warning("database unavailable: %s", describe(error))


def _outage_ended() -> None:
    """Log that the outage is over, unless another request already did."""
    global _away
    with _lock:
        if not _away:
            return
        _away = False
    log.info("database available again")


def describe(error: BaseException) -> str:
    """The driver's error in one short line (its type and first line; drivers never put the password there)."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else 'no message'}"[:300]


def _next_handler(error: Exception):
    """What the app answers without this module: the handler of the error's nearest class not handled here, looked
    up the way Flask does (the request's blueprints first, then the app)."""
    for scope in (*request.blueprints, None):
        handlers = current_app.error_handler_spec[scope][None]
        for kind in type(error).__mro__:
            handler = handlers.get(kind)
            if handler is not None and kind not in HANDLED:
                return current_app.ensure_sync(handler)(error)
    raise error


def _quiet_during_outage(record: logging.LogRecord) -> bool:
    """Keep the group commit's warning about a failed batch out of the log while the outage is already logged."""
    return not (_away and record.exc_info and database_away(record.exc_info[1]))


def init_app(app: Flask) -> None:
    """Answer 503 with Retry-After on the webhooks, the admin API and the console while the database is away."""
    for kind in HANDLED:
        app.register_error_handler(kind, answer_database_error)
    app.after_request(note_recovery)
    logging.getLogger("onboarding.groupcommit").addFilter(_quiet_during_outage)

"""Logs: one JSON object per line on stdout, with the request, event, deal, onboarding and step bound to it.

Context is bound with `bound(...)` (a contextvar, so it follows a request or a step's thread) and added to every
line logged inside. Nothing here ever logs a request body, a header value, a key or a signature: callers pass
only identifiers and messages, and values of keys that look secret are masked as a last line of defence.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from onboarding.entropy import random_bytes

CONTEXT_FIELDS = ("request_id", "event_id", "deal_id", "onboarding_id", "step")
EXTRA_FIELDS = ("outcome", "duration_ms", "status", "method", "path", "reason", "source", "worker", "claimed",
                "count")
SECRET_WORDS = ("secret", "token", "key", "signature", "password", "authorization")

_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("log_context", default=None)
_request_log = logging.getLogger("onboarding.http")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _fields() -> dict:
    """The fields bound in the current context."""
    return _context.get() or {}


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Add fields to every log line written inside the block (in this thread or task)."""
    token = _context.set({**_fields(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add fields to the current context until it ends (e.g. for the rest of a request)."""
    _context.set({**_fields(), **{k: v for k, v in fields.items() if v is not None}})


def clear() -> None:
    """Forget every bound field (at the start of a request)."""
    _context.set({})


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record, its bound context and its known extras, as JSON."""
        return _json_line(record.created, record.levelname, record.name, record.getMessage(),
                          {name: getattr(record, name) for name in EXTRA_FIELDS if hasattr(record, name)},
                          self.formatException(record.exc_info) if record.exc_info else None)


def _json_line(created: float, level: str, logger: str, message: str, extras: dict,
               exception: str | None = None) -> str:
    """One line: time, level, logger and message, the bound context, the extras, masked where a name says secret."""
    line = {"ts": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"), "level": level.lower(),
            "logger": logger, "message": message}
    line.update(_fields())
    line.update(extras)
    if exception:
        line["exception"] = exception
    return json.dumps({k: ("[masked]" if _secret(k) else v) for k, v in line.items()}, default=str)


@functools.lru_cache(maxsize=1024)
def _secret(name: str) -> bool:
    """Whether a field name suggests its value is a secret (cached: the same few names come on every line)."""
    return any(word in name.lower() for word in SECRET_WORDS)


def configure(level: str = "INFO") -> None:
    """Send every log line, as JSON, to stdout (once per process)."""
    root = logging.getLogger()
    if any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 logs full URLs with query strings at DEBUG; keep it quiet.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def start_request(offered_id: str) -> str:
    """Forget the previous request's fields and bind this one's id: the one offered in X-Request-ID when it is
    safe to log, a fresh one otherwise. Returns the id (for the answer's X-Request-ID)."""
    request_id = offered_id if _VALID_REQUEST_ID.match(offered_id) else uuid.UUID(bytes=random_bytes(16), version=4).hex
    _context.set({"request_id": request_id})
    return request_id


def request_done(method: str, path: str, status: int, started: float | None) -> None:
    """The request's one line: method, path (without the query), status and duration, with its bound fields.

    Written straight to the handlers when they are the plain JSON ones configure() or gunicorn's configuration set
    up: the same line logging would write, for a tenth of its work (a LogRecord, a lookup of every handler and
    filter, a formatter). Any other setup (a test's capture, a filter, a handler of another kind) gets it through
    logging.
    """
    level = logging.WARNING if status >= 400 else logging.INFO
    # In EXTRA_FIELDS' order, as the formatter would add them.
    extras = {"duration_ms": int((time.monotonic() - started) * 1000) if started else None, "status": status,
              "method": method, "path": path}
    handlers = _plain_handlers(_request_log, level)
    if handlers is None:
        _request_log.log(level, "request", extra=extras)
        return
    if not handlers:
        return
    line = _json_line(time.time(), logging.getLevelName(level), _request_log.name, "request", extras)
    for handler in handlers:
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.stream.flush()
        finally:
            handler.release()


def _plain_handlers(logger: logging.Logger, level: int) -> list[logging.StreamHandler] | None:
    """The handlers a line of logger at level reaches, when each is a plain StreamHandler with the JSON formatter
    and no filter is on the way; None when anything else is, or when no handler is (logging's last resort)."""
    if logger.disabled or not logger.isEnabledFor(level):
        return []
    reached = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if type(handler) is not logging.StreamHandler or type(handler.formatter) is not JsonFormatter \
                    or handler.filters:
                return None
            if level >= handler.level:
                reached.append(handler)
        if not current.propagate:
            break
        current = current.parent
    return reached or None


def init_app(app) -> None:
    """Bind a request id to every line of a request and write one line per request."""
    from flask import g, request

    @app.before_request
    def start() -> None:
        """Clear the previous request's fields and bind this one's id."""
        start_request(request.headers.get("X-Request-ID", ""))
        g.started = time.monotonic()

    @app.after_request
    def log_request(response):
        """One line per request, and its id in the answer."""
        request_done(request.method, request.path, response.status_code, g.get("started"))
        response.headers["X-Request-ID"] = _fields().get("request_id", "")
        return response

    @app.teardown_request
    def end_request(_error) -> None:
        """Leave nothing bound for whatever runs next in this thread."""
        clear()

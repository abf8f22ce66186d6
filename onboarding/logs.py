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
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

CONTEXT_FIELDS = ("request_id", "event_id", "deal_id", "onboarding_id", "step")
EXTRA_FIELDS = ("outcome", "duration_ms", "status", "method", "path", "reason", "source", "worker", "claimed",
                "count")
SECRET_WORDS = ("secret", "token", "key", "signature", "password", "authorization")

_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("log_context", default=None)


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
        line = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update(_fields())
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
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


def init_app(app) -> None:
    """Bind a request id to every line of a request and write one line per request."""
    import re
    import time
    import uuid

    from flask import g, request

    request_log = logging.getLogger("onboarding.http")
    valid_id = re.compile(r"^[A-Za-z0-9._-]{1,100}$")

    @app.before_request
    def start_request() -> None:
        """Clear the previous request's fields and bind this one's id."""
        clear()
        offered = request.headers.get("X-Request-ID", "")
        bind(request_id=offered if valid_id.match(offered) else uuid.uuid4().hex)
        g.started = time.monotonic()

    @app.after_request
    def log_request(response):
        """One line per request: method, path (without the query), status and duration."""
        started = g.get("started")
        level = logging.WARNING if response.status_code >= 400 else logging.INFO
        request_log.log(level, "request", extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": int((time.monotonic() - started) * 1000) if started else None})
        response.headers["X-Request-ID"] = _fields().get("request_id", "")
        return response

    @app.teardown_request
    def end_request(_error) -> None:
        """Leave nothing bound for whatever runs next in this thread."""
        clear()

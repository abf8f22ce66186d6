"""Where the accept path's CPU goes: each piece of a deal-won request timed on its own, in this process.

No server and no other request is involved, so the figures are the pieces' own cost; the whole request is timed
too, through the WSGI interface, beside the trivial endpoint's.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

CALLS = 2000


def accept_parts(env: dict[str, str], jobs: list[tuple[bytes, dict]]) -> dict:
    """CPU microseconds per call of each piece, with the service configured by env."""
    os.environ.update(env)
    from bench.trivial import app as trivial
    from onboarding import create_app, logs
    from onboarding.intake import record_delivery
    from onboarding.sources import Inbound

    app = create_app()
    services = app.extensions["onboarding"]
    source = services.sources["generic"]
    body, headers = jobs[0]
    document = json.loads(body)
    record = logging.LogRecord("onboarding.http", logging.INFO, __file__, 0, "request", None, None)
    formatter = logs.JsonFormatter()
    fresh = iter(jobs)

    def record_new_deal() -> None:
        raw, signed = next(fresh)
        record_delivery(services.db, source.name, signed["webhook-id"], {}, raw, source.judge(raw))

    pieces: dict[str, Callable[[], object]] = {
        "signature check": lambda: source.verify(Inbound("POST", b"", headers, body)),
        "JSON + marshmallow (judge)": lambda: source.judge(body),
        "marshmallow load alone": lambda: source.schema.load(document),
        "signed status link": lambda: services.status_links.url("0" * 32),
        "log line (format)": lambda: formatter.format(record),
        "record a deal alone (its own commit)": record_new_deal,
        "whole request, trivial app (WSGI)": lambda: _call(trivial, body, headers),
        "whole request, deal-won (WSGI)": lambda: _call(app, *next(fresh)),
    }
    with _quiet_logs():
        return {name: round(_cpu_us(piece), 1) for name, piece in pieces.items()}


def _cpu_us(piece: Callable[[], object]) -> float:
    """CPU microseconds per call of piece, over CALLS calls after a few to warm up."""
    for _ in range(20):
        piece()
    started = time.process_time()
    for _ in range(CALLS):
        piece()
    return (time.process_time() - started) / CALLS * 1e6


def _call(app, body: bytes, headers: dict) -> bytes:
    """POST body to app's /webhooks/deal-won through WSGI; the answer's body."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/deal-won", "QUERY_STRING": "",
               "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(len(body))}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    answer = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(answer)
    finally:
        if hasattr(answer, "close"):  # as a server does once the answer is sent (the request's log line)
            answer.close()


@contextmanager
def _quiet_logs():
    """Send the app's log lines to /dev/null (they are still formatted and written) while timing."""
    handlers = [handler for handler in logging.getLogger().handlers if isinstance(handler, logging.StreamHandler)]
    with Path(os.devnull).open("w") as devnull:
        previous = [handler.setStream(devnull) for handler in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, previous, strict=True):
                handler.setStream(stream)

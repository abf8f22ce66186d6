"""The accept fast path answers exactly as Flask's route would, and hands every other request to Flask intact.

Two apps on two databases get the same requests, one through the fast path (as served) and one through Flask
alone; their answers (status line, headers, body), log lines, counters and rows must match, ids aside. Flask's
request handling is wrapped to count the requests the fast path hands over.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from onboarding.db import Database
from onboarding.entropy import random_bytes
from onboarding.fastpath import AcceptFastPath
from onboarding.models import Event, Onboarding, new_id
from tests.conftest import deal_payload, signed

URL = "/webhooks/deal-won"
# An id (onboarding, event) or a status-link token, which differ between two apps by nature.
VARYING = re.compile(rb"[0-9a-f]{32}(\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)?")
VARYING_FIELDS = ("ts", "duration_ms", "event_id", "onboarding_id")


class CountingFlask:
    """Flask's request handling, counting the requests handed to it."""

    def __init__(self, wsgi) -> None:
        """Wrap wsgi (Flask.wsgi_app)."""
        self.wsgi = wsgi
        self.calls = 0

    def __call__(self, environ, start_response):
        """Count, then let Flask answer."""
        self.calls += 1
        return self.wsgi(environ, start_response)


@pytest.fixture
def pair(make_app, sqlite_url, tmp_path):
    """The app as served (its fast path's hand-overs counted), and the same app without a fast path, each on a
    database of its own."""
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    database = Database(other_url)
    database.upgrade()
    database.dispose()
    fast, plain = make_app(sqlite_url), make_app(other_url)
    assert isinstance(fast.wsgi_app, AcceptFastPath)
    handed = fast.wsgi_app.flask = CountingFlask(fast.wsgi_app.flask)
    plain.wsgi_app = plain.wsgi_app.flask
    yield fast, plain, handed
    for app in (fast, plain):
        app.extensions["onboarding"].db.dispose()


@contextmanager
def logged(alone: bool = True) -> Iterator[Callable[[], list[dict]]]:
    """The JSON lines the app's own log handler writes inside the block. Alone, nothing else listens (pytest's
    capture is set aside): the setup a served app has, where the request line skips logging's machinery."""
    root = logging.getLogger()
    handler = next(handler for handler in root.handlers if type(handler) is logging.StreamHandler)
    others = [other for other in root.handlers if other is not handler] if alone else []
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    for other in others:
        root.removeHandler(other)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        handler.setStream(previous)
        for other in others:
            root.addHandler(other)


def call(app, raw: bytes, headers: dict, **options) -> tuple[str, list[tuple[str, str]], bytes]:
    """POST raw to the app's WSGI callable: the status line, the headers and the body."""
    environ = EnvironBuilder(path=options.pop("path", URL), method=options.pop("method", "POST"), data=raw,
                             headers={"X-Request-ID": "req-1", **headers}).get_environ()
    environ.update(options)
    answer = {}
    iterable = app.wsgi_app(environ, lambda status, headers, exc_info=None: answer.update(status=status,
                                                                                          headers=headers))
    try:
        body = b"".join(iterable)
    finally:
        if hasattr(iterable, "close"):  # as every WSGI server does once the answer is sent
            iterable.close()
    return answer["status"], list(answer["headers"]), body


def without(line: dict, names: tuple[str, ...]) -> dict:
    """A log line without some fields."""
    return {key: value for key, value in line.items() if key not in names}


def same(answer: tuple) -> tuple:
    """An answer with its ids and tokens blanked (each app makes its own)."""
    status, headers, body = answer
    return status, headers, VARYING.sub(b"<id>", body)


def created(outcome: str) -> float:
    """How many deliveries this process has counted with an outcome."""
    return REGISTRY.get_sample_value("onboarding_webhooks_received_total",
                                     {"source": "generic", "outcome": outcome}) or 0


def test_a_new_deal_is_answered_logged_and_counted_as_flask_would_without_flask(pair):
    fast, plain, handed = pair
    raw, headers = signed(deal_payload("D-fast"))
    before = created("created")
    with logged() as lines:
        through_fast = call(fast, raw, headers)
        through_flask = call(plain, raw, headers)
    assert handed.calls == 0
    assert created("created") == before + 2
    assert through_fast[0] == "202 ACCEPTED"
    assert same(through_fast) == same(through_flask)
    assert [name for name, _ in through_fast[1]] == ["Content-Type", "Content-Length", "X-Request-ID"]
    answer = json.loads(through_fast[2])
    assert answer["status_url"].startswith("http://onboarding.test/status/")
    token = answer["status_url"].rsplit("/", 1)[1]
    assert fast.extensions["onboarding"].status_links.read(token) == answer["onboarding_id"]
    with fast.extensions["onboarding"].db.reading() as session:
        event = session.scalar(select(Event))
        assert (event.id, event.onboarding_id, event.outcome) == (answer["event_id"], answer["onboarding_id"],
                                                                   "accepted")
        assert event.headers["webhook-id"] == headers["webhook-id"] and event.body == raw
    fast_line, flask_line = [line for line in lines() if line["message"] == "request"]
    assert list(fast_line) == list(flask_line)
    assert without(fast_line, VARYING_FIELDS) == without(flask_line, VARYING_FIELDS)
    assert fast_line["event_id"] == answer["event_id"] and fast_line["onboarding_id"] == answer["onboarding_id"]
    assert fast_line["request_id"] == "req-1" and fast_line["outcome"] == "created"


def test_a_request_id_is_made_when_none_is_offered_or_the_offered_one_is_unsafe(pair):
    fast, _, _ = pair
    for offered in ("", "bad id\twith tabs"):
        raw, headers = signed(deal_payload())
        with logged() as lines:
            status, answer_headers, _ = call(fast, raw, {**headers, "X-Request-ID": offered})
        assert status == "202 ACCEPTED"
        made = dict(answer_headers)["X-Request-ID"]
        assert re.fullmatch("[0-9a-f]{32}", made) and made[12] == "4"  # a UUIDv4's hex, as Flask's route makes
        assert lines()[-1]["request_id"] == made


# Each: a name, what is sent (body, headers, extra WSGI environ), and what both paths answer.
def _cases():
    raw, headers = signed(deal_payload("D-1"))
    again_raw, again = signed(deal_payload("D-1"))  # the same deal under another webhook-id
    bad = {**headers, "webhook-signature": "v1,AAAA"}
    return [
        ("new deal", raw, headers, {}, "202 ACCEPTED"),
        ("the same delivery again", raw, headers, {}, "200 OK"),
        ("the same deal, another delivery", again_raw, again, {}, "200 OK"),
        ("a bad signature", raw, bad, {}, "401 UNAUTHORIZED"),
        ("refused by the schema", *signed(deal_payload("D-2", client={"id": "C"})), {}, "422 UNPROCESSABLE ENTITY"),
        ("not JSON", *signed(b"{nope"), {}, "400 BAD REQUEST"),
        ("another event type", *signed(deal_payload("D-3", type="deal.lost")), {}, "200 OK"),
        ("over the size limit", *signed(deal_payload("D-4", padding="x" * 300_000)), {},
         "413 REQUEST ENTITY TOO LARGE"),
        # As gunicorn passes a chunked body: no length, the stream ends where the body does.
        ("chunked", *signed(deal_payload("D-5")), {"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
         "202 ACCEPTED"),
        ("another method", raw, headers, {"method": "PUT"}, "405 METHOD NOT ALLOWED"),
        ("a trailing slash", raw, headers, {"path": URL + "/"}, "404 NOT FOUND"),
    ]


def test_every_other_request_is_handed_to_flask_and_answered_the_same(pair):
    fast, plain, handed = pair
    for name, raw, headers, extra, expected in _cases():
        options = {key: extra[key] for key in ("method", "path") if key in extra}
        environ = {key: value for key, value in extra.items() if key not in options}
        calls = handed.calls
        with logged() as lines:
            through_fast = call(fast, raw, headers, **options, **environ)
            through_flask = call(plain, raw, headers, **options, **environ)
        assert through_fast[0] == expected, name
        assert same(through_fast) == same(through_flask), name
        assert handed.calls == calls + (name != "new deal"), name
        fast_line, flask_line = [line for line in lines() if line["message"] == "request"]
        assert list(fast_line) == list(flask_line), name
        assert without(fast_line, VARYING_FIELDS) == without(flask_line, VARYING_FIELDS), name
    rows = []
    for app in (fast, plain):
        with app.extensions["onboarding"].db.reading() as session:
            rows.append((sorted((event.deal_id or "", event.outcome, event.deliveries)
                                for event in session.scalars(select(Event))),
                         sorted(session.scalars(select(Onboarding.deal_id)))))
    assert rows[0] == rows[1]
    assert rows[0][1] == ["D-1", "D-5"]
    assert ("D-1", "accepted", 2) in rows[0][0]  # the repeat counted once, by Flask's careful path


def test_requests_are_left_to_flask_while_an_outage_is_known(pair, monkeypatch):
    fast, _, handed = pair
    monkeypatch.setattr("onboarding.unavailable._away", True)  # as the first failed request leaves it
    raw, headers = signed(deal_payload())
    status, _, _ = call(fast, raw, headers)
    assert status == "202 ACCEPTED" and handed.calls == 1  # Flask answered, and ended the outage on its way


def test_the_line_is_the_same_when_it_goes_through_logging(pair, caplog):
    fast, _, _ = pair
    caplog.set_level(logging.INFO, logger="onboarding.http")
    with logged() as lines:
        call(fast, *signed(deal_payload("D-direct")))
    direct = lines()[-1]
    with logged(alone=False) as lines:  # pytest's capturing handler listens: the line goes through logging
        call(fast, *signed(deal_payload("D-captured")))
    through_logging = lines()[-1]
    record = caplog.records[-1]
    assert (record.name, record.status, record.method, record.path) == ("onboarding.http", 202, "POST", URL)
    assert list(direct) == list(through_logging)
    assert without(direct, (*VARYING_FIELDS, "deal_id")) == without(through_logging, (*VARYING_FIELDS, "deal_id"))
    assert (direct["deal_id"], through_logging["deal_id"]) == ("D-direct", "D-captured")


def test_ids_stay_unique_and_unshared_across_a_fork():
    random_bytes(1)  # this process now holds a page of random bytes
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(writer, random_bytes(32) + new_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    theirs = os.read(reader, 64)
    os.close(reader)
    ours = random_bytes(32) + new_id().encode()
    assert theirs[:32] != ours[:32]
    assert theirs[32:] != ours[32:]
    ids = {new_id() for _ in range(5000)}  # several pages' worth
    assert len(ids) == 5000
    assert all(re.fullmatch("[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}", value) for value in ids)

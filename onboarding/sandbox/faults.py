"""Fault injection and traffic limits: latency, canned failures, dropped connections, 429s.

Each fault rule names a target: "docspace" (api/2.0), "crm" (the callback receiver), "hubspot" or "pipedrive".
A target that registered an envelope (see register_envelope) answers canned failures in its own error format;
the others answer in DocSpace's.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http import HTTPStatus

from flask import Flask, Response, current_app, g, jsonify, request

from .state import ApiError

ACTIONS = ("latency", "status", "html502", "hang", "after_status", "drop", "after_drop")
TARGETS = ("docspace", "crm", "hubspot", "pipedrive")
BAD_GATEWAY_HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
HANG_SECONDS = 120.0
# DocSpace's default sliding window per user, reported when a fault (not a configured limit) answers 429.
DEFAULT_RATE_LIMIT = 1500
ERROR_CODES = {status.value for status in HTTPStatus if status.value >= 400}


@dataclass
class Rule:
    """One fault rule; `times` None means forever."""

    action: str
    method: str = "*"
    path: str = ""
    target: str = "docspace"
    times: int | None = None
    status: int = 500
    retry_after: int | None = None
    seconds: float | None = None

    @classmethod
    def from_json(cls, data: dict) -> Rule:
        """Build a rule from its JSON form, rejecting anything malformed with ValueError or TypeError."""
        if not isinstance(data, dict):
            raise TypeError("a rule must be an object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        try:
            rule = cls(**{key: value for key, value in data.items() if value is not None or key == "times"})
            rule.method = rule.method.upper()
            re.compile(rule.path)
        except (TypeError, AttributeError, re.error) as exc:
            raise ValueError(f"malformed rule: {exc}") from exc
        if rule.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        if rule.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}")
        if rule.status not in ERROR_CODES:
            raise ValueError("status must be an HTTP error code")
        if rule.times is not None and (not isinstance(rule.times, int) or rule.times < 0):
            raise ValueError("times must be a non-negative integer or null")
        if not isinstance(rule.retry_after, int | None) or not isinstance(rule.seconds, int | float | None):
            raise ValueError("retry_after must be an integer and seconds a number")
        return rule

    def matches(self, target: str, method: str, path: str) -> bool:
        """Whether this rule still applies to a request."""
        return (self.target == target and self.method in ("*", method) and self.times != 0
                and re.search(self.path, path) is not None)


class Traffic:
    """Fault rules and traffic settings, shared by all request threads."""

    def __init__(self, latency_ms: int) -> None:
        """Start with no rules, no limits and the given latency."""
        self._default_latency_ms = latency_ms
        self._cond = threading.Condition()
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        """Back to defaults; requests still sleeping from before give up."""
        with self._cond:
            self.rules: list[Rule] = []
            self.latency_ms = self._default_latency_ms
            self.max_concurrent_writes: int | None = None
            self.rate_per_minute: int | None = None
            self.in_flight_writes = 0
            self.peak_concurrent_writes = 0
            self._window: deque[float] = deque()
            self.generation += 1
            self._cond.notify_all()

    def config(self) -> dict:
        """The settings a client may change."""
        with self._cond:
            return {"latency_ms": self.latency_ms, "max_concurrent_writes": self.max_concurrent_writes,
                    "rate_per_minute": self.rate_per_minute}

    def configure(self, latency_ms: int, max_concurrent_writes: int | None, rate_per_minute: int | None) -> None:
        """Replace the settings."""
        with self._cond:
            self.latency_ms = latency_ms
            self.max_concurrent_writes = max_concurrent_writes
            self.rate_per_minute = rate_per_minute

    def set_rules(self, rules: list[Rule]) -> None:
        """Replace the fault rules."""
        with self._cond:
            self.rules = rules

    def describe_rules(self) -> list[dict]:
        """The rules with their remaining times."""
        with self._cond:
            return [asdict(rule) for rule in self.rules]

    def take(self, target: str, method: str, path: str) -> Rule | None:
        """Use up one application of the first rule matching the request."""
        with self._cond:
            rule = next((r for r in self.rules if r.matches(target, method, path)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
            return rule

    def rate_limited(self) -> int | None:
        """Count a request in the sliding window; the seconds to wait if the window is full."""
        with self._cond:
            if self.rate_per_minute is None:
                return None
            current = time.monotonic()
            while self._window and current - self._window[0] >= 60:
                self._window.popleft()
            if len(self._window) >= self.rate_per_minute:
                return max(1, math.ceil(60 - (current - self._window[0])))
            self._window.append(current)
            return None

    def enter_write(self) -> bool:
        """Count a write as in flight; False (not counted) when the concurrency limit is reached."""
        with self._cond:
            if self.max_concurrent_writes is not None and self.in_flight_writes >= self.max_concurrent_writes:
                return False
            self.in_flight_writes += 1
            self.peak_concurrent_writes = max(self.peak_concurrent_writes, self.in_flight_writes)
            return True

    def leave_write(self, generation: int) -> None:
        """A write finished; one admitted before the last reset was already forgotten."""
        with self._cond:
            if generation == self.generation:
                self.in_flight_writes -= 1

    def sleep(self, seconds: float, generation: int) -> bool:
        """Sleep unless a reset happens first; False if the sandbox was reset meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != generation, timeout=seconds)
            return self.generation == generation


class RollingWindow:
    """A rolling-window request counter, the burst limit of a CRM imitation; a limit of None means off."""

    def __init__(self, seconds: float, limit: int | None) -> None:
        """An empty window `seconds` long admitting `limit` requests."""
        self.seconds = seconds
        self._lock = threading.Lock()
        self._hits: deque[float] = deque()
        self.limit = limit

    def configure(self, limit: int | None) -> None:
        """Change the limit; requests already counted stay counted."""
        with self._lock:
            self.limit = limit

    def clear(self) -> None:
        """Forget every counted request."""
        with self._lock:
            self._hits.clear()

    def hit(self) -> Quota | None:
        """Count a request if the window has room; None when the limit is off."""
        with self._lock:
            if self.limit is None:
                return None
            current = time.monotonic()
            while self._hits and current - self._hits[0] >= self.seconds:
                self._hits.popleft()
            allowed = len(self._hits) < self.limit
            if allowed:  # a refused request does not count: the real limiters only count what they serve
                self._hits.append(current)
            # Seconds until the oldest counted request leaves the window, which is when room appears again.
            oldest = self._hits[0] if self._hits else current
            reset = max(1, math.ceil(self.seconds - (current - oldest)))
            return Quota(allowed, self.limit, max(0, self.limit - len(self._hits)), reset)


@dataclass(frozen=True)
class Quota:
    """What a rolling window said about one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


# A target's canned failure: (status, retry_after) -> the response in the target's own error format.
Envelope = Callable[[int, int | None], Response]


class DroppedResponse(Response):
    """Stands in for an answer that is never sent: the connection is closed instead."""


def init_app(app: Flask, latency_ms: int) -> None:
    """Attach the shared Traffic and an empty registry of per-target error envelopes to the app."""
    app.extensions["sandbox.traffic"] = Traffic(latency_ms)
    app.extensions["sandbox.envelopes"] = {}


def register_envelope(app: Flask, target: str, envelope: Envelope) -> None:
    """Let `target` answer its canned failures in its own format instead of DocSpace's."""
    if target not in TARGETS:
        raise ValueError(f"unknown fault target {target!r}")
    app.extensions["sandbox.envelopes"][target] = envelope


def traffic() -> Traffic:
    """The current app's Traffic."""
    return current_app.extensions["sandbox.traffic"]


def before(target: str, path: str, limited: bool) -> Response | None:
    """Apply limits (when `limited`), latency and the first matching fault; a response ends the request."""
    state = traffic()
    g.sandbox_generation = state.generation
    if limited:
        wait = state.rate_limited()
        if wait is not None:
            return too_many_requests(wait, state.rate_per_minute)
        if request.method != "GET":
            if not state.enter_write():
                return too_many_requests(1, state.max_concurrent_writes)
            g.sandbox_write = True
    if state.latency_ms and not state.sleep(state.latency_ms / 1000, g.sandbox_generation):
        return drop_connection()
    rule = state.take(target, request.method, path)
    if rule is None:
        return None
    if rule.action in ("latency", "hang"):
        default = HANG_SECONDS if rule.action == "hang" else 0.0
        if not state.sleep(default if rule.seconds is None else rule.seconds, g.sandbox_generation):
            return drop_connection()
        return None
    if rule.action in ("after_status", "after_drop"):
        g.sandbox_after = rule
        return None
    if rule.action == "drop":
        return drop_connection()
    if rule.action == "html502":
        return bad_gateway()
    return canned(rule.status, rule.retry_after, target)


def after(response: Response) -> Response:
    """Replace the real response when an after_* fault was picked for this request."""
    rule = g.pop("sandbox_after", None)
    if rule is None:
        return response
    if rule.action == "after_drop":
        return drop_connection()
    # A lost answer usually comes from the reverse proxy, whose 502 is an HTML page.
    if rule.status == 502:
        return bad_gateway()
    return canned(rule.status, rule.retry_after, rule.target)


def finish() -> None:
    """Release the in-flight write slot, if this request held one."""
    if g.pop("sandbox_write", False):
        traffic().leave_write(g.sandbox_generation)


def canned(status: int, retry_after: int | None = None, target: str = "docspace") -> Response:
    """A failure answered without doing anything, in the target's format (DocSpace's: an empty 429 or its envelope)."""
    envelope = current_app.extensions.get("sandbox.envelopes", {}).get(target)
    if envelope is not None:
        return envelope(status, retry_after)
    if status == 429:
        return too_many_requests(retry_after or 1, DEFAULT_RATE_LIMIT)
    error = ApiError(status, HTTPStatus(status).phrase)
    response = jsonify(error.envelope())
    response.status_code = status
    return response


def too_many_requests(retry_after: int, limit: int | None) -> Response:
    """The rate limiter's answer: 429, no body, rate-limit headers."""
    return Response(status=429, headers={
        "Retry-After": str(retry_after),
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(time.time()) + retry_after),
    })


def bad_gateway() -> Response:
    """What a reverse proxy answers when the backend fails: 502 with an HTML page."""
    return Response(BAD_GATEWAY_HTML, status=502, content_type="text/html; charset=utf-8")


def drop_connection() -> Response:
    """Answer with a body that closes the connection instead of sending anything."""
    current_app.logger.warning("sandbox fault: dropping the connection of %s %s", request.method, request.path)
    return DroppedResponse(_dropped_body(request.environ.get("werkzeug.socket")))


def _dropped_body(sock: socket.socket | None) -> Iterator[bytes]:
    """Close the socket, then report the connection as gone so werkzeug writes no status line or headers."""
    # werkzeug iterates the body only after the request is fully handled (call recorded, write slot freed),
    # so a client that sees the connection close also sees the sandbox's state settled.
    if sock is not None:
        with contextlib.suppress(OSError):  # the client may already have gone away
            sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("sandbox fault: connection dropped")
    yield b""  # unreachable; makes this a generator, so it runs while werkzeug iterates the body

"""Calls to outside APIs (DocSpace, the CRM callback, HubSpot, Pipedrive): the one wrapper they all go through.

It keeps the limiter's turn, times the call for metrics, applies explicit timeouts, and turns what no API can
answer (a timeout, a refused or dropped connection) and what every API means the same way (429, 5xx, 408) into
TransientError, honouring the wait the server asked for. Each client reads the rest (its own envelope and error
body) from the response it gets back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import requests

from onboarding.errors import TransientError, retry_after_seconds
from onboarding.http import pooled_session
from onboarding.limiter import Limiter
from onboarding.limits import FleetLimiter
from onboarding.metrics import observe_call

# A 429 that says nothing about when to come back: wait this long.
DEFAULT_PAUSE_SECONDS = 1.0
# The longest a 429 holds every thread of a process: a longer wait (HubSpot's daily limit) is spent by the
# onboardings themselves, queued again for after it, not by threads blocked here.
MAX_PAUSE_SECONDS = 60.0


def header_wait(answer: requests.Response) -> float | None:
    """The wait a 429 asks for in its Retry-After header (seconds), if any."""
    return retry_after_seconds(answer.headers.get("Retry-After"))


class OutsideApi:
    """One outside API: a base URL, a pooled session, timeouts and a limiter shared by a process's threads."""

    def __init__(self, service: str, metric: str, base_url: str, *, timeout: tuple[float, float],
                 limiter: Limiter | FleetLimiter | None,
                 pool_size: int = 8, headers: dict[str, str] | None = None,
                 rate_limit_wait: Callable[[requests.Response], float | None] = header_wait,
                 describe: Callable[[requests.Response], str] | None = None) -> None:
        """A client of service (its name in messages; metric: its label in metrics) at base_url; rate_limit_wait
        reads a 429's wait, describe an error answer."""
        self.service = service
        self.metric = metric
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.limiter = limiter
        self.session = pooled_session(pool_size)
        self.session.headers.update(headers or {})
        self.rate_limit_wait = rate_limit_wait
        self.describe = describe or (lambda answer: repr(answer.text[:200]))

    def send(self, method: str, path: str, *, endpoint: str, params: dict | None = None, json: object = None,
             data: bytes | None = None, headers: dict | None = None, allow_redirects: bool = True,
             write: bool | None = None) -> requests.Response:
        """Make one call; return any answer but a 429, 408 or 5xx, which raise TransientError, as do timeouts
        and connection errors. write (default: not a GET) takes a concurrent-write slot of the limiter."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path}"
        started = time.monotonic()
        status = "error"
        try:
            with self._turn(method != "GET" if write is None else write):
                try:
                    answer = self.session.request(method, url, params=params, json=json, data=data,
                                                  headers=headers, timeout=self.timeout,
                                                  allow_redirects=allow_redirects)
                except requests.Timeout:
                    raise TransientError(f"{self.service} did not answer within {self.timeout[1]:g} s",
                                         endpoint) from None
                except requests.RequestException as error:
                    raise TransientError(f"cannot reach {self.service}: {type(error).__name__}", endpoint) from None
            status = str(answer.status_code)
            if answer.status_code == 429:
                wait = self.rate_limit_wait(answer)
                if self.limiter is not None:
                    self.limiter.pause(min(wait or DEFAULT_PAUSE_SECONDS, MAX_PAUSE_SECONDS))
                raise TransientError(f"{self.service} rate limit reached (429): {self.describe(answer)}", endpoint,
                                     429, wait)
            if answer.status_code >= 500 or answer.status_code == 408:
                raise TransientError(f"{self.service} error {answer.status_code}: {self.describe(answer)}",
                                     endpoint, answer.status_code, header_wait(answer))
            return answer
        finally:
            observe_call(self.metric, endpoint, status, time.monotonic() - started)

    def _turn(self, write: bool):
        """The limiter's slot for one call (none without a limiter)."""
        return nullcontext() if self.limiter is None else self.limiter.slot(write=write)

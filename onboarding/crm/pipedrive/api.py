"""Pipedrive's API: the calls the adapter makes, through the shared outside-call wrapper, with typed errors.

Facts behind each call: ../shared/reference/crm-apis.md, sections 7 and 8. The token goes in the x-api-token
header, never in the query string (where it would land in proxies' and servers' logs). Pipedrive counts requests
in a rolling 2-second burst window per token (20 on the Lite plan, more on others: PIPEDRIVE_RATE_PER_2_SECONDS);
its 429 says when the window frees in x-ratelimit-reset (seconds). v2 endpoints for deals, persons and
organizations; v1 for users, deal fields and notes, which have no v2 twins.
"""

from __future__ import annotations

import requests

from onboarding.errors import PermanentError, TransientError, retry_after_seconds
from onboarding.limiter import Limiter
from onboarding.limits import FleetLimiter
from onboarding.outside import OutsideApi

WINDOW_SECONDS = 2.0
UNLIMITED_WRITES = 1000
PAGE = 500


class PipedriveApi:
    """A client for one Pipedrive company; safe to share between threads."""

    def __init__(self, base_url: str, token: str, *, timeout: float, limiter: Limiter | FleetLimiter,
                 pool_size: int = 16) -> None:
        """A client with its own session, kept inside the token's 2-second window by limiter."""
        self.limiter = limiter
        self.api = OutsideApi("Pipedrive", "pipedrive", base_url, timeout=(min(5.0, timeout), timeout),
                              limiter=self.limiter, pool_size=pool_size,
                              headers={"x-api-token": token, "Accept": "application/json"},
                              rate_limit_wait=rate_limit_wait, describe=message)

    def deal(self, deal_id: str) -> dict:
        """A deal (v2): title, owner_id, person_id, org_id, status, custom_fields."""
        return self.call("GET", f"api/v2/deals/{deal_id}", "GET v2 deals/{id}")

    def person(self, person_id: int) -> dict:
        """A person (v2), with their e-mail addresses."""
        return self.call("GET", f"api/v2/persons/{person_id}", "GET v2 persons/{id}")

    def organization(self, org_id: int) -> dict:
        """An organization (v2)."""
        return self.call("GET", f"api/v2/organizations/{org_id}", "GET v2 organizations/{id}")

    def user(self, user_id: int) -> dict | None:
        """A user (v1), or None when there is no such user."""
        try:
            return self.call("GET", f"v1/users/{user_id}", "GET v1 users/{id}")
        except PermanentError as error:
            if error.status == 404:
                return None
            raise

    def deal_fields(self) -> list[dict]:
        """Every deal field (v1), all pages."""
        return self._all("v1/dealFields", "GET v1 dealFields", {})

    def create_deal_field(self, name: str, field_type: str) -> dict:
        """A custom deal field; Pipedrive allows two of one name, so look with deal_fields first."""
        return self.call("POST", "v1/dealFields", "POST v1 dealFields", body={"name": name, "field_type": field_type})

    def update_deal(self, deal_id: str, custom_fields: dict[str, str]) -> dict:
        """Set custom fields of a deal (v2; idempotent)."""
        return self.call("PATCH", f"api/v2/deals/{deal_id}", "PATCH v2 deals/{id}",
                         body={"custom_fields": custom_fields})

    def deal_notes(self, deal_id: str) -> list[dict]:
        """Every note on a deal (v1), all pages."""
        return self._all("v1/notes", "GET v1 notes", {"deal_id": deal_id})

    def create_note(self, deal_id: str, content: str) -> dict:
        """A note on a deal (v1); Pipedrive has no idempotency key, so look with deal_notes first."""
        return self.call("POST", "v1/notes", "POST v1 notes", body={"content": content, "deal_id": int(deal_id)})

    def call(self, method: str, path: str, endpoint: str, *, params: dict | None = None,
             body: dict | None = None) -> dict:
        """One call; the envelope's data, or a TransientError / PermanentError carrying Pipedrive's message."""
        answer = self.api.send(method, path, endpoint=endpoint, params=params, json=body)
        return _data(answer, endpoint)[0]

    def _all(self, path: str, endpoint: str, params: dict) -> list[dict]:
        """Every item of a v1 list, page by page."""
        items: list[dict] = []
        start = 0
        while True:
            answer = self.api.send("GET", path, endpoint=endpoint, params={**params, "start": start, "limit": PAGE})
            page, document = _data(answer, endpoint)
            items += page or []
            pagination = (document.get("additional_data") or {}).get("pagination") or {}
            if not pagination.get("more_items_in_collection"):
                return items
            start = pagination.get("next_start", start + PAGE)


def _data(answer: requests.Response, endpoint: str):
    """(data, whole document) of a success envelope, or the typed error an answer describes."""
    code = answer.status_code
    if code >= 400:
        raise PermanentError(f"Pipedrive refused ({code}): {message(answer)}", endpoint, code)
    try:
        document = answer.json()
    except ValueError:
        raise TransientError(f"Pipedrive answered {code} without JSON", endpoint, code) from None
    if not isinstance(document, dict) or document.get("success") is not True:
        raise TransientError(f"Pipedrive answered {code} without a success envelope", endpoint, code)
    return document.get("data"), document


def message(answer: requests.Response) -> str:
    """Pipedrive's message in an error answer."""
    try:
        document = answer.json()
    except ValueError:
        document = None
    if not isinstance(document, dict) or not document.get("error"):
        return f"HTTP {answer.status_code} without a Pipedrive error body"
    return str(document["error"])[:500]


def rate_limit_wait(answer: requests.Response) -> float | None:
    """How long a 429 asks to wait: its Retry-After, else x-ratelimit-reset (seconds until the window frees)."""
    offered = retry_after_seconds(answer.headers.get("Retry-After"))
    if offered is not None:
        return offered
    return retry_after_seconds(answer.headers.get("x-ratelimit-reset")) or WINDOW_SECONDS

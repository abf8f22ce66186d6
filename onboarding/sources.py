"""Sources: how a request from one kind of sender is verified and read into won deals.

Each source answers three questions about a request, without touching the database: who sent it (verify),
which deliveries it holds (one for most senders, one per event of a HubSpot batch, each with its id for dedupe),
and what each says (a Verdict). The sources themselves live with their CRM: onboarding/crm/generic.py (the
Standard Webhooks signed "deal.won"), onboarding/crm/hubspot/, onboarding/crm/pipedrive/. HTTP stays at the
edge: a verdict says what a delivery amounts to, and the webhook blueprint chooses the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from onboarding.domain import Deal

DEAL_WON = "deal.won"
MAX_TEXT = 100


@dataclass(frozen=True)
class Inbound:
    """A request as a source sees it: the raw body, never parsed before it is verified."""

    method: str
    query_string: bytes
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """One event of a request: the id it is deduplicated by, and its own body (what is recorded and replayed)."""

    id: str
    body: bytes


@dataclass(frozen=True)
class Verdict:
    """What a verified delivery amounts to: a won deal to onboard, an event to ignore, one to judge later
    (pending: the worker must ask the CRM first), or a refusal."""

    outcome: str  # accepted | ignored | pending | rejected
    event_type: str | None = None
    deal: Deal | None = None
    # Why a delivery was rejected: "malformed" (not JSON, or text no database can store) or "invalid" (the
    # payload is not what the source sends).
    problem: str | None = None
    errors: dict | None = None
    deal_id: str | None = None


class Source(Protocol):
    """A kind of sender: verifies its requests and reads its payloads."""

    name: str
    headers_to_keep: tuple[str, ...]

    def verify(self, inbound: Inbound) -> None:
        """Return for a genuine request; raise signatures.SignatureError otherwise."""

    def deliveries(self, inbound: Inbound) -> Delivery | list[Delivery]:
        """What a verified request holds: one delivery, or a batch of them (answered as a batch)."""

    def judge(self, body: bytes) -> Verdict:
        """Read one delivery's body into a Verdict."""


def ignored(event_type: str | None, reason: str, deal_id: str | None = None) -> Verdict:
    """A verdict for an event that is recorded but asks for nothing, with the reason in words."""
    return Verdict("ignored", event_type=event_type, errors={"_ignored": [reason]}, deal_id=deal_id)


def read_json(body: bytes) -> tuple[object, Verdict | None]:
    """The parsed body, or a rejecting verdict when it is not JSON a database can store."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
        return None, Verdict("rejected", problem="malformed",
                             errors={"_body": [f"The body is not valid JSON: {reason}"]})
    # Such text arrives as \u escapes or, since json decodes bytes with surrogatepass, as raw 0xED bytes.
    if (b"\\u" in body or b"\xed" in body) and _unstorable_or_deep(document):
        return None, Verdict("rejected", problem="malformed", errors={"_body": [
            "The body holds text no database can store: a lone UTF-16 surrogate or a NUL character."]})
    return document, None


def identifier(value: object) -> str | None:
    """A CRM id (a string or an integer, never a bool) as a string of at most 100 characters, else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if 0 < len(text) <= MAX_TEXT else None


def _unstorable_or_deep(document) -> bool:
    """_unstorable, treating a document too deep to inspect as unstorable."""
    try:
        return _unstorable(document)
    except RecursionError:
        return True


def _unstorable(value) -> bool:
    """Whether any string in a parsed document has a lone surrogate or a NUL (only \\u escapes make them)."""
    if isinstance(value, str):
        return "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_unstorable(key) or _unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_unstorable(item) for item in value)
    return False

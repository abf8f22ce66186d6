"""Sources: how a request from one kind of sender is verified and mapped to a won deal.

Each source answers three questions about a request, without touching the database:
who sent it (verify), which delivery it is (its id, for dedupe), and what it says (a Verdict).
The generic source is a Standard Webhooks signed POST with the payload of schemas.DealWonSchema; native CRM
adapters (HubSpot, Pipedrive...) are further Source implementations registered beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from marshmallow import ValidationError

from onboarding import signatures
from onboarding.schemas import DealWon, DealWonSchema, to_deal_won

DEAL_WON = "deal.won"


@dataclass(frozen=True)
class Verdict:
    """What a verified request amounts to: a won deal to onboard, an event to ignore, or a refusal."""

    outcome: str  # accepted | ignored | rejected
    event_type: str | None = None
    deal: DealWon | None = None
    http_status: int = 200
    errors: dict | None = None
    deal_id: str | None = None


class Source(Protocol):
    """A kind of sender: verifies its requests and reads its payloads."""

    name: str
    headers_to_keep: tuple[str, ...]

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Return the delivery id of a genuine request, or raise signatures.SignatureError."""

    def judge(self, body: bytes) -> Verdict:
        """Read a verified body into a Verdict."""


class StandardWebhooksSource:
    """The generic signed webhook: Standard Webhooks headers, the DealWonSchema payload."""

    name = "generic"
    headers_to_keep = ("webhook-id", "webhook-timestamp", "content-type", "user-agent")

    def __init__(self, secrets: tuple[bytes, ...], tolerance_seconds: int, default_manager: str | None) -> None:
        """A source accepting any of the given secrets (several at once while rotating)."""
        self.secrets = secrets
        self.tolerance_seconds = tolerance_seconds
        self.default_manager = default_manager
        self.schema = DealWonSchema(default_manager=default_manager)

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check the Standard Webhooks signature over the raw body."""
        return signatures.verify(self.secrets, headers, body, tolerance_seconds=self.tolerance_seconds)

    def judge(self, body: bytes) -> Verdict:
        """Parse and validate the payload."""
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
            return Verdict("rejected", http_status=400, errors={"_body": [f"The body is not valid JSON: {reason}"]})
        # Such text arrives as \u escapes or, since json decodes bytes with surrogatepass, as raw 0xED bytes.
        if (b"\\u" in body or b"\xed" in body) and _unstorable_or_deep(document):
            return Verdict("rejected", http_status=400, errors={"_body": [
                "The body holds text no database can store: a lone UTF-16 surrogate or a NUL character."]})
        if not isinstance(document, dict):
            return Verdict("rejected", http_status=422, errors={"_schema": ["Expected a JSON object."]})
        event_type = document.get("type")
        if isinstance(event_type, str) and event_type != DEAL_WON:
            return Verdict("ignored", event_type=event_type[:100])
        deal_id = _deal_id(document)
        try:
            data = self.schema.load(document)
        except ValidationError as error:
            return Verdict("rejected", event_type=DEAL_WON if event_type == DEAL_WON else None, http_status=422,
                           errors=error.normalized_messages(), deal_id=deal_id)
        deal = to_deal_won(data, self.default_manager)
        return Verdict("accepted", event_type=DEAL_WON, deal=deal, http_status=202, deal_id=deal.deal_id)


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


def _deal_id(document: dict) -> str | None:
    """The deal id of a payload that may be invalid, for finding its event later."""
    deal = document.get("deal")
    value = deal.get("id") if isinstance(deal, dict) else None
    return str(value)[:100] if isinstance(value, (str, int)) and not isinstance(value, bool) else None

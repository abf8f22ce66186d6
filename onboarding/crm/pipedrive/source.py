"""Pipedrive in: webhooks v2 (meta, data, previous) and v1 (current, previous), with HTTP Basic credentials.

Pipedrive signs nothing; the webhook carries the credentials set on it, checked here in constant time. A deal is
won when a change leaves it with status won and its previous status was something else (v2: data.status and
previous.status, previous holding only the fields that changed; v1: current.status and previous.status). Ids
arrive as strings in meta and integers in data. Dedupe: the event's meta.id (v2; retries repeat it), and the deal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from onboarding.domain import Deal
from onboarding.signatures import SignatureError
from onboarding.sources import Delivery, Inbound, Verdict, identifier, ignored, read_json

NAME = "pipedrive"


class PipedriveSource:
    """POST /webhooks/pipedrive."""

    name = NAME
    headers_to_keep = ("content-type", "user-agent")

    def __init__(self, user: str, password: str) -> None:
        """A source accepting the webhook's Basic credentials."""
        self.expected = f"{user}:{password}".encode()

    def verify(self, inbound: Inbound) -> None:
        """Check the HTTP Basic credentials."""
        scheme, _, encoded = inbound.headers.get("Authorization", "").partition(" ")
        if not encoded:
            raise SignatureError("missing Authorization (HTTP Basic) header", "missing")
        if scheme.lower() != "basic":
            raise SignatureError("the Authorization header is not HTTP Basic", "malformed")
        try:
            offered = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("malformed HTTP Basic credentials", "malformed") from None
        if not hmac.compare_digest(offered, self.expected):
            raise SignatureError("wrong credentials", "mismatch")

    def deliveries(self, inbound: Inbound) -> Delivery:
        """One delivery, identified by meta.id (v2), or by what identifies a v1 event."""
        document, _ = read_json(inbound.body)
        meta = document.get("meta") if isinstance(document, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("id"), str) and meta.get("version") != "1.0" \
                and "current" not in document:
            return Delivery("pd-" + meta["id"][:200], inbound.body)
        if isinstance(meta, dict):
            fields = [meta.get(name) for name in ("company_id", "object", "action", "id", "timestamp_micro",
                                                  "timestamp", "webhook_id")]
            return Delivery("pd-v1-" + hashlib.sha256(json.dumps(fields, default=str).encode()).hexdigest()[:40],
                            inbound.body)
        return Delivery("pd-body-" + hashlib.sha256(inbound.body).hexdigest()[:40], inbound.body)

    def judge(self, body: bytes) -> Verdict:
        """A deal whose status changed to won is a won deal; every other event is ignored."""
        document, refusal = read_json(body)
        if refusal is not None:
            return refusal
        if not isinstance(document, dict) or not isinstance(document.get("meta"), dict):
            return Verdict("rejected", problem="invalid", errors={"meta": ["Expected a Pipedrive webhook: an "
                                                                           "object with meta."]})
        meta = document["meta"]
        if "current" in document or document.get("event"):
            return _judge_v1(document, meta)
        entity, action = meta.get("entity"), meta.get("action")
        kind = f"{action}.{entity}"[:100]
        data = document.get("data") if isinstance(document.get("data"), dict) else {}
        previous = document.get("previous") if isinstance(document.get("previous"), dict) else {}
        deal_id = identifier(data.get("id")) or identifier(meta.get("entity_id"))
        if entity != "deal" or action != "change":
            return ignored(kind, "not a change of a deal", deal_id if entity == "deal" else None)
        return _won_or_not(kind, meta, deal_id, data.get("status"), previous)


def _judge_v1(document: dict, meta: dict) -> Verdict:
    """A v1 webhook: event updated.deal, current and previous."""
    kind = str(document.get("event") or f"{meta.get('action')}.{meta.get('object')}")[:100]
    current = document.get("current") if isinstance(document.get("current"), dict) else {}
    previous = document.get("previous") if isinstance(document.get("previous"), dict) else {}
    deal_id = identifier(current.get("id")) or identifier(meta.get("id"))
    if kind != "updated.deal":
        return ignored(kind, "not an update of a deal", deal_id if kind.endswith(".deal") else None)
    return _won_or_not(kind, meta, deal_id, current.get("status"), previous)


def _won_or_not(kind: str, meta: dict, deal_id: str | None, status: object, previous: dict) -> Verdict:
    """Won when the status is won now and was something else before."""
    if status != "won" or "status" not in previous or previous.get("status") == "won":
        change = f'status {previous.get("status")} -> {status}' if "status" in previous else "status unchanged"
        return ignored(kind, f"the deal was not won by this change ({change})", deal_id)
    company_id = identifier(meta.get("company_id"))
    missing = [name for name, value in (("meta.company_id", company_id), ("deal id", deal_id)) if value is None]
    if missing:
        return Verdict("rejected", event_type=kind, problem="invalid", deal_id=deal_id,
                       errors={name: ["Missing or not an id."] for name in missing})
    return Verdict("accepted", event_type=kind, deal=Deal(source=NAME, deal_id=deal_id, account_id=company_id),
                   deal_id=deal_id)

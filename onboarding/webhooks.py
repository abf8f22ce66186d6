"""The receiving endpoints: raw body -> verify -> judge -> record -> answer, one endpoint per source.

The signature (or the credentials) is checked on the raw bytes before anything is parsed. The answer goes out
only after every event of the request (and, for a won deal, its onboarding) is committed, so whatever we
acknowledge is never lost; the DocSpace work happens later, in the worker. HTTP status codes are chosen here and
nowhere below: sources and intake speak of outcomes.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

from onboarding import logs
from onboarding.intake import Receipt, record_delivery
from onboarding.metrics import SIGNATURE_FAILURES, WEBHOOKS
from onboarding.signatures import SignatureError
from onboarding.sources import Delivery, Inbound, Source

bp = Blueprint("webhooks", __name__)

STATUS = {"created": 202, "duplicate": 200, "ignored": 200, "pending": 202}
PROBLEM_STATUS = {"malformed": 400, "invalid": 422}


@bp.post("/webhooks/deal-won")
def deal_won():
    """The generic signed "deal won" webhook."""
    return receive("generic")


@bp.post("/webhooks/hubspot")
def hubspot():
    """HubSpot's app webhooks: a signed batch of events."""
    return receive("hubspot")


@bp.post("/webhooks/pipedrive")
def pipedrive():
    """Pipedrive's webhooks (v2, and v1), with HTTP Basic credentials."""
    return receive("pipedrive")


def receive(name: str):
    """Handle one request from a source, if that source is switched on."""
    source = current_app.extensions["onboarding"].sources.get(name)
    if source is None:
        abort(404, f"The {name} source is not configured here.")
    inbound = Inbound(request.method, request.query_string, request.headers, request.get_data(cache=False))
    try:
        source.verify(inbound)
    except SignatureError as error:
        SIGNATURE_FAILURES.labels(source.name, error.code).inc()
        WEBHOOKS.labels(source.name, "unauthorized").inc()
        logs.bind(outcome="unauthorized", reason=str(error), source=source.name)
        return jsonify(error="The request's signature could not be verified.", reason=str(error)), 401
    held = source.deliveries(inbound)
    if isinstance(held, Delivery):
        return answer(record(source, inbound, held))
    receipts = [record(source, inbound, delivery) for delivery in held]
    # No line of its own: the request's one log line carries the count.
    logs.bind(outcome="batch", source=source.name)
    return jsonify(events=[_brief(receipt) for receipt in receipts]), 200


def record(source: Source, inbound: Inbound, delivery: Delivery) -> Receipt:
    """Judge and record one delivery."""
    services = current_app.extensions["onboarding"]
    verdict = source.judge(delivery.body)
    kept = {name: value for name in source.headers_to_keep if (value := inbound.headers.get(name)) is not None}
    logs.bind(deal_id=verdict.deal_id)
    receipt = record_delivery(services.db, source.name, delivery.id, kept, delivery.body, verdict)
    # No line of its own: the request's one log line carries these.
    logs.bind(event_id=receipt.event_id, onboarding_id=receipt.onboarding_id, outcome=receipt.outcome,
              source=source.name)
    WEBHOOKS.labels(source.name, receipt.outcome).inc()
    return receipt


def answer(receipt: Receipt):
    """The HTTP answer to a single delivery's receipt."""
    if receipt.outcome == "rejected":
        if receipt.problem == "malformed":
            body = {"error": " ".join(receipt.errors.get("_body", ["The body is not valid JSON."])),
                    "event_id": receipt.event_id}
        else:
            body = {"errors": receipt.errors, "event_id": receipt.event_id}
        return jsonify(body), PROBLEM_STATUS[receipt.problem]
    return jsonify(_brief(receipt, with_outcome=False)), STATUS[receipt.outcome]


def _brief(receipt: Receipt, with_outcome: bool = True) -> dict:
    """What the sender is told about one delivery."""
    services = current_app.extensions["onboarding"]
    if receipt.outcome in ("created", "duplicate"):
        body = {"onboarding_id": receipt.onboarding_id, "status": receipt.onboarding_status,
                "status_url": services.status_links.url(receipt.onboarding_id),
                "duplicate": receipt.outcome == "duplicate", "event_id": receipt.event_id}
    elif receipt.outcome == "rejected":
        body = {"errors": receipt.errors, "event_id": receipt.event_id}
    else:
        body = {"status": receipt.outcome, "event_id": receipt.event_id}
        if with_outcome and receipt.errors and receipt.errors.get("_ignored"):
            body["reason"] = receipt.errors["_ignored"][0]
    return {"outcome": receipt.outcome, **body} if with_outcome else body

"""The receiving endpoint: raw body -> verify -> judge -> record -> answer.

The signature is checked on the raw bytes before anything is parsed. The answer goes out only after the event
(and, for a won deal, its onboarding) is committed, so whatever we acknowledge is never lost; the DocSpace work
happens later, in the worker.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from onboarding import logs
from onboarding.intake import Receipt, record_delivery
from onboarding.metrics import SIGNATURE_FAILURES, WEBHOOKS
from onboarding.signatures import SignatureError
from onboarding.sources import Source

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/deal-won")
def deal_won():
    """The generic signed "deal won" webhook."""
    return receive(current_app.extensions["onboarding"].sources["generic"])


def receive(source: Source):
    """Handle one delivery from a source."""
    services = current_app.extensions["onboarding"]
    body = request.get_data(cache=False)
    headers = request.headers
    try:
        delivery_id = source.verify(headers, body)
    except SignatureError as error:
        SIGNATURE_FAILURES.labels(source.name, error.code).inc()
        WEBHOOKS.labels(source.name, "unauthorized").inc()
        logs.bind(outcome="unauthorized", reason=str(error), source=source.name)
        return jsonify(error="The request's signature could not be verified.", reason=str(error)), 401
    verdict = source.judge(body)
    kept = {name: value for name in source.headers_to_keep if (value := headers.get(name)) is not None}
    logs.bind(deal_id=verdict.deal_id)
    receipt = record_delivery(services.db, source.name, delivery_id, kept, body, verdict)
    # No line of its own: the request's one log line carries these.
    logs.bind(event_id=receipt.event_id, onboarding_id=receipt.onboarding_id, outcome=receipt.outcome,
              source=source.name)
    WEBHOOKS.labels(source.name, receipt.outcome).inc()
    return answer(receipt)


def answer(receipt: Receipt):
    """The HTTP answer to a receipt."""
    services = current_app.extensions["onboarding"]
    if receipt.outcome in ("created", "duplicate"):
        body = {"onboarding_id": receipt.onboarding_id, "status": receipt.onboarding_status,
                "status_url": services.status_links.url(receipt.onboarding_id),
                "duplicate": receipt.outcome == "duplicate", "event_id": receipt.event_id}
    elif receipt.outcome == "ignored":
        body = {"status": "ignored", "event_id": receipt.event_id}
    elif receipt.http_status == 400:
        body = {"error": " ".join(receipt.errors.get("_body", ["The body is not valid JSON."])),
                "event_id": receipt.event_id}
    else:
        body = {"errors": receipt.errors, "event_id": receipt.event_id}
    return jsonify(body), receipt.http_status

"""The receiving endpoints: raw body -> verify -> judge -> record -> answer, one endpoint per source.

The signature (or the credentials) is checked on the raw bytes before anything is parsed. The answer goes out
only after every event of the request (and, for a won deal, its onboarding) is committed, so whatever we
acknowledge is never lost; the DocSpace work happens later, in the worker. HTTP status codes are chosen here and
nowhere below: sources and intake speak of outcomes.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

from onboarding import logs
from onboarding.bootstrap import Services
from onboarding.intake import Receipt, record_delivery
from onboarding.metrics import SIGNATURE_FAILURES, WEBHOOKS
from onboarding.signatures import SignatureError
from onboarding.sources import Delivery, Inbound, Source, Verdict

bp = Blueprint("webhooks", __name__)

STATUS = {"created": 202, "duplicate": 200, "ignored": 200, "pending": 202}
PROBLEM_STATUS = {"malformed": 400, "invalid": 422}
# Set in the WSGI environ by fastpath.py when it offered the request's delivery to the group commit in vain.
GROUP_COMMIT_TRIED = "onboarding.group_commit_tried"


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
    services = current_app.extensions["onboarding"]
    source = services.sources.get(name)
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
    # The fast path (fastpath.py) offered this delivery to the group commit already: straight to the careful path.
    group = not request.environ.get(GROUP_COMMIT_TRIED)
    if isinstance(held, Delivery):
        return answer(services, record(services, source, inbound, held, source.judge(held.body), group=group))
    receipts = [record(services, source, inbound, delivery, source.judge(delivery.body)) for delivery in held]
    # No line of its own: the request's one log line carries the count.
    logs.bind(outcome="batch", source=source.name)
    return jsonify(events=[brief(services, receipt) for receipt in receipts]), 200


def record(services: Services, source: Source, inbound: Inbound, delivery: Delivery, verdict: Verdict, *,
           group: bool = True, careful: bool = True) -> Receipt | None:
    """Record one judged delivery, its outcome bound to the request's log line and counted.

    group=False skips the group commit (it was tried); careful=False stops after it: None unless the delivery was
    a new deal that it committed.
    """
    kept = {name: value for name in source.headers_to_keep if (value := inbound.headers.get(name)) is not None}
    logs.bind(deal_id=verdict.deal_id)
    receipt = record_delivery(services.db, source.name, delivery.id, kept, delivery.body, verdict, group=group,
                              careful=careful)
    if receipt is None:
        return None
    # No line of its own: the request's one log line carries these.
    logs.bind(event_id=receipt.event_id, onboarding_id=receipt.onboarding_id, outcome=receipt.outcome,
              source=source.name)
    WEBHOOKS.labels(source.name, receipt.outcome).inc()
    return receipt


def answer(services: Services, receipt: Receipt):
    """The HTTP answer to a single delivery's receipt."""
    if receipt.outcome == "rejected":
        if receipt.problem == "malformed":
            body = {"error": " ".join(receipt.errors.get("_body", ["The body is not valid JSON."])),
                    "event_id": receipt.event_id}
        else:
            body = {"errors": receipt.errors, "event_id": receipt.event_id}
        return jsonify(body), PROBLEM_STATUS[receipt.problem]
    return jsonify(brief(services, receipt, with_outcome=False)), STATUS[receipt.outcome]


def brief(services: Services, receipt: Receipt, with_outcome: bool = True) -> dict:
    """What the sender is told about one delivery."""
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

"""What operators do, shared by the console, the admin API and the CLI: retry failed onboardings, re-send what
the CRM was told, replay events. Each action is recorded in the audit with its actor (audit.py)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from onboarding import audit, queue
from onboarding.errors import ServiceError
from onboarding.intake import Receipt, record_delivery, reprocess_event
from onboarding.models import Event, Onboarding
from onboarding.status import StatusLinks
from onboarding.steps import room_of
from onboarding.views import OnboardingFilter, matching_ids

CHUNK = 500


@dataclass(frozen=True)
class Outcome:
    """What an action did, for the operator."""

    action: str  # retried | sent | missing | unchanged | failed
    message: str


def retry_one(db, onboarding_id: str, *, actor: str) -> Outcome:
    """Queue one failed onboarding again, to resume from its failed step."""
    outcome = _retry_one(db, onboarding_id)
    if outcome.action != "missing":
        audit.record(db, actor=actor, action="retry", outcome=outcome.action, onboarding_id=onboarding_id,
                     details={"message": outcome.message})
    return outcome


def _retry_one(db, onboarding_id: str) -> Outcome:
    """retry_one, unaudited."""
    if queue.retry(db, [onboarding_id]):
        return Outcome("retried", "Queued again with a fresh attempt budget; finished steps are not redone.")
    with db.reading() as session:
        onboarding = session.get(Onboarding, onboarding_id)
        if onboarding is None:
            return Outcome("missing", f"No onboarding {onboarding_id}.")
        return Outcome("unchanged", f"The onboarding is {onboarding.status}; only failed onboardings are retried.")


def retry_matching(db, where: OnboardingFilter, *, actor: str) -> list[str]:
    """Queue again every failed onboarding the filter matches; return their ids."""
    ids = matching_ids(db, where)
    retried: list[str] = []
    for start in range(0, len(ids), CHUNK):
        chunk = queue.retry(db, ids[start:start + CHUNK])
        audit.record_many(db, actor=actor, action="retry", outcome="retried", onboarding_ids=chunk,
                          details={"message": "retried with every failed onboarding matching a filter",
                                   "filter": {name: str(value) for name, value in dataclasses.asdict(where).items()
                                              if value is not None}})
        retried += chunk
    return retried


def resend(services, onboarding_id: str, *, actor: str) -> Outcome:
    """Tell the CRM again that a completed onboarding's room is ready: the same callback (same webhook-id, fresh
    timestamp and signature), or the write-back onto the deal again (which finds its note instead of adding one)."""
    outcome = _resend(services, onboarding_id)
    if outcome.action != "missing":
        audit.record(services.db, actor=actor, action="resend", outcome=outcome.action, onboarding_id=onboarding_id,
                     details={"message": outcome.message})
    return outcome


def _resend(services, onboarding_id: str) -> Outcome:
    """resend, unaudited."""
    with services.db.reading() as session:
        onboarding = session.get(Onboarding, onboarding_id)
        if onboarding is None:
            return Outcome("missing", f"No onboarding {onboarding_id}.")
        status = onboarding.status
    if status != "completed":
        return Outcome("unchanged", f"The onboarding is {status}; only a completed onboarding's room can be re-sent.")
    work = queue.load_work(services.db, onboarding_id)
    crm = services.crms.get(work.deal.source)
    if crm is None:
        return Outcome("unchanged", f"The {work.deal.source} CRM is not configured here.")
    try:
        result = crm.write_back.room_ready(work, room_of(work.done), first_try=False)
    except ServiceError as error:
        return Outcome("failed", f"The CRM was not told: {error.message}")
    return Outcome("sent", f"The CRM was told again ({crm.write_back.step}): {result}.")


def replay_event(services, event_id: str, *, actor: str) -> Receipt | None:
    """Judge a recorded event's body again (after a fix) and act on the new verdict; raise LookupError when the
    body was purged."""
    with services.db.reading() as session:
        event = session.get(Event, event_id)
        if event is None:
            return None
        source = services.sources.get(event.source)
        body = event.body
    if body is None or source is None:
        why = (f"the payload of event {event_id} was purged after PAYLOAD_RETENTION_DAYS; it cannot be replayed"
               if body is None else f"the {event.source} source is not configured here")
        audit.record(services.db, actor=actor, action="replay-event", outcome="refused", event_id=event_id,
                     details={"message": why})
        raise LookupError(why)
    receipt = reprocess_event(services.db, event_id, source.judge(body))
    audit.record(services.db, actor=actor, action="replay-event", outcome=receipt.outcome, event_id=event_id,
                 onboarding_id=receipt.onboarding_id, details={"errors": receipt.errors} if receipt.errors else None)
    return receipt


def replay_file(services, path: Path, *, actor: str) -> Receipt:
    """Process a saved payload through the generic source's validation and the usual dedupe (no signature)."""
    body = path.read_bytes()
    # The same file replayed twice is the same delivery.
    delivery_id = "replay-" + hashlib.sha256(body).hexdigest()[:40]
    source = services.sources.get("generic")
    if source is None:
        raise LookupError("replay reads generic deal.won payloads, and the generic source is off (set "
                          "WEBHOOK_SECRETS); a CRM's recorded events are replayed with replay-event")
    receipt = record_delivery(services.db, source.name, delivery_id, {"replayed-from": path.name[:200]}, body,
                              source.judge(body))
    audit.record(services.db, actor=actor, action="replay-file", outcome=receipt.outcome, event_id=receipt.event_id,
                 onboarding_id=receipt.onboarding_id, details={"file": path.name[:200]})
    return receipt


def receipt_dict(receipt: Receipt, status_links: StatusLinks) -> dict:
    """A receipt as the admin API and the CLI show it."""
    shown = {"outcome": receipt.outcome, "event_id": receipt.event_id, "onboarding_id": receipt.onboarding_id,
             "status": receipt.onboarding_status, "errors": receipt.errors}
    if receipt.onboarding_id:
        shown["status_url"] = status_links.url(receipt.onboarding_id)
    return shown

"""What operators do, shared by the admin API and the CLI: retry failed onboardings, replay events."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from onboarding import queue
from onboarding.intake import Receipt, record_delivery, reprocess_event
from onboarding.models import Event, Onboarding
from onboarding.status import StatusLinks
from onboarding.views import OnboardingFilter, matching_ids

CHUNK = 500


@dataclass(frozen=True)
class Outcome:
    """What an action did, for the operator."""

    action: str  # retried | missing | unchanged
    message: str


def retry_one(db, onboarding_id: str) -> Outcome:
    """Queue one failed onboarding again, to resume from its failed step."""
    if queue.retry(db, [onboarding_id]):
        return Outcome("retried", "Queued again with a fresh attempt budget; finished steps are not redone.")
    with db.reading() as session:
        onboarding = session.get(Onboarding, onboarding_id)
        if onboarding is None:
            return Outcome("missing", f"No onboarding {onboarding_id}.")
        return Outcome("unchanged", f"The onboarding is {onboarding.status}; only failed onboardings are retried.")


def retry_matching(db, where: OnboardingFilter) -> list[str]:
    """Queue again every failed onboarding the filter matches; return their ids."""
    ids = matching_ids(db, where)
    retried: list[str] = []
    for start in range(0, len(ids), CHUNK):
        retried += queue.retry(db, ids[start:start + CHUNK])
    return retried


def replay_event(services, event_id: str) -> Receipt | None:
    """Judge a recorded event's body again (after a fix) and act on the new verdict."""
    with services.db.reading() as session:
        event = session.get(Event, event_id)
        if event is None:
            return None
        source = services.sources[event.source]
        body = event.body
    return reprocess_event(services.db, event_id, source.judge(body))


def replay_file(services, path: Path) -> Receipt:
    """Process a saved payload through the generic source's validation and the usual dedupe (no signature)."""
    body = path.read_bytes()
    # The same file replayed twice is the same delivery.
    delivery_id = "replay-" + hashlib.sha256(body).hexdigest()[:40]
    source = services.sources.get("generic")
    if source is None:
        raise LookupError("replay reads generic deal.won payloads, and the generic source is off (set "
                          "WEBHOOK_SECRETS); a CRM's recorded events are replayed with replay-event")
    return record_delivery(services.db, source.name, delivery_id, {"replayed-from": path.name[:200]}, body,
                           source.judge(body))


def receipt_dict(receipt: Receipt, status_links: StatusLinks) -> dict:
    """A receipt as the admin API and the CLI show it."""
    shown = {"outcome": receipt.outcome, "event_id": receipt.event_id, "onboarding_id": receipt.onboarding_id,
             "status": receipt.onboarding_status, "errors": receipt.errors}
    if receipt.onboarding_id:
        shown["status_url"] = status_links.url(receipt.onboarding_id)
    return shown

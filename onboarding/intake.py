"""Recording a delivery and, for a won deal, creating its onboarding: one short transaction.

Dedupe lives in the database's unique constraints, so it holds across processes and machines: one event row per
(source, delivery id) and one onboarding per (source, deal id). A second delivery of either answers with the
original onboarding. Deliveries that were verified but refused are recorded too, so they can be replayed; so are
events left pending (a CRM event whose meaning the worker must ask the CRM about), which resolve_pending judges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from onboarding.db import Database
from onboarding.groupcommit import group_commit
from onboarding.models import Event, Onboarding, new_id, utcnow
from onboarding.sources import Verdict

ATTEMPTS_ON_CONFLICT = 3


@dataclass(frozen=True)
class Receipt:
    """What became of a delivery: the answer the sender gets and the rows it touched."""

    outcome: str  # created | duplicate | ignored | pending | rejected
    event_id: str
    onboarding_id: str | None = None
    onboarding_status: str | None = None
    problem: str | None = None  # rejected: malformed | invalid
    errors: dict | None = None


def record_delivery(db: Database, source: str, delivery_id: str, headers: Mapping[str, str], body: bytes,
                    verdict: Verdict, *, group: bool = True, careful: bool = True) -> Receipt | None:
    """Record one verified delivery and act on its verdict; safe to call concurrently for the same deal.

    A new deal is offered to the group commit first (unless group is False: it was, already), and whatever it
    does not take goes the careful way (unless careful is False: then the answer is None).
    """
    if group and verdict.outcome == "accepted":
        receipt = _insert_new_deal(db, source, delivery_id, dict(headers), body, verdict)
        if receipt is not None:
            return receipt
    if not careful:
        return None
    for attempt in range(ATTEMPTS_ON_CONFLICT):
        try:
            with db.transaction() as session:
                return _record(session, source, delivery_id, dict(headers), body, verdict)
        except IntegrityError:
            # Another process inserted the same delivery or deal between our look and our insert;
            # the next pass finds its row.
            if attempt == ATTEMPTS_ON_CONFLICT - 1:
                raise
    raise AssertionError("unreachable")


def _insert_new_deal(db: Database, source: str, delivery_id: str, headers: dict, body: bytes,
                     verdict: Verdict) -> Receipt | None:
    """The common case: a new delivery of a new deal, committed with its neighbours. None if either is known."""
    now = utcnow()
    deal = verdict.deal
    onboarding_id, event_id = new_id(), new_id()
    inserted = group_commit(db).insert(
        dict(id=onboarding_id, **deal.columns(), status="queued", attempts=0, run_at=now, created_at=now,
             updated_at=now),
        dict(id=event_id, source=source, delivery_id=delivery_id, received_at=now, last_received_at=now,
             deliveries=1, headers=headers, body=body, outcome="accepted", event_type=verdict.event_type,
             deal_id=deal.deal_id, onboarding_id=onboarding_id))
    if not inserted:
        return None  # a repeat, or the shared commit failed: the careful path finds the original or says why
    return Receipt("created", event_id, onboarding_id, "queued")


def reprocess_event(db: Database, event_id: str, verdict: Verdict) -> Receipt | None:
    """Act again on a recorded event with a fresh verdict (a replay after the plan or schema was fixed)."""
    with db.reading() as session:
        event = session.get(Event, event_id)
        if event is None:
            return None
        source, delivery_id, headers, body = event.source, event.delivery_id, event.headers, event.body
    return record_delivery(db, source, delivery_id, headers, body, verdict)


def _record(session, source: str, delivery_id: str, headers: dict, body: bytes, verdict: Verdict) -> Receipt:
    """The body of the recording transaction."""
    now = utcnow()
    # FOR UPDATE: concurrent redeliveries of one delivery id take turns (PostgreSQL; SQLite writers always do).
    event = session.scalar(select(Event).where(Event.source == source, Event.delivery_id == delivery_id)
                           .with_for_update())
    if event is None:
        event = Event(source=source, delivery_id=delivery_id, headers=headers, body=body, received_at=now,
                      last_received_at=now, deliveries=1, outcome=verdict.outcome)
        session.add(event)
    else:
        event.deliveries += 1
        event.last_received_at = now
        if event.onboarding_id is not None:
            onboarding = session.get(Onboarding, event.onboarding_id)
            return _answer(event, onboarding, "duplicate")
        # A delivery refused or ignored before is judged afresh: the cause may have been fixed since.
        event.headers, event.body, event.body_purged_at = headers, body, None
    event.event_type = verdict.event_type
    event.deal_id = verdict.deal_id
    event.errors = verdict.errors
    if verdict.outcome != "accepted":
        event.outcome = verdict.outcome
        session.flush()
        return Receipt(verdict.outcome, event.id, problem=verdict.problem, errors=verdict.errors)

    deal = verdict.deal
    onboarding = session.scalar(select(Onboarding).where(Onboarding.source == deal.source,
                                                         Onboarding.account_id == deal.account_id,
                                                         Onboarding.deal_id == deal.deal_id))
    if onboarding is not None:
        event.outcome = "duplicate"
        event.onboarding_id = onboarding.id
        return _answer(event, onboarding, "duplicate")
    onboarding = Onboarding(**deal.columns(), status="queued", attempts=0, run_at=now, created_at=now,
                            updated_at=now)
    session.add(onboarding)
    session.flush()
    event.outcome = "accepted"
    event.onboarding_id = onboarding.id
    session.flush()
    return _answer(event, onboarding, "created")


def _answer(event: Event, onboarding: Onboarding, outcome: str) -> Receipt:
    """A receipt naming an onboarding."""
    return Receipt(outcome, event.id, onboarding.id, onboarding.status)


def pending_events(db: Database, limit: int) -> list[tuple[str, str, bytes]]:
    """The oldest events left pending: (event id, source, body) each."""
    with db.reading() as session:
        return [tuple(row) for row in session.execute(
            select(Event.id, Event.source, Event.body).where(Event.outcome == "pending")
            .order_by(Event.received_at).limit(limit))]

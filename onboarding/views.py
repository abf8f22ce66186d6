"""Read models shared by the admin API, the CLI and status links: onboardings and events as JSON-able dicts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from onboarding.db import Database
from onboarding.models import Event, Onboarding, StepResult

MAX_PAGE = 500


@dataclass(frozen=True)
class OnboardingFilter:
    """Which onboardings an operator means: by status, deal, client and creation time."""

    status: str | None = None
    deal_id: str | None = None
    client_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    source: str | None = None
    # Operators' search: an exact deal id or room id, or part of the deal title, client name or client e-mail.
    text: str | None = None

    def apply(self, query):
        """The query narrowed to the filter."""
        if self.status:
            query = query.where(Onboarding.status == self.status)
        if self.source:
            query = query.where(Onboarding.source == self.source)
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(or_(Onboarding.deal_id == self.text, Onboarding.room_id == self.text,
                                    *(column.ilike(pattern, escape="\\") for column in (
                                        Onboarding.deal_title, Onboarding.client_name, Onboarding.client_email))))
        if self.deal_id:
            query = query.where(Onboarding.deal_id == self.deal_id)
        if self.client_id:
            query = query.where(Onboarding.client_id == self.client_id)
        if self.created_after:
            query = query.where(Onboarding.created_at >= self.created_after)
        if self.created_before:
            query = query.where(Onboarding.created_at < self.created_before)
        return query


def matching_ids(db: Database, where: OnboardingFilter) -> list[str]:
    """Every onboarding id the filter matches (for bulk actions, which cover all rows, not a page)."""
    with db.reading() as session:
        return list(session.scalars(where.apply(select(Onboarding.id)).order_by(Onboarding.created_at)))


def list_onboardings(db: Database, where: OnboardingFilter, limit: int = 50, offset: int = 0) -> dict:
    """A page of onboardings, newest first."""
    limit = max(1, min(limit, MAX_PAGE))
    with db.reading() as session:
        rows = session.scalars(where.apply(select(Onboarding))
                               .order_by(Onboarding.created_at.desc(), Onboarding.id)
                               .offset(offset).limit(limit + 1)).all()
        room_steps = _room_results(session, [row.id for row in rows[:limit]])
        items = [_brief(row, room_steps.get(row.id, {})) for row in rows[:limit]]
    return {"onboardings": items, "next_offset": offset + limit if len(rows) > limit else None}


def onboarding_summary(db: Database, onboarding_id: str, step_names: Callable[[str], list[str]],
                       detailed: bool = True) -> dict | None:
    """One onboarding with every step of its plan (done, failed or pending); detailed adds results and events.
    step_names gives the planned steps of an onboarding from a source."""
    with db.reading() as session:
        onboarding = session.get(Onboarding, onboarding_id)
        if onboarding is None:
            return None
        saved = {step.name: step for step in session.scalars(
            select(StepResult).where(StepResult.onboarding_id == onboarding_id))}
        summary = _brief(onboarding, {name: step.result for name, step in saved.items() if step.status == "done"})
        planned = step_names(onboarding.source)
        names = planned + [name for name in saved if name not in planned]  # steps the plan no longer has
        summary["steps"] = [_step(name, saved.get(name), detailed) for name in names]
        if detailed:
            summary.update(manager_user_id=onboarding.manager_user_id, client_user_id=onboarding.client_user_id,
                           claimed_by=onboarding.claimed_by,
                           lease_expires_at=_iso(onboarding.lease_expires_at),
                           events=[event_summary(event) for event in session.scalars(
                               select(Event).where(Event.onboarding_id == onboarding_id)
                               .order_by(Event.received_at))])
        return summary


def list_events(db: Database, outcome: str | None = None, deal_id: str | None = None, limit: int = 50,
                offset: int = 0) -> dict:
    """A page of recorded events, newest first."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Event)
    if outcome:
        query = query.where(Event.outcome == outcome)
    if deal_id:
        query = query.where(Event.deal_id == deal_id)
    with db.reading() as session:
        rows = session.scalars(query.order_by(Event.received_at.desc(), Event.id).offset(offset)
                               .limit(limit + 1)).all()
        return {"events": [event_summary(row) for row in rows[:limit]],
                "next_offset": offset + limit if len(rows) > limit else None}


def event_summary(event: Event) -> dict:
    """One recorded event, without its body."""
    return {"event_id": event.id, "source": event.source, "delivery_id": event.delivery_id,
            "outcome": event.outcome, "event_type": event.event_type, "deal_id": event.deal_id,
            "onboarding_id": event.onboarding_id, "errors": event.errors, "deliveries": event.deliveries,
            "received_at": _iso(event.received_at), "last_received_at": _iso(event.last_received_at),
            "payload_purged": event.body_purged_at is not None, "payload_purged_at": _iso(event.body_purged_at)}


def _brief(onboarding: Onboarding, results: dict[str, dict]) -> dict:
    """The fields of an onboarding every view shows."""
    room = results.get("room") or {}
    link = results.get("link") or {}
    return {
        "onboarding_id": onboarding.id,
        "status": onboarding.status,
        "source": onboarding.source,
        "account_id": onboarding.account_id or None,
        "deal": {"id": onboarding.deal_id, "title": onboarding.deal_title},
        # A CRM deal's client is known once its enrichment has run (the row is filled in then).
        "client": {"id": onboarding.client_id, "name": onboarding.client_name, "email": onboarding.client_email},
        "room": {"id": room.get("room_id"), "title": room.get("title"), "url": link.get("url")} if room else None,
        "attempts": onboarding.attempts,
        "last_error": onboarding.last_error,
        "next_attempt_at": _iso(onboarding.run_at) if onboarding.status == "queued" else None,
        "created_at": _iso(onboarding.created_at),
        "updated_at": _iso(onboarding.updated_at),
        "completed_at": _iso(onboarding.completed_at),
    }


def _step(name: str, saved: StepResult | None, detailed: bool) -> dict:
    """One step's state."""
    if saved is None:
        return {"name": name, "status": "pending", "attempts": 0}
    step = {"name": name, "status": saved.status, "attempts": saved.attempts, "error": saved.error,
            "started_at": _iso(saved.started_at), "finished_at": _iso(saved.finished_at),
            "duration_ms": saved.duration_ms}
    if detailed:
        step["result"] = saved.result
    return step


def _room_results(session, onboarding_ids: list[str]) -> dict[str, dict]:
    """The saved room and link results of several onboardings, for list views."""
    if not onboarding_ids:
        return {}
    rows = session.execute(select(StepResult.onboarding_id, StepResult.name, StepResult.result).where(
        StepResult.onboarding_id.in_(onboarding_ids), StepResult.name.in_(("room", "link")),
        StepResult.status == "done")).all()
    results: dict[str, dict] = {}
    for onboarding_id, name, result in rows:
        results.setdefault(onboarding_id, {})[name] = result
    return results


def _iso(moment: datetime | None) -> str | None:
    """A naive-UTC timestamp as ISO-8601 with a Z."""
    return moment.isoformat(timespec="seconds") + "Z" if moment else None

"""The audit: every operator action (console, admin API, CLI) recorded with who, when, what and what came of it.

Who is an actor string: `console:<session>` for a signed-in console session (a random id made at sign-in; the
token itself is never stored), `api-token` for the admin API, `cli:<user>` for a command run in a shell, and
`address:<ip>` for console sign-in attempts (which also serve to count failed sign-ins per address).
"""

from __future__ import annotations

import getpass
from datetime import datetime

from sqlalchemy import func, insert, select

from onboarding.db import Database
from onboarding.models import AuditEntry, new_id, utcnow

API_ACTOR = "api-token"
ENTRIES = AuditEntry.__table__


def cli_actor() -> str:
    """The actor of a CLI command: the user running it."""
    try:
        return f"cli:{getpass.getuser()}"[:100]
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "cli:unknown"


def record(db: Database, *, actor: str, action: str, outcome: str, onboarding_id: str | None = None,
           event_id: str | None = None, details: dict | None = None) -> None:
    """Record one action."""
    with db.writing() as connection:
        connection.execute(insert(ENTRIES).values(
            id=new_id(), at=utcnow(), actor=actor[:100], action=action[:50], outcome=outcome[:50],
            onboarding_id=onboarding_id, event_id=event_id, details=details))


def record_many(db: Database, *, actor: str, action: str, outcome: str, onboarding_ids: list[str],
                details: dict | None = None) -> None:
    """Record one action on each of several onboardings (a bulk retry), in one transaction."""
    if not onboarding_ids:
        return
    now = utcnow()
    with db.writing() as connection:
        connection.execute(insert(ENTRIES), [
            {"id": new_id(), "at": now, "actor": actor[:100], "action": action[:50], "outcome": outcome[:50],
             "onboarding_id": onboarding_id, "event_id": None, "details": details}
            for onboarding_id in onboarding_ids])


def entries_for(db: Database, onboarding_id: str, event_ids: list[str]) -> list[dict]:
    """The actions on an onboarding or its events, oldest first."""
    where = AuditEntry.onboarding_id == onboarding_id
    if event_ids:
        where = where | AuditEntry.event_id.in_(event_ids)
    with db.reading() as session:
        return [{"at": entry.at.isoformat(timespec="seconds") + "Z", "actor": entry.actor, "action": entry.action,
                 "outcome": entry.outcome, "event_id": entry.event_id, "details": entry.details}
                for entry in session.scalars(select(AuditEntry).where(where).order_by(AuditEntry.at))]


def recent_count(db: Database, actor: str, action: str, outcome: str, since: datetime) -> int:
    """How many times an actor's action had this outcome since a moment (e.g. failed sign-ins)."""
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.actor == actor, AuditEntry.action == action, AuditEntry.outcome == outcome,
            AuditEntry.at >= since))

"""The onboarding queue in the database: claims under a lease, fenced writes, and operators' retries.

A worker claims an onboarding by giving it a fresh claim token and a lease. Every later write of that run
(a step's result, the final status) happens only WHERE claim_token still matches: a worker whose lease expired
and whose onboarding was claimed again cannot overwrite the new owner's work. An expired lease makes the
onboarding claimable again, so a crashed worker's onboarding is picked up by any other.

PostgreSQL claims with SELECT ... FOR UPDATE SKIP LOCKED, so workers on many machines never wait for or take the
same row. SQLite has no row locks: its writing transactions (BEGIN IMMEDIATE, see db.py) run one at a time,
which makes the same select-then-update correct there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from onboarding.db import Database
from onboarding.domain import CLIENT_STEP, MANAGER_STEP, Deal
from onboarding.models import Onboarding, StepResult, utcnow

RETRYABLE_STATUSES = ("failed",)
STEPS = StepResult.__table__

# The statements a worker runs for every step, built once: building an UPDATE with SQLAlchemy costs several
# times more than running it. Their bound values are named apart from every column (SQLAlchemy reserves those).
_OWNED = and_(Onboarding.id == bindparam("onboarding"), Onboarding.claim_token == bindparam("token"))
_TOUCH = update(Onboarding).where(_OWNED).values(updated_at=bindparam("now"))
_TOUCH_AND_RENEW = _TOUCH.values(lease_expires_at=bindparam("lease_end"))
_CLAIM = update(Onboarding).where(Onboarding.id == bindparam("onboarding")).values(
    status="running", claim_token=bindparam("token"), claimed_by=bindparam("worker"),
    attempts=bindparam("attempt"), lease_expires_at=bindparam("lease_end"), updated_at=bindparam("now"))
_THIS_STEP = and_(STEPS.c.onboarding_id == bindparam("onboarding"), STEPS.c.name == bindparam("step"))
_STEP_STARTED = update(STEPS).where(_THIS_STEP).values(status="started", attempts=STEPS.c.attempts + 1,
                                                       finished_at=bindparam("now"))
_FIRST_STEP_STARTED = insert(STEPS).values(onboarding_id=bindparam("onboarding"), name=bindparam("step"),
                                           status="started", attempts=1, started_at=bindparam("now"),
                                           finished_at=bindparam("now"))
_STEP_ENDED_VALUES = {"status": bindparam("step_status"), "result": bindparam("step_result"),
                      "error": bindparam("step_error"), "started_at": bindparam("step_started"),
                      "finished_at": bindparam("now"), "duration_ms": bindparam("step_ms")}
# An attempt recorded when it began (status "started") is not counted twice.
_STEP_ENDED = update(STEPS).where(_THIS_STEP).values(
    attempts=STEPS.c.attempts + case((STEPS.c.status == "started", 0), else_=1), **_STEP_ENDED_VALUES)
# What enrichment found, and the room, are copied onto the onboarding row, so lists and searches show them.
_CLIENT_FOUND = update(Onboarding).where(_OWNED).values(
    client_id=bindparam("client_id"), client_name=bindparam("client_name"), client_email=bindparam("client_email"),
    deal_title=func.coalesce(bindparam("deal_title"), Onboarding.deal_title))
_MANAGER_CHOSEN = update(Onboarding).where(_OWNED).values(manager_user_id=bindparam("manager"))
_ROOM_FOUND = update(Onboarding).where(_OWNED).values(room_id=bindparam("room"))
_FIRST_STEP_ENDED = insert(STEPS).values(onboarding_id=bindparam("onboarding"), name=bindparam("step"), attempts=1,
                                         **_STEP_ENDED_VALUES)


@dataclass(frozen=True)
class Claim:
    """One worker's hold on one onboarding, valid while the token matches."""

    onboarding_id: str
    token: str
    attempts: int


@dataclass(frozen=True)
class Work:
    """What a run needs to know about its onboarding: the deal (with its client, if known) and the steps done."""

    onboarding_id: str
    deal: Deal
    created_at: datetime
    done: dict[str, dict]
    step_attempts: dict[str, int]


def _claimable(now: datetime):
    """Queued and due, or running under a lease that has expired."""
    return or_(and_(Onboarding.status == "queued", Onboarding.run_at <= now),
               and_(Onboarding.status == "running", Onboarding.lease_expires_at < now))


def has_work(db: Database) -> bool:
    """Whether anything is claimable now; a cheap read that spares idle workers the write lock."""
    with db.reading() as session:
        return session.scalar(select(Onboarding.id).where(_claimable(utcnow())).limit(1)) is not None


def claim(db: Database, worker: str, lease_seconds: float, limit: int) -> list[Claim]:
    """Claim up to limit onboardings for this worker."""
    now = utcnow()
    with db.writing() as connection:
        rows = connection.execute(
            select(Onboarding.id, Onboarding.attempts)
            .where(_claimable(now))
            .order_by(Onboarding.run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claims = [Claim(onboarding_id, uuid.uuid4().hex, attempts + 1) for onboarding_id, attempts in rows]
        if claims:
            lease_end = now + timedelta(seconds=lease_seconds)
            connection.execute(_CLAIM, [{"onboarding": claim.onboarding_id, "token": claim.token,
                                         "worker": worker[:100], "attempt": claim.attempts, "lease_end": lease_end,
                                         "now": now} for claim in claims])
        return claims


def load_work(db: Database, onboarding_id: str) -> Work:
    """The onboarding and its saved step results."""
    with db.reading() as session:
        onboarding = session.get(Onboarding, onboarding_id)
        steps = session.scalars(select(StepResult).where(StepResult.onboarding_id == onboarding_id)).all()
        return Work(
            onboarding_id=onboarding.id, deal=Deal.from_row(onboarding), created_at=onboarding.created_at,
            done={step.name: step.result for step in steps if step.status == "done"},
            step_attempts={step.name: step.attempts for step in steps},
        )


def _hold(connection: Connection, claim: Claim, lease_seconds: float | None = None) -> bool:
    """Inside a transaction: whether the claim still holds (renewing its lease if asked); locks the row."""
    now = utcnow()
    parameters = {"onboarding": claim.onboarding_id, "token": claim.token, "now": now}
    if lease_seconds is None:
        return connection.execute(_TOUCH, parameters).rowcount == 1
    parameters["lease_end"] = now + timedelta(seconds=lease_seconds)
    return connection.execute(_TOUCH_AND_RENEW, parameters).rowcount == 1


def renew(db: Database, claim: Claim, lease_seconds: float) -> bool:
    """Extend a claim's lease; False when it was lost."""
    with db.writing() as connection:
        return _hold(connection, claim, lease_seconds)


def record_attempt(db: Database, claim: Claim, name: str, lease_seconds: float) -> bool:
    """Note, before a step creates something, that it is trying; False, and nothing noted, if the claim was lost."""
    now = utcnow()
    with db.writing() as connection:
        if not _hold(connection, claim, lease_seconds):
            return False
        parameters = {"onboarding": claim.onboarding_id, "step": name, "now": now}
        if connection.execute(_STEP_STARTED, parameters).rowcount == 0:
            connection.execute(_FIRST_STEP_STARTED, parameters)
        return True


@dataclass(frozen=True)
class StepOutcome:
    """How one run of one step ended: its result, or the error it met."""

    name: str
    result: dict | None
    error: dict | None
    started_at: datetime


def save_steps(db: Database, claim: Claim, outcomes: list[StepOutcome], lease_seconds: float) -> bool:
    """Save the outcomes of steps that ended together, in one transaction under the claim; False, and nothing
    saved, when the claim was lost."""
    finished = utcnow()
    with db.writing() as connection:
        if not _hold(connection, claim, lease_seconds):
            return False
        for outcome in outcomes:
            parameters = {"onboarding": claim.onboarding_id, "step": outcome.name, "now": finished,
                          "step_status": "done" if outcome.error is None else "failed",
                          "step_result": outcome.result, "step_error": outcome.error,
                          "step_started": outcome.started_at,
                          "step_ms": int((finished - outcome.started_at).total_seconds() * 1000)}
            if connection.execute(_STEP_ENDED, parameters).rowcount == 0:
                connection.execute(_FIRST_STEP_ENDED, parameters)
            if outcome.error is None:
                _copy_to_row(connection, claim, outcome)
        return True


def _copy_to_row(connection: Connection, claim: Claim, outcome: StepOutcome) -> None:
    """Copy what an enrichment step found, or the room, onto the onboarding row."""
    owned = {"onboarding": claim.onboarding_id, "token": claim.token}
    if outcome.name == CLIENT_STEP:
        found = outcome.result
        connection.execute(_CLIENT_FOUND, {**owned, "client_id": found["id"], "client_name": found["name"],
                                           "client_email": found["email"], "deal_title": found.get("deal_title")})
    elif outcome.name == MANAGER_STEP:
        connection.execute(_MANAGER_CHOSEN, {**owned, "manager": outcome.result["user_id"]})
    elif outcome.name == "room":
        connection.execute(_ROOM_FOUND, {**owned, "room": str(outcome.result["room_id"])})


def finish(db: Database, claim: Claim, status: str, *, last_error: dict | None = None,
           run_at: datetime | None = None, attempts_delta: int = 0) -> bool:
    """End a run: completed, failed, or queued again (for a retry at run_at); False when the claim was lost."""
    now = utcnow()
    values: dict = {"status": status, "claim_token": None, "lease_expires_at": None, "updated_at": now,
                    "attempts": Onboarding.attempts + attempts_delta}
    if status == "completed":
        values.update(completed_at=now, last_error=None)
    if last_error is not None:
        values["last_error"] = last_error
    if run_at is not None:
        values["run_at"] = run_at
    with db.writing() as connection:
        result = connection.execute(update(Onboarding).where(Onboarding.id == claim.onboarding_id,
                                                             Onboarding.claim_token == claim.token).values(**values))
        return result.rowcount == 1


def retry(db: Database, onboarding_ids: list[str]) -> list[str]:
    """Queue failed onboardings again, from their failed step, with a fresh attempt budget; return those queued."""
    now = utcnow()
    with db.writing() as connection:
        ids = connection.execute(select(Onboarding.id).where(Onboarding.id.in_(onboarding_ids),
                                                             Onboarding.status.in_(RETRYABLE_STATUSES))).scalars().all()
        if ids:
            connection.execute(update(Onboarding).where(Onboarding.id.in_(ids)).values(
                status="queued", run_at=now, attempts=0, updated_at=now, completed_at=None))
        return list(ids)


def queue_stats(db: Database) -> dict:
    """Onboardings by status, how many wait for a worker now, and how long the oldest has waited."""
    now = utcnow()
    with db.reading() as session:
        by_status = dict(session.execute(select(Onboarding.status, func.count()).group_by(Onboarding.status)).all())
        ready, oldest = session.execute(
            select(func.count(), func.min(Onboarding.run_at)).where(_claimable(now))).one()
    return {"by_status": by_status, "ready": ready,
            "oldest_ready_seconds": max(0.0, (now - oldest).total_seconds()) if oldest else 0.0}

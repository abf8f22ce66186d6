"""The tables: received events, onboardings and the saved result of each onboarding step.

The schema itself is created only by the Alembic migrations in migrations/; these classes must match them
(tests/test_migrations.py compares the two).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from onboarding.entropy import random_bytes


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo: every timestamp in the database is naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    """An identifier for an event or an onboarding: a UUIDv7 (RFC 9562) as 32 hex digits.

    It starts with the time in milliseconds, so new rows go to the end of the primary key's index instead of a
    random page of it: a batch of new deals touches a few pages, not one per deal.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(random_bytes(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the RFC 9562 variant
    return f"{value:032x}"


class Base(DeclarativeBase):
    """The declarative base of the tables."""


class Event(Base):
    """One delivery id received from a source, with its raw body and what became of it."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("source", "delivery_id", name="uq_events_source_delivery"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow, index=True)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    headers: Mapped[dict] = mapped_column(JSON)
    # The raw body, until PAYLOAD_RETENTION_DAYS have passed (it holds client e-mails): then None, and when.
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    body_purged_at: Mapped[datetime | None] = mapped_column(DateTime())
    # accepted | duplicate | ignored | rejected | pending (a CRM event the worker still has to judge)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    event_type: Mapped[str | None] = mapped_column(String(100))
    deal_id: Mapped[str | None] = mapped_column(String(100), index=True)
    errors: Mapped[dict | None] = mapped_column(JSON)
    onboarding_id: Mapped[str | None] = mapped_column(ForeignKey("onboardings.id"), index=True)


# The onboardings' columns a new onboarding leaves empty, filled once a worker claims it or its room exists.
FILLED_LATER = ("claimed_by", "lease_expires_at", "room_id")


class Onboarding(Base):
    """The work of preparing one deal's room, claimed by one worker at a time under a lease."""

    __tablename__ = "onboardings"
    __table_args__ = (
        UniqueConstraint("source", "account_id", "deal_id", name="uq_onboardings_source_account_deal"),
        Index("ix_onboardings_status_run_at", "status", "run_at"),
        # Columns a new onboarding leaves empty: only filled rows are indexed (every query on them compares a value),
        # so the insert of an accepted deal writes to none of these.
        *(Index(f"ix_onboardings_{column}", column, sqlite_where=text(f"{column} IS NOT NULL"),
                postgresql_where=text(f"{column} IS NOT NULL")) for column in FILLED_LATER),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The deal (domain.Deal): a CRM deal's client and manager stay empty until its enrichment steps find them.
    source: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(100), default="", server_default="")
    deal_id: Mapped[str] = mapped_column(String(100), index=True)
    deal_title: Mapped[str | None] = mapped_column(String(300))
    client_id: Mapped[str | None] = mapped_column(String(100), index=True)
    client_name: Mapped[str | None] = mapped_column(String(300))
    client_email: Mapped[str | None] = mapped_column(String(320))
    client_user_id: Mapped[str | None] = mapped_column(String(36))
    manager_user_id: Mapped[str | None] = mapped_column(String(36))
    # queued | running | completed | failed
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    last_error: Mapped[dict | None] = mapped_column(JSON)
    # The DocSpace room, once the room step has it (for operators' searches).
    room_id: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime())


class AuditEntry(Base):
    """One operator action, from the console, the admin API or the CLI: who, when, what, and what came of it."""

    __tablename__ = "audit_entries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow, index=True)
    # console:<session> | api-token | cli:<user>
    actor: Mapped[str] = mapped_column(String(100))
    # retry | retry-matching | replay-event | replay-file | resend | purge
    action: Mapped[str] = mapped_column(String(50))
    onboarding_id: Mapped[str | None] = mapped_column(String(32), index=True)
    event_id: Mapped[str | None] = mapped_column(String(32), index=True)
    outcome: Mapped[str] = mapped_column(String(50))
    details: Mapped[dict | None] = mapped_column(JSON)


class StepResult(Base):
    """What one step of one onboarding produced (or how it last failed)."""

    __tablename__ = "onboarding_steps"

    onboarding_id: Mapped[str] = mapped_column(ForeignKey("onboardings.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(400), primary_key=True)
    # done | failed
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[dict | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class WorkerEntry(Base):
    """A worker process that is (or was) alive: where it runs and its last heartbeat."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # host:pid, as onboardings' claimed_by
    host: Mapped[str] = mapped_column(String(100), index=True)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    running: Mapped[int] = mapped_column(Integer, default=0)  # onboardings it runs now

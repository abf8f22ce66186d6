"""Payload retention: raw event bodies hold client e-mails, so they are emptied after PAYLOAD_RETENTION_DAYS.

Only the body goes: the event's metadata (source, delivery id, outcome, deal id, errors), its onboarding and the
onboarding's steps stay, so operators still see what happened. Each worker purges once at start and then daily;
`flask --app wsgi purge` does it on demand.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select, update

from onboarding import audit
from onboarding.db import Database
from onboarding.models import Event, utcnow

log = logging.getLogger("onboarding.retention")

BATCH = 500
INTERVAL_SECONDS = 24 * 3600


def purge_payloads(db: Database, older_than_days: int, now: datetime | None = None) -> int:
    """Empty the bodies of events received more than older_than_days ago; return how many were emptied."""
    now = now or utcnow()
    cutoff = now - timedelta(days=older_than_days)
    purged = 0
    while True:
        # A short transaction per batch: the webhooks' writes wait for one batch at most, never for the whole purge.
        with db.writing() as connection:
            ids = connection.execute(
                select(Event.id)
                .where(Event.received_at < cutoff, Event.body.is_not(None),
                       # A pending event still waits for its CRM to judge its body (pending.py): keep it.
                       Event.outcome != "pending")
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).scalars().all()
            if ids:
                connection.execute(update(Event).where(Event.id.in_(ids)).values(body=None, body_purged_at=now))
        purged += len(ids)
        if len(ids) < BATCH:
            return purged


def purge_daily(db: Database, older_than_days: int, stopping: threading.Event) -> None:
    """Purge old payloads now and then every day, until stopping is set (a thread of the worker)."""
    while True:
        try:
            purged = purge_payloads(db, older_than_days)
            log.info("purged %s payload(s) older than %s days", purged, older_than_days,
                     extra={"outcome": "purged", "count": purged})
        except Exception:
            # The database is away: the next period tries again; the worker's own work goes on meanwhile.
            log.exception("cannot purge old payloads; trying again in %s s", INTERVAL_SECONDS)
        if stopping.wait(INTERVAL_SECONDS):
            return


@click.command("purge")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Purge payloads older than this many days (default: PAYLOAD_RETENTION_DAYS).")
@with_appcontext
def purge_command(days: int | None) -> None:
    """Empty the raw payloads of old events (they hold client e-mails); their metadata stays."""
    services = current_app.extensions["onboarding"]
    days = days or services.settings.payload_retention_days
    purged = purge_payloads(services.db, days)
    audit.record(services.db, actor=audit.cli_actor(), action="purge", outcome="purged",
                 details={"days": days, "purged": purged})
    click.echo(f"purged {purged} payload(s) older than {days} days")


def init_app(app) -> None:
    """Register the purge command on the app's CLI."""
    app.cli.add_command(purge_command)

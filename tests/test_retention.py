"""Payload retention: old bodies emptied, everything else kept, on demand and daily in the worker (both engines)."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from onboarding import operations, retention
from onboarding.config import ConfigError, load_settings
from onboarding.models import AuditEntry, Event, Onboarding, StepResult, utcnow
from onboarding.views import list_events
from tests.conftest import ADMIN_TOKEN, deal_payload, service_env, signed


def registered(app):
    """The app, with the purge command on its CLI (create_app may not register it yet)."""
    if "purge" not in app.cli.commands:
        retention.init_app(app)
    return app


def deliver(client, deal_id: str) -> dict:
    """Deliver a signed deal; the webhook's answer."""
    raw, headers = signed(deal_payload(deal_id))
    answer = client.post("/webhooks/deal-won", data=raw, headers=headers)
    assert answer.status_code == 202
    return answer.get_json()


def age(db, event_id: str, days: int) -> None:
    """Make an event look received days ago."""
    with db.transaction() as session:
        session.execute(update(Event).where(Event.id == event_id).values(received_at=utcnow() - timedelta(days=days)))


def snapshot(db, event_id: str) -> tuple[dict, dict, list[dict]]:
    """An event without its body, its onboarding and its steps, as plain values."""
    with db.reading() as session:
        event = session.get(Event, event_id)
        onboarding = session.get(Onboarding, event.onboarding_id)
        steps = session.scalars(select(StepResult).where(StepResult.onboarding_id == onboarding.id)).all()

        def columns(row, *skip: str) -> dict:
            return {column.name: getattr(row, column.key) for column in row.__table__.columns
                    if column.name not in skip}

        return (columns(event, "body", "body_purged_at"), columns(onboarding),
                [columns(step) for step in steps])


@pytest.fixture
def db(app):
    """The app's database."""
    return app.extensions["onboarding"].db


def test_old_payloads_are_purged_and_everything_else_is_kept(app, client, db):
    old, recent = deliver(client, "D-601"), deliver(client, "D-602")
    with db.transaction() as session:
        session.add(StepResult(onboarding_id=old["onboarding_id"], name="room", status="done", attempts=1,
                               result={"room_id": 7, "title": "Client - Acme Corporation"}))
    age(db, old["event_id"], 31)
    age(db, recent["event_id"], 29)
    before = snapshot(db, old["event_id"])
    now = utcnow()

    assert retention.purge_payloads(db, 30, now=now) == 1

    assert snapshot(db, old["event_id"]) == before
    with db.reading() as session:
        purged, kept = session.get(Event, old["event_id"]), session.get(Event, recent["event_id"])
        assert purged.body is None and purged.body_purged_at == now
        assert json.loads(kept.body)["deal"]["id"] == "D-602" and kept.body_purged_at is None
    assert retention.purge_payloads(db, 30) == 0


def test_the_purge_goes_batch_by_batch(client, db, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)
    for number in range(5):
        age(db, deliver(client, f"D-61{number}")["event_id"], 40)
    assert retention.purge_payloads(db, 30) == 5
    with db.reading() as session:
        assert session.scalars(select(Event.body)).all() == [None] * 5


def test_a_pending_event_keeps_the_body_its_crm_has_yet_to_judge(db):
    with db.transaction() as session:
        session.add(Event(source="hubspot", delivery_id="pending-1", headers={}, body=b"[]", outcome="pending",
                          received_at=utcnow() - timedelta(days=90)))
    assert retention.purge_payloads(db, 30) == 0


def test_the_event_listing_says_a_payload_was_purged(client, db):
    old, recent = deliver(client, "D-620"), deliver(client, "D-621")
    age(db, old["event_id"], 60)
    retention.purge_payloads(db, 30)
    shown = {event["event_id"]: event for event in list_events(db)["events"]}
    assert shown[old["event_id"]]["payload_purged"] is True
    assert shown[old["event_id"]]["payload_purged_at"].endswith("Z")
    assert (shown[recent["event_id"]]["payload_purged"], shown[recent["event_id"]]["payload_purged_at"]) == (
        False, None)


def test_a_purged_event_is_not_replayed(app, client, db):
    old = deliver(client, "D-630")
    age(db, old["event_id"], 60)
    retention.purge_payloads(db, 30)
    refusal = f"the payload of event {old['event_id']} was purged after PAYLOAD_RETENTION_DAYS"
    with pytest.raises(LookupError, match=refusal):
        operations.replay_event(app.extensions["onboarding"], old["event_id"], actor="cli:test")
    answer = client.post(f"/api/events/{old['event_id']}/replay", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 409
    assert answer.get_json()["error"].startswith(refusal)
    with app.app_context():  # as `flask` pushes it for every command
        result = app.test_cli_runner().invoke(args=["replay-event", old["event_id"]])
    assert result.exit_code == 1
    assert refusal in result.output


def test_the_purge_command_says_how_many_and_is_audited(app, client, db):
    age(db, deliver(client, "D-640")["event_id"], 10)
    runner = registered(app).test_cli_runner()

    result = runner.invoke(args=["purge", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert result.output == "purged 1 payload(s) older than 7 days\n"
    assert runner.invoke(args=["purge", "--days", "7"]).output == "purged 0 payload(s) older than 7 days\n"
    assert runner.invoke(args=["purge", "--days", "0"]).exit_code == 2
    with db.reading() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.at, AuditEntry.id)).all()
        assert [(entry.action, entry.outcome, entry.details) for entry in entries] == [
            ("purge", "purged", {"days": 7, "purged": 1}), ("purge", "purged", {"days": 7, "purged": 0})]
        assert entries[0].actor.startswith("cli:")


def test_the_purge_command_defaults_to_the_setting(make_app, database_url):
    app = registered(make_app(database_url, PAYLOAD_RETENTION_DAYS="7"))
    try:
        db = app.extensions["onboarding"].db
        age(db, deliver(app.test_client(), "D-650")["event_id"], 8)
        result = app.test_cli_runner().invoke(args=["purge"])
        assert result.output == "purged 1 payload(s) older than 7 days\n"
    finally:
        app.extensions["onboarding"].db.dispose()


def test_the_workers_daily_purge_runs_at_once_and_logs_how_many(client, db, caplog):
    age(db, deliver(client, "D-660")["event_id"], 45)
    stopping = threading.Event()
    stopping.set()  # one pass, then the thread's wait for the next day ends at once
    caplog.set_level(logging.INFO, logger="onboarding.retention")
    retention.purge_daily(db, 30, stopping)
    record = next(record for record in caplog.records if record.name == "onboarding.retention")
    assert (record.count, record.outcome) == (1, "purged")
    assert retention.purge_payloads(db, 30) == 0


def test_the_workers_daily_purge_survives_a_database_error(db, caplog, monkeypatch):
    def unreachable(*_args):
        raise OSError("connection refused")

    monkeypatch.setattr(retention, "purge_payloads", unreachable)
    stopping = threading.Event()
    stopping.set()
    retention.purge_daily(db, 30, stopping)
    assert any(record.levelno == logging.ERROR and record.exc_info for record in caplog.records
               if record.name == "onboarding.retention")


def test_the_retention_setting_defaults_to_30_days_and_refuses_0(sqlite_url):
    env = service_env(sqlite_url, "http://127.0.0.1:9", "http://127.0.0.1:9/crm")
    assert load_settings(env).payload_retention_days == 30
    assert load_settings({**env, "PAYLOAD_RETENTION_DAYS": "90"}).payload_retention_days == 90
    with pytest.raises(ConfigError, match="PAYLOAD_RETENTION_DAYS must be at least 1"):
        load_settings({**env, "PAYLOAD_RETENTION_DAYS": "0"})

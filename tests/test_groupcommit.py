"""Group commit on both engines: shared transactions lose nothing, duplicate nothing, and fail over one by one."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import func, select, text

from onboarding.crm.generic import StandardWebhooksSource
from onboarding.db import Database
from onboarding.groupcommit import group_commit
from onboarding.intake import record_delivery
from onboarding.models import Event, Onboarding
from tests.conftest import deal_payload, signed
from tests.processes import wait_until

SOURCE = StandardWebhooksSource((b"k" * 32,), 300, None)


def deliver_at_once(db: Database, deliveries: list[tuple[str, dict]], headers: dict | None = None) -> list:
    """Record (delivery id, payload) pairs from one thread each, released together; return their receipts."""
    receipts: list = [None] * len(deliveries)
    start = threading.Barrier(len(deliveries))

    def deliver(index: int, delivery_id: str, payload: dict) -> None:
        raw, _ = signed(payload)
        verdict = SOURCE.judge(raw)
        start.wait()
        receipts[index] = record_delivery(db, "generic", delivery_id, headers or {}, raw, verdict)

    threads = [threading.Thread(target=deliver, args=(index, *delivery)) for index, delivery in enumerate(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return receipts


@contextmanager
def writes_held(db: Database):
    """Keep every other writer waiting (SQLite: the write lock; PostgreSQL: a lock on the onboardings table)."""
    if db.is_sqlite:
        with db.writer_turn():
            yield
        return
    with db.engine.connect() as connection:
        connection.execute(text("LOCK TABLE onboardings IN EXCLUSIVE MODE"))
        yield
        connection.rollback()


def test_concurrent_new_deals_are_all_recorded_with_their_values(database_url):
    db = Database(database_url)
    headers = {"webhook-id": "msg_1", "content-type": "application/json"}
    receipts = deliver_at_once(db, [(f"msg-{n}", deal_payload(f"D-{n}")) for n in range(24)], headers)

    assert [receipt.outcome for receipt in receipts] == ["created"] * 24
    with db.reading() as session:
        for number, receipt in enumerate(receipts):
            onboarding = session.get(Onboarding, receipt.onboarding_id)
            event = session.get(Event, receipt.event_id)
            assert (onboarding.deal_id, onboarding.status, onboarding.client_email) == \
                (f"D-{number}", "queued", "contact@acme.example.com")
            assert onboarding.run_at is not None and onboarding.run_at.tzinfo is None
            assert (event.delivery_id, event.onboarding_id, event.outcome) == \
                (f"msg-{number}", onboarding.id, "accepted")
            assert event.headers == headers
            raw, _ = signed(deal_payload(f"D-{number}"))
            assert event.body == raw
    db.dispose()


def test_a_deal_delivered_many_times_in_one_batch_makes_one_onboarding(database_url):
    db = Database(database_url)
    committer = group_commit(db)
    payload = deal_payload("D-herd")
    receipts: list = []
    with writes_held(db):
        # A first deal leads and waits for the database; the twelve deliveries queue meanwhile, and are inserted
        # in one statement: on SQLite with the first deal (its leader takes the batch once the write lock is its),
        # on PostgreSQL (whose leader took its batch and waits inside the INSERT) by its successor.
        first = threading.Thread(target=lambda: deliver_at_once(db, [("msg-first", deal_payload("D-first"))]))
        first.start()
        leader_queued = 1 if db.is_sqlite else 0
        wait_until(lambda: committer._committing and len(committer._waiting) == leader_queued, timeout=10,
                   message="a leader")
        herd = threading.Thread(target=lambda: receipts.extend(
            deliver_at_once(db, [(f"msg-{n}", payload) for n in range(12)])))
        herd.start()
        wait_until(lambda: len(committer._waiting) == 12 + leader_queued, timeout=10,
                   message="twelve deliveries to queue")
    first.join()
    herd.join()

    onboarding_ids = {receipt.onboarding_id for receipt in receipts}
    assert len(onboarding_ids) == 1
    assert sorted(receipt.outcome for receipt in receipts) == ["created"] + ["duplicate"] * 11
    with db.reading() as session:
        assert sorted(session.scalars(select(Onboarding.deal_id)).all()) == ["D-first", "D-herd"]
        events = session.scalars(select(Event).where(Event.deal_id == "D-herd")).all()
        assert len(events) == 12
        assert {event.onboarding_id for event in events} == onboarding_ids
    db.dispose()


def test_a_reused_delivery_id_leaves_no_onboarding_behind(database_url):
    db = Database(database_url)
    raw, _ = signed(deal_payload("D-first"))
    first = record_delivery(db, "generic", "msg-reused", {}, raw, SOURCE.judge(raw))
    other, _ = signed(deal_payload("D-other"))
    again = record_delivery(db, "generic", "msg-reused", {}, other, SOURCE.judge(other))

    assert (first.outcome, again.outcome) == ("created", "duplicate")
    assert again.onboarding_id == first.onboarding_id
    with db.reading() as session:
        assert session.scalars(select(Onboarding.deal_id)).all() == ["D-first"]
        assert session.scalar(select(Event.deliveries)) == 2
    db.dispose()


def test_a_failed_shared_commit_records_each_deal_on_its_own(database_url):
    db = Database(database_url)
    committer = group_commit(db)
    raw, _ = signed(deal_payload("D-warm"))
    record_delivery(db, "generic", "msg-warm", {}, raw, SOURCE.judge(raw))
    committer._connection.dbapi_connection.close()  # the shared connection is lost: the next batch fails whole

    receipts = deliver_at_once(db, [(f"msg-{n}", deal_payload(f"D-{n}")) for n in range(6)])

    assert [receipt.outcome for receipt in receipts] == ["created"] * 6
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Onboarding)) == 7
        assert session.scalar(select(func.count()).select_from(Event)) == 7
    # and the committer has a fresh connection for what comes next
    raw, _ = signed(deal_payload("D-after"))
    assert record_delivery(db, "generic", "msg-after", {}, raw, SOURCE.judge(raw)).outcome == "created"
    db.dispose()


def open_connections(db: Database) -> int:
    """Connections to db's database held by this process (SQLite: open files; PostgreSQL: other backends)."""
    if db.is_sqlite:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == os.path.realpath(db.url.database))
    with psycopg.connect(db.url.set(drivername="postgresql").render_as_string(hide_password=False)) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]


def test_dispose_closes_the_group_commits_connection_too(database_url):
    db = Database(database_url)
    raw, _ = signed(deal_payload("D-before"))
    record_delivery(db, "generic", "msg-before", {}, raw, SOURCE.judge(raw))
    assert open_connections(db) >= 1

    db.dispose()

    assert open_connections(db) == 0
    # disposing is not the end: the next deal opens a connection again
    raw, _ = signed(deal_payload("D-after"))
    assert record_delivery(db, "generic", "msg-after", {}, raw, SOURCE.judge(raw)).outcome == "created"
    with db.reading() as session:
        assert session.scalars(select(Onboarding.deal_id).order_by(Onboarding.deal_id)).all() == ["D-after",
                                                                                                    "D-before"]
    db.dispose()

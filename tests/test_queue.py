"""Claims, leases and fencing on both engines: no two workers on one onboarding, no stale writes."""

from __future__ import annotations

import threading
import time

from onboarding import queue
from onboarding.crm.generic import StandardWebhooksSource
from onboarding.db import Database
from onboarding.intake import record_delivery
from onboarding.models import Onboarding, StepResult
from tests.conftest import deal_payload, signed

SOURCE = StandardWebhooksSource((b"k" * 32,), 300, None)


def add_onboardings(db: Database, count: int) -> list[str]:
    """Record count won deals; return their onboarding ids."""
    ids = []
    for number in range(count):
        raw, _ = signed(deal_payload(f"D-{number}"))
        receipt = record_delivery(db, "generic", f"msg-{number}", {}, raw, SOURCE.judge(raw))
        ids.append(receipt.onboarding_id)
    return ids


def test_concurrent_claimers_never_share_an_onboarding(database_url):
    db = Database(database_url)
    ids = add_onboardings(db, 40)
    claimed: list[list[str]] = [[] for _ in range(6)]

    def claimer(index: int) -> None:
        for _ in range(20):
            claimed[index] += [claim.onboarding_id for claim in queue.claim(db, f"w{index}", 60, 3)]

    threads = [threading.Thread(target=claimer, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [onboarding_id for per_worker in claimed for onboarding_id in per_worker]
    assert sorted(everything) == sorted(ids)
    db.dispose()


def test_an_expired_lease_is_claimed_again_and_fences_out_the_old_owner(database_url):
    db = Database(database_url)
    [onboarding_id] = add_onboardings(db, 1)
    [old] = queue.claim(db, "old", lease_seconds=0.2, limit=1)
    assert queue.claim(db, "other", lease_seconds=60, limit=1) == []
    time.sleep(0.3)
    [new] = queue.claim(db, "new", lease_seconds=60, limit=1)
    assert new.onboarding_id == onboarding_id and new.attempts == 2

    assert not queue.save_steps(db, old, [queue.StepOutcome("room", {"room_id": 1}, None, queue.utcnow())], 60)
    assert not queue.finish(db, old, "completed")
    assert not queue.renew(db, old, 60)
    assert queue.save_steps(db, new, [queue.StepOutcome("room", {"room_id": 2}, None, queue.utcnow())], 60)
    with db.reading() as session:
        assert session.get(StepResult, (onboarding_id, "room")).result == {"room_id": 2}
        assert session.get(Onboarding, onboarding_id).claimed_by == "new"
    assert queue.load_work(db, onboarding_id).done == {"room": {"room_id": 2}}
    db.dispose()


def test_retry_requeues_only_failed_onboardings_with_a_fresh_budget(database_url):
    db = Database(database_url)
    failed, running = add_onboardings(db, 2)
    claims = {claim.onboarding_id: claim for claim in queue.claim(db, "w", 60, 2)}
    assert queue.finish(db, claims[failed], "failed", last_error={"step": "room", "message": "boom"})
    assert queue.retry(db, [failed, running]) == [failed]
    with db.reading() as session:
        onboarding = session.get(Onboarding, failed)
        assert (onboarding.status, onboarding.attempts) == ("queued", 0)
    assert queue.queue_stats(db)["by_status"] == {"queued": 1, "running": 1}
    db.dispose()

"""Limits that hold for the fleet, quicker recovery, and a fleet that reads like one: on both engines.

The first tests drive FleetLimiters of separate LimitStores (as separate processes have) on one database; the
slow ones run real worker processes against the sandbox set to refuse what DocSpace refuses.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from onboarding.db import Database
from onboarding.limits import SLOT_BUSY, FleetLimiter, LimitStore
from tests.conftest import ADMIN_TOKEN, deal_payload, service_env, signed
from tests.processes import ROOT, free_port, start_web, start_worker, wait_until


def limiter(db: Database, **limits) -> FleetLimiter:
    """A limiter on its own store (as another process would have) of db's shared state."""
    settings = {"max_concurrent_writes": 3, "rate": 1000, "window_seconds": 60.0, "slot_lease_seconds": 30.0,
                **limits}
    return FleetLimiter(LimitStore(db), "docspace:test", holder=lambda: "test:1", **settings)


def test_concurrent_writes_are_capped_across_processes(database_url):
    db = Database(database_url)
    limiters = [limiter(db), limiter(db)]
    lock, in_flight, peak, done = threading.Lock(), [0], [0], []

    def write(number: int) -> None:
        with limiters[number % 2].slot(write=True):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.03)
            with lock:
                in_flight[0] -= 1
        done.append(number)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(write, range(24)))
    assert len(done) == 24 and peak[0] == 3
    assert limiters[0].state().writes_in_flight == 0
    db.dispose()


def test_the_rate_holds_across_processes_in_any_window(database_url):
    db = Database(database_url)
    limiters = [limiter(db, rate=4, window_seconds=0.5), limiter(db, rate=4, window_seconds=0.5)]
    starts: list[float] = []

    def call(number: int) -> None:
        with limiters[number % 2].slot(write=False):
            starts.append(time.monotonic())

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(call, range(12)))
    starts.sort()
    assert len(starts) == 12
    # Never more than 4 starts within any half second.
    assert all(starts[index + 4] - starts[index] >= 0.45 for index in range(len(starts) - 4))
    db.dispose()


def hold_the_key(store: LimitStore, key: str, seconds: float) -> threading.Thread:
    """Another process holding the key's turn for a while (its transaction open, as a slow decision would)."""
    store.try_acquire(key, uuid.uuid4().hex, "host:9", False, 1000, 1000, 60.0, 30.0)  # the tables and the key
    holding = threading.Event()

    def hold() -> None:
        connection = store.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if store.is_sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            else:
                cursor.execute("BEGIN")
                cursor.execute(store._sql("SELECT paused_until FROM {p}limit_keys WHERE key = ? FOR UPDATE"), (key,))
            holding.set()
            time.sleep(seconds)
            cursor.execute("COMMIT")
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(10)
    return thread


def test_a_call_that_waited_for_its_turn_counts_from_when_it_starts(database_url):
    # One call a second: the call admitted after waiting 0.6 s for another process's turn started then, so the
    # next may start a second after it, not a second after the first began to wait.
    db = Database(database_url)
    first, second = limiter(db, rate=1, window_seconds=1.0), limiter(db, rate=1, window_seconds=1.0)
    holder = hold_the_key(LimitStore(db), first.key, 0.6)
    with first.slot(write=False):
        first_started = time.monotonic()
    holder.join()
    with second.slot(write=False):
        second_started = time.monotonic()
    assert second_started - first_started >= 0.95, second_started - first_started
    db.dispose()


def test_a_pause_asked_by_one_process_holds_every_process(database_url):
    db = Database(database_url)
    first, second = limiter(db), limiter(db)
    first.pause(1.0)
    started = time.monotonic()
    with second.slot(write=True):
        waited = time.monotonic() - started
    assert 0.9 <= waited < 3
    db.dispose()


def test_without_the_shared_state_a_worker_keeps_its_own_share(caplog):
    away = Database("postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    fallback = FleetLimiter(LimitStore(away), "docspace:test", max_concurrent_writes=15, rate=1500,
                            window_seconds=60.0, slot_lease_seconds=30.0, holder=lambda: "test:1",
                            live_workers=lambda: 3)
    with caplog.at_level(logging.WARNING, logger="onboarding.limits"):
        for _ in range(3):
            with fallback.slot(write=True):
                pass
    assert [record.message for record in caplog.records].count(
        "the fleet's limits cannot be reached (OperationalError); using this worker's share for 5.0 s") == 1
    share = fallback._fallback_limiter()
    assert (share.max_concurrent_writes, share.rate_per_minute) == (5, 500)
    away.dispose()


def test_a_dead_holders_slots_come_back(database_url):
    db = Database(database_url)
    store = LimitStore(db)
    assert store.try_acquire("k", "call-1", "host:1", True, 1, 100, 60.0, 30.0) == 0.0
    assert store.try_acquire("k", "call-2", "host:2", True, 1, 100, 60.0, 30.0) == SLOT_BUSY
    assert store.release_holder("host:1") == 1
    assert store.try_acquire("k", "call-2", "host:2", True, 1, 100, 60.0, 30.0) == 0.0
    db.dispose()


def at_once(actions: list) -> list:
    """Run every action in a thread of its own, all released together; what each returned (or raised)."""
    barrier = threading.Barrier(len(actions))

    def run(action):
        barrier.wait()
        try:
            return action()
        except Exception as error:  # the test reports it
            return error

    with ThreadPoolExecutor(len(actions)) as pool:
        return list(pool.map(run, actions))


def test_processes_opening_a_new_file_at_the_same_moment_all_reach_it(tmp_path):
    # Connections converting a new SQLite file to WAL together are told "database is locked" at once (no busy
    # wait): each of 8 processes must still reach the database and 8 others the limits' side file, on 80 new files.
    for attempt in range(80):
        url = f"sqlite:///{tmp_path}/{attempt}/onboarding.db"
        databases = [Database(url) for _ in range(16)]
        stores = [LimitStore(db) for db in databases[:8]]

        def first_query(db: Database):
            return lambda: db.engine.connect().close()

        def first_call(store: LimitStore):
            return lambda: store.try_acquire("k", uuid.uuid4().hex, "host:1", False, 1, 100, 60.0, 30.0)

        answers = at_once([first_query(db) for db in databases[8:]] + [first_call(store) for store in stores])
        assert answers == [None] * 8 + [0.0] * 8, f"attempt {attempt}: {answers}"
        for db in databases:
            db.dispose()


# -- real processes ------------------------------------------------------------------------------------------

pytestmark_slow = pytest.mark.slow


def deliver_many(url: str, count: int, prefix: str) -> list[str]:
    """Deliver count deals at once; return their onboarding ids."""
    def one(number: int) -> str:
        raw, headers = signed(deal_payload(f"{prefix}-{number}"))
        return requests.post(f"{url}/webhooks/deal-won", data=raw, headers=headers, timeout=30).json()[
            "onboarding_id"]

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def completed(url: str) -> int:
    """How many onboardings are completed."""
    listing = requests.get(f"{url}/api/onboardings?status=completed&limit=500",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).json()
    return len(listing["onboardings"])


@pytestmark_slow
def test_three_workers_keep_to_fifteen_writes_together_and_one_429_pauses_them_all(database_url, sandbox,
                                                                                   tmp_path):
    sandbox.configure(latency_ms=30, max_concurrent_writes=15)
    env = service_env(database_url, sandbox.url, sandbox.crm_url, WORKER_CONCURRENCY="8")
    port = free_port()
    web = start_web(env, tmp_path, port)
    workers = [start_worker(env, tmp_path, name=f"worker-{index}") for index in range(3)]
    url = f"http://127.0.0.1:{port}"
    try:
        deliver_many(url, 45, "D-fleet")
        wait_until(lambda: completed(url) == 45, timeout=90, interval=0.5, message="45 completed")
        state = sandbox.state()
        assert state["peak_concurrent_writes"] <= 15
        assert [call for call in sandbox.calls() if call["status"] == 429] == []
        assert sum(1 for worker in workers if "run ended: completed" in worker.output()) >= 2
        workers_listed = requests.get(f"{url}/api/workers", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                      timeout=10).json()
        assert len(workers_listed["workers"]) == 3
        assert workers_listed["limits"]["docspace"]["max_concurrent_writes"] == 15

        # One 429 with Retry-After: 2, seen by one worker: nobody calls DocSpace for 2 s.
        sandbox.faults({"action": "status", "method": "POST", "path": "^files/rooms$", "status": 429,
                        "retry_after": 2, "times": 1})
        before = len(sandbox.calls())
        deliver_many(url, 12, "D-paused")
        wait_until(lambda: completed(url) == 57, timeout=60, interval=0.5, message="57 completed")
        calls = sandbox.calls()[before:]
        [refused] = [call for call in calls if call["status"] == 429]
        # A call already on its way when the 429 came is allowed its moment; then silence for the 2 s.
        quiet = [call for call in calls if refused["started_at"] + 0.3 < call["started_at"]
                 < refused["started_at"] + 1.9]
        assert quiet == [], quiet[:3]
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'onboarding_limit_writes_max{service="docspace"} 15.0' in metrics
    finally:
        for process in [*workers, web]:
            process.stop()


@pytestmark_slow
@pytest.mark.parametrize("successor", ["a new worker on the same host", "the surviving workers"])
def test_a_killed_workers_onboardings_complete_within_30_seconds(sqlite_url, sandbox, tmp_path, successor):
    sandbox.configure(latency_ms=1500)  # every onboarding still in flight when its worker dies
    env = service_env(sqlite_url, sandbox.url, sandbox.crm_url, WORKER_CONCURRENCY="6")
    port = free_port()
    web = start_web(env, tmp_path, port)
    victim = start_worker(env, tmp_path, name="victim")
    others = []
    url = f"http://127.0.0.1:{port}"
    try:
        ids = deliver_many(url, 6, "D-kill")
        wait_until(lambda: victim.output().count("step done") >= 6, timeout=30, message="work in flight")
        if successor == "the surviving workers":  # already running: they wait out the victim's leases
            others += [start_worker(env, tmp_path, name=f"survivor-{index}") for index in range(2)]
        victim.kill_group()
        killed_at = time.monotonic()
        assert victim.output().count("run ended") == 0
        if successor == "a new worker on the same host":
            others.append(start_worker(env, tmp_path, name="successor"))
        wait_until(lambda: completed(url) == 6, timeout=30, interval=0.25, message="all 6 completed")
        took = time.monotonic() - killed_at
        assert took < 30
        if successor == "a new worker on the same host":
            assert "took over from 1 dead worker(s) of this host" in others[0].output()
            assert took < 15  # no lease to wait out
        else:
            assert all("took over" not in survivor.output() for survivor in others)
        rooms = sandbox.rooms()
        assert len(rooms) == 6 == len({tag for room in rooms for tag in room["tags"] if tag.startswith("deal-")})
        assert len(ids) == 6
    finally:
        for process in [*others, victim, web]:
            process.stop()


@pytestmark_slow
def test_every_line_the_web_and_the_worker_print_is_json(sqlite_url, sandbox, tmp_path):
    env = service_env(sqlite_url, sandbox.url, sandbox.crm_url)
    port = free_port()
    web = start_web(env, tmp_path, port)
    worker = start_worker(env, tmp_path)
    ids = deliver_many(f"http://127.0.0.1:{port}", 2, "D-json")
    wait_until(lambda: completed(f"http://127.0.0.1:{port}") == 2, message="both completed")
    worker.stop()
    web.stop()
    for process in (web, worker):
        lines = [line for line in process.output().splitlines() if line.strip()]
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), process.name
    assert any(json.loads(line)["logger"] == "gunicorn.error" for line in web.output().splitlines())
    assert len(ids) == 2


def test_migrations_need_only_the_database(tmp_path, database_url):
    clean = {"PATH": os.environ["PATH"], "DATABASE_URL": database_url.replace("+psycopg", "")}
    if "sqlite" in database_url:
        clean["DATABASE_URL"] = f"sqlite:///{tmp_path / 'new.db'}"
    else:
        from tests.conftest import reset_postgres
        reset_postgres(database_url)
    upgrade = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], env=clean,
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert upgrade.returncode == 0, upgrade.stderr
    current = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"], env=clean,
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert current.returncode == 0 and "database schema at 0005 (newest: 0005)" in current.stdout
    # Any other command still names the first missing setting.
    worker = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], env=clean, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode == 1
    assert worker.stderr.strip().startswith("onboarding: configuration error: DOCSPACE_URL is not set")
    assert "Traceback" not in upgrade.stderr + worker.stderr

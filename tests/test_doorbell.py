"""The doorbell: a worker that polls only every few minutes still starts a new deal at once (real processes)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from onboarding import doorbell
from onboarding.db import Database
from tests.conftest import deal_payload, service_env, signed
from tests.processes import free_port, start_web, start_worker, wait_until
from tests.test_e2e import verified_callbacks

pytestmark = pytest.mark.slow


def test_a_new_deal_wakes_an_idle_worker_at_once(database_url, sandbox, tmp_path):
    env = service_env(database_url, sandbox.url, sandbox.crm_url, WORKER_POLL_SECONDS="300")
    port = free_port()
    web = start_web(env, tmp_path, port)
    worker = start_worker(env, tmp_path)
    try:
        time.sleep(1)  # the worker has looked for work, found none, and now waits for its next poll or the bell
        raw, headers = signed(deal_payload("D-bell"))
        answer = requests.post(f"http://127.0.0.1:{port}/webhooks/deal-won", data=raw, headers=headers, timeout=10)
        assert answer.status_code == 202
        onboarding_id = answer.json()["onboarding_id"]

        # far sooner than the 300 s poll
        wait_until(lambda: any(body["onboarding_id"] == onboarding_id for body in verified_callbacks(sandbox)),
                   timeout=20, message="the callback of an onboarding started by the bell")
    finally:
        worker.stop()
        web.stop()


def test_a_ring_with_nobody_listening_is_harmless_and_a_listener_hears_the_next(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'onboarding.db'}")
    path = doorbell.pipe_path(db)
    doorbell.ring_pipe(path)  # no pipe yet: nothing happens, nothing raises
    rings = threading.Semaphore(0)
    stopping = threading.Event()
    listener = threading.Thread(target=doorbell.listen, args=(db, rings.release, stopping))
    listener.start()
    try:
        def heard() -> bool:
            # A ring between the listener making the pipe and opening it finds no reader and is lost, harmlessly
            # (the worker's poll covers it): ring until one is heard.
            doorbell.ring_pipe(path)
            return rings.acquire(timeout=0.2)

        wait_until(heard, timeout=5, message="the listener to hear a ring")
    finally:
        stopping.set()
        listener.join(timeout=5)
    assert not listener.is_alive()
    doorbell.ring_pipe(path)  # the pipe is left behind with no reader: still nothing happens
    db.dispose()

"""A fleet on one PostgreSQL database: 2 web processes, 3 workers, every deal delivered twice at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import deal_payload, reset_postgres, service_env, signed
from tests.processes import free_port, start_web, start_worker, wait_until
from tests.test_e2e import verified_callbacks
from tests.test_resilience import assert_one_complete_room

pytestmark = pytest.mark.slow

DEALS = 60


def test_two_webs_three_workers_sixty_deals_twice(postgres_database, sandbox, tmp_path):
    from onboarding.db import Database

    reset_postgres(postgres_database)
    Database(postgres_database).upgrade()
    sandbox.configure(latency_ms=20)
    env = service_env(postgres_database, sandbox.url, sandbox.crm_url, WORKER_CONCURRENCY="6")
    ports = [free_port(), free_port()]
    webs = [start_web(env, tmp_path, port, name=f"web-{index}") for index, port in enumerate(ports)]
    workers = [start_worker(env, tmp_path, name=f"worker-{index}") for index in range(3)]
    try:
        deliveries = []
        for number in range(DEALS):
            payload = deal_payload(f"D-fleet-{number}")
            # The CRM's retry comes with a new webhook-id, to the other web process, at the same moment.
            for copy, port in enumerate(ports):
                deliveries.append((port, *signed(payload, message_id=f"msg_fleet_{number}_{copy}")))

        def deliver(delivery):
            port, raw, headers = delivery
            answer = requests.post(f"http://127.0.0.1:{port}/webhooks/deal-won", data=raw, headers=headers,
                                   timeout=30)
            return answer.status_code, answer.json()["onboarding_id"]

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(deliver, deliveries))
        assert sorted(status for status, _ in answers).count(202) == DEALS
        onboarding_ids = {onboarding_id for _, onboarding_id in answers}
        assert len(onboarding_ids) == DEALS

        wait_until(lambda: len(verified_callbacks(sandbox)) >= DEALS, timeout=120, interval=0.5,
                   message="every callback")
        rooms = sandbox.rooms()
        assert len(rooms) == DEALS
        for number in range(DEALS):
            assert_one_complete_room(sandbox, f"D-fleet-{number}")
        told = [body["onboarding_id"] for body in verified_callbacks(sandbox)]
        assert sorted(told) == sorted(onboarding_ids)
        ran = [worker.output().count("run ended: completed") for worker in workers]
        assert sum(ran) == DEALS
        assert sum(1 for count in ran if count) >= 2, ran
    finally:
        for process in [*workers, *webs]:
            process.stop()

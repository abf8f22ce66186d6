"""Staged failures end with exactly one complete room per deal and the CRM told once (real processes)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import MANAGER_ID, Sandbox, deal_payload, service_env, signed
from tests.processes import free_port, run_flask, start_web, start_worker, wait_until
from tests.test_e2e import Stack, verified_callbacks

pytestmark = pytest.mark.slow

FOLDERS = {"Invoices", "Contracts", "Deliverables"}
COPIES = ["How to use the client portal.pdf", "Welcome to your client room.pdf"]


def make_stack(database_url: str, sandbox: Sandbox, tmp_path, **overrides: str) -> Stack:
    """Web and worker with the given setting overrides."""
    env = service_env(database_url, sandbox.url, sandbox.crm_url, **overrides)
    port = free_port()
    web = start_web(env, tmp_path, port)
    worker = start_worker(env, tmp_path)
    return Stack(f"http://127.0.0.1:{port}", env, web, worker, sandbox)


@pytest.fixture
def stacks(sandbox, tmp_path):
    """Start stacks with make(database_url, **overrides); all are stopped after the test."""
    started: list[Stack] = []

    def make(database_url: str, **overrides: str) -> Stack:
        stack = make_stack(database_url, sandbox, tmp_path, **overrides)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.worker.stop()
        stack.web.stop()


def assert_one_complete_room(sandbox: Sandbox, deal_id: str) -> dict:
    """Exactly one room for the deal, with every folder, copy, member and link once."""
    rooms = [room for room in sandbox.rooms() if f"deal-{deal_id}" in room["tags"]]
    assert len(rooms) == 1, f"{len(rooms)} rooms for {deal_id}"
    room = rooms[0]
    titles = [folder["title"] for folder in room["folders"]]
    assert sorted(titles) == sorted(FOLDERS), titles
    deliverables = next(folder for folder in room["folders"] if folder["title"] == "Deliverables")
    assert sorted(file["title"] for file in deliverables["files"]) == COPIES
    access = {member["id"]: member["access"] for member in room["members"]}
    assert access[MANAGER_ID] == 9
    assert sorted(access.values()).count(2) == 1
    assert len(room["links"]) == 1
    return room


def assert_told_once(sandbox: Sandbox, onboarding_ids: list[str]) -> None:
    """One completed callback per onboarding, no more."""
    told = [body["onboarding_id"] for body in verified_callbacks(sandbox) if body["type"] == "onboarding.completed"]
    assert sorted(told) == sorted(onboarding_ids)


FAULTS = {
    "lost room response": {"method": "POST", "path": "^files/rooms$", "action": "after_status", "status": 502,
                           "times": 1},
    "429s on folders": {"method": "POST", "path": r"^files/folder/\d+$", "action": "status", "status": 429,
                        "retry_after": 1, "times": 3},
    "500 on a copy": {"method": "POST", "path": "copyas$", "action": "status", "status": 500, "times": 1},
    "dropped share call": {"method": "PUT", "path": r"^files/rooms/\d+/share$", "action": "after_drop",
                           "times": 1},
    "lost folder response": {"method": "POST", "path": r"^files/folder/\d+$", "action": "after_status",
                             "status": 502, "times": 2},
    "lost copy response": {"method": "POST", "path": "copyas$", "action": "after_drop", "times": 1},
    "html 502 on the link": {"method": "GET", "path": r"^files/rooms/\d+/link$", "action": "html502", "times": 1},
    "CRM down twice": {"target": "crm", "method": "POST", "path": ".*", "action": "status", "status": 503,
                       "times": 2},
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_staged_fault_still_ends_with_one_complete_room(fault, sqlite_url, sandbox, stacks):
    sandbox.faults(FAULTS[fault])
    stack = stacks(sqlite_url)
    deals = [f"D-{fault[:4]}-{number}" for number in range(2)]
    ids = [stack.deliver(deal_payload(deal)).json()["onboarding_id"] for deal in deals]
    for onboarding_id in ids:
        stack.wait_status(onboarding_id, "completed", timeout=60)
    for deal in deals:
        assert_one_complete_room(sandbox, deal)
    assert_told_once(sandbox, ids)
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()["rules"][0]["times"] == 0


def test_killing_the_worker_mid_flight_loses_nothing(database_url, sandbox, stacks):
    sandbox.configure(latency_ms=150)
    stack = stacks(database_url, LEASE_SECONDS="2")
    deals = [f"D-kill-{number}" for number in range(6)]
    ids = [stack.deliver(deal_payload(deal)).json()["onboarding_id"] for deal in deals]
    wait_until(lambda: len(sandbox.rooms()) >= 3, timeout=30, message="rooms to be under way")
    stack.worker.kill_group()
    assert any(stack.onboarding(onboarding_id)["status"] != "completed" for onboarding_id in ids)
    replacement = start_worker(stack.env, stack.worker.log_path.parent, name="worker-2")
    try:
        for onboarding_id in ids:
            stack.wait_status(onboarding_id, "completed", timeout=90)
    finally:
        replacement.stop()
    for deal in deals:
        assert_one_complete_room(sandbox, deal)
    assert_told_once(sandbox, ids)


def test_thirty_concurrent_deliveries_of_one_deal_make_one_onboarding_and_one_room(database_url, sandbox, stacks):
    stack = stacks(database_url)
    payload = deal_payload("D-herd")
    message_ids = [f"msg_herd_{number % 10}" for number in range(30)]  # each id three times, ten ids

    def deliver(message_id: str) -> tuple[int, str]:
        raw, headers = signed(payload, message_id=message_id)
        answer = requests.post(f"{stack.url}/webhooks/deal-won", data=raw, headers=headers, timeout=30)
        return answer.status_code, answer.json()["onboarding_id"]

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(deliver, message_ids))
    assert {onboarding_id for _, onboarding_id in answers} == {answers[0][1]}
    assert sorted(status for status, _ in answers) == [200] * 29 + [202]
    stack.wait_status(answers[0][1], "completed")
    assert_one_complete_room(sandbox, "D-herd")
    assert_told_once(sandbox, [answers[0][1]])
    events = stack.admin("GET", "/api/events?deal_id=D-herd&limit=100").json()["events"]
    assert len(events) == 10
    assert sum(event["deliveries"] for event in events) == 30


def test_a_permanent_failure_is_visible_and_one_retry_completes_it(sqlite_url, sandbox, stacks):
    stranger = str(uuid.uuid4())
    stack = stacks(sqlite_url)
    payload = deal_payload("D-perm")
    payload["account_manager"] = {"docspace_user_id": stranger}
    onboarding_id = stack.deliver(payload).json()["onboarding_id"]
    failed = stack.wait_status(onboarding_id, "failed")
    error = failed["last_error"]
    assert error["step"] == "access" and error["kind"] == "permanent"
    assert f"the account manager ({stranger}) is not a member" in error["message"]
    access = next(step for step in failed["steps"] if step["name"] == "access")
    assert access["status"] == "failed" and access["attempts"] == 1
    listed = run_flask(stack.env, "onboardings", "--status", "failed")
    assert onboarding_id in listed.stdout and "is not a member" in listed.stdout
    shown = json.loads(run_flask(stack.env, "show", onboarding_id).stdout)
    assert shown["last_error"]["step"] == "access"

    finished = {step["name"] for step in failed["steps"] if step["status"] == "done"}
    assert {"room", "client", "folder:Invoices"} <= finished
    sandbox.add_user(id=stranger, email="new.manager@sandbox.example", displayName="New Manager", type="RoomAdmin")
    retried = run_flask(stack.env, "retry", onboarding_id)
    assert f"{onboarding_id}: retried" in retried.stdout
    done = stack.wait_status(onboarding_id, "completed")
    attempts = {step["name"]: step["attempts"] for step in done["steps"]}
    assert attempts["access"] == 2
    assert all(attempts[name] == 1 for name in finished)  # finished steps were not redone
    assert len(sandbox.calls_to("POST", "files/rooms")) == 1
    assert len(sandbox.calls_to("POST", "files/folder/{folderId}")) == 3
    assert len(sandbox.calls_to("POST", "files/file/{fileId}/copyas")) == 2
    assert stack.admin("POST", f"/api/onboardings/{onboarding_id}/retry").status_code == 409
    assert_told_once(sandbox, [onboarding_id])


def test_the_admin_api_retries_in_bulk_and_the_crm_hears_of_failures(sqlite_url, sandbox, stacks):
    stack = stacks(sqlite_url, NOTIFY_FAILURES="true")
    sandbox.faults({"method": "POST", "path": "copyas$", "action": "status", "status": 403, "times": 4})
    ids = [stack.deliver(deal_payload(f"D-bulk-{number}")).json()["onboarding_id"] for number in range(2)]
    for onboarding_id in ids:
        failed = stack.wait_status(onboarding_id, "failed")
        assert failed["last_error"]["status"] == 403 and failed["last_error"]["step"].startswith("copy:")
    failures = [body for body in verified_callbacks(sandbox) if body["type"] == "onboarding.failed"]
    assert sorted(body["onboarding_id"] for body in failures) == sorted(ids)
    answer = stack.admin("POST", "/api/onboardings/retry", json={"deal_id": None})
    assert answer.json()["count"] == 2 and sorted(answer.json()["onboarding_ids"]) == sorted(ids)
    for onboarding_id in ids:
        stack.wait_status(onboarding_id, "completed")
    assert_told_once(sandbox, ids)


def test_transient_failures_give_up_after_the_attempt_budget(sqlite_url, sandbox, stacks):
    stack = stacks(sqlite_url, MAX_ATTEMPTS="3")
    sandbox.faults({"method": "GET", "path": r"^files/rooms/\d+/link$", "action": "status", "status": 503})
    onboarding_id = stack.deliver(deal_payload("D-budget")).json()["onboarding_id"]
    failed = stack.wait_status(onboarding_id, "failed")
    assert failed["attempts"] == 3
    assert failed["last_error"]["step"] == "link"
    assert "gave up after 3 attempts" in failed["last_error"]["message"]
    assert "503" in failed["last_error"]["message"]


def test_sigterm_during_a_run_hands_the_onboarding_to_the_next_worker(database_url, sandbox, stacks):
    sandbox.configure(latency_ms=400)
    stack = stacks(database_url, LEASE_SECONDS="60")
    onboarding_id = stack.deliver(deal_payload("D-term")).json()["onboarding_id"]
    wait_until(lambda: sandbox.rooms(), timeout=20, message="the room to exist")
    stack.worker.signal(signal.SIGTERM)
    assert stack.worker.popen.wait(20) == 0
    assert "released" in stack.worker.output() or "run ended: released" in stack.worker.output()
    paused = stack.onboarding(onboarding_id)
    assert paused["status"] == "queued" and paused["attempts"] == 0
    started = time.monotonic()
    replacement = start_worker(stack.env, stack.worker.log_path.parent, name="worker-2")
    try:
        stack.wait_status(onboarding_id, "completed", timeout=30)
    finally:
        replacement.stop()
    assert time.monotonic() - started < 30  # not a lease expiry (60 s): the lease was handed back
    assert_one_complete_room(sandbox, "D-term")
    assert_told_once(sandbox, [onboarding_id])


def test_the_web_process_drains_on_sigterm(sqlite_url, sandbox, tmp_path):
    env = service_env(sqlite_url, sandbox.url, sandbox.crm_url, READINESS_DRAIN_SECONDS="3")
    port = free_port()
    web = start_web(env, tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    web.signal(signal.SIGTERM)
    ready = wait_until(lambda: requests.get(f"{url}/readyz", timeout=5).status_code == 503, timeout=3,
                       message="/readyz to answer 503")
    assert ready
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    raw, headers = signed(deal_payload("D-drain"))
    assert requests.post(f"{url}/webhooks/deal-won", data=raw, headers=headers, timeout=5).status_code == 202
    assert web.popen.wait(30) == 0

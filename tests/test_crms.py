"""HubSpot and Pipedrive end to end over real HTTP: their webhooks in, rooms made, the deal written back.

gunicorn and a worker run with all three sources on, against the sandbox's DocSpace, HubSpot and Pipedrive.
HubSpot batches are signed with HubSpot's own client (hubspot.utils.signature), not with our code.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import pytest
import requests
from hubspot.utils.signature import Signature

from onboarding.sandbox.hubspot import CUSTOM_LOST_STAGE, CUSTOM_PIPELINE_ID, CUSTOM_WON_STAGE, PORTAL_ID
from onboarding.sandbox.pipedrive import COMPANY_ID
from tests.conftest import ADMIN_TOKEN, HUBSPOT_TOKEN, PIPEDRIVE_TOKEN, Sandbox, deal_payload, service_env, signed
from tests.processes import Process, free_port, run_flask, start_web, start_worker, wait_until

pytestmark = pytest.mark.slow

PUBLIC_BASE_URL = "https://onboarding.example.com"
HUBSPOT_SECRET = "hubspot-client-secret-" + uuid.uuid4().hex
PIPEDRIVE_USER, PIPEDRIVE_PASSWORD = "pipedrive-hook", "pd-" + uuid.uuid4().hex
REP_EMAIL = "rep@acme-sales.example"


@dataclass
class CrmStack:
    """The running service with HubSpot and Pipedrive on."""

    url: str
    env: dict
    web: Process
    worker: Process
    sandbox: Sandbox

    def hubspot(self, events: list[dict], *, secret: str = HUBSPOT_SECRET, timestamp_ms: int | None = None,
                headers: dict | None = None) -> requests.Response:
        """POST a HubSpot batch, signed v3 by HubSpot's own client for the public URL HubSpot calls."""
        body = json.dumps(events)
        timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
        signature = Signature.get_signature(secret, body, "v3", f"{PUBLIC_BASE_URL}/webhooks/hubspot", "POST",
                                            timestamp)
        sent = {"Content-Type": "application/json", "X-HubSpot-Signature-v3": signature,
                "X-HubSpot-Request-Timestamp": timestamp, **(headers or {})}
        return requests.post(f"{self.url}/webhooks/hubspot", data=body.encode(), headers=sent, timeout=10)

    def pipedrive(self, payload: dict, user: str = PIPEDRIVE_USER,
                  password: str = PIPEDRIVE_PASSWORD) -> requests.Response:
        """POST a Pipedrive webhook with HTTP Basic credentials."""
        return requests.post(f"{self.url}/webhooks/pipedrive", json=payload, auth=(user, password), timeout=10)

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the admin API."""
        return requests.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                timeout=10, **kwargs)

    def onboardings(self) -> list[dict]:
        """Every onboarding, newest first."""
        return self.admin("GET", "/api/onboardings?limit=500").json()["onboardings"]

    def events(self) -> list[dict]:
        """Every recorded event."""
        return self.admin("GET", "/api/events?limit=500").json()["events"]

    def wait_status(self, onboarding_id: str, status: str, timeout: float = 30) -> dict:
        """Wait until an onboarding reaches a status; return it."""
        def reached():
            current = self.admin("GET", f"/api/onboardings/{onboarding_id}").json()
            return current if current["status"] == status else None

        return wait_until(reached, timeout=timeout, interval=0.1, message=f"{onboarding_id} to be {status}")

    def onboarding_of(self, deal_id: str, timeout: float = 15) -> dict:
        """The onboarding of a CRM deal, once it exists."""
        return wait_until(lambda: next((item for item in self.onboardings() if item["deal"]["id"] == str(deal_id)),
                                       None), timeout=timeout, message=f"an onboarding of deal {deal_id}")


def crm_env(database_url: str, sandbox: Sandbox, **overrides: str) -> dict:
    """The service's environment with the generic, HubSpot and Pipedrive sources on."""
    return service_env(database_url, sandbox.url, sandbox.crm_url, PUBLIC_BASE_URL=PUBLIC_BASE_URL,
                       HUBSPOT_CLIENT_SECRET=HUBSPOT_SECRET, HUBSPOT_ACCESS_TOKEN=HUBSPOT_TOKEN,
                       HUBSPOT_API_URL=sandbox.hubspot_url, PIPEDRIVE_WEBHOOK_USER=PIPEDRIVE_USER,
                       PIPEDRIVE_WEBHOOK_PASSWORD=PIPEDRIVE_PASSWORD, PIPEDRIVE_API_TOKEN=PIPEDRIVE_TOKEN,
                       PIPEDRIVE_API_URL=sandbox.pipedrive_url, **overrides)


@pytest.fixture
def crm_stack(sqlite_url, sandbox, tmp_path):
    """Web and worker with the CRMs on, their write-back setup done, a room admin who owns the CRM deals."""
    env = crm_env(sqlite_url, sandbox)
    for crm in ("hubspot", "pipedrive"):
        result = run_flask(env, crm, "setup")
        assert result.returncode == 0, result.stderr
    sandbox.add_user(email=REP_EMAIL, displayName="Rita Rep", type="RoomAdmin")
    port = free_port()
    web = start_web(env, tmp_path, port)
    worker = start_worker(env, tmp_path)
    yield CrmStack(f"http://127.0.0.1:{port}", env, web, worker, sandbox)
    worker.stop()
    web.stop()


def stage_change(deal_id: str, stage: str, *, event_id: int = 1, subscription: str = "deal.propertyChange",
                 attempt: int = 0, occurred_at: int = 1764500000000) -> dict:
    """A HubSpot dealstage change event."""
    event = {"eventId": event_id, "subscriptionId": 11 if subscription.startswith("deal.") else 12,
             "portalId": PORTAL_ID, "appId": 77, "occurredAt": occurred_at, "subscriptionType": subscription,
             "attemptNumber": attempt, "objectId": int(deal_id), "propertyName": "dealstage",
             "propertyValue": stage, "changeSource": "CRM_UI", "sourceId": "userId:123"}
    if subscription.startswith("object."):
        event["objectTypeId"] = "0-3"
    return event


def hubspot_deal(sandbox: Sandbox, owner_id: str, name: str, **extra) -> str:
    """A HubSpot deal with a company (listed twice, as HubSpot does) and two contacts, the second primary."""
    created = sandbox.hubspot_add_deal(dealname=name, hubspot_owner_id=owner_id, company={"name": f"{name} Inc"},
                                       contacts=[{"email": f"other@{name.lower()}.example", "firstname": "Otto"},
                                                 {"email": f"Buyer@{name.lower()}.example", "firstname": "Bea",
                                                  "label": "Primary"}], **extra)
    return created["id"]


def test_a_hubspot_batch_onboards_exactly_its_won_deals_and_writes_the_room_back(crm_stack):
    sandbox = crm_stack.sandbox
    owner = sandbox.hubspot_add_owner(email=REP_EMAIL, firstName="Rita", lastName="Rep")
    won_default = hubspot_deal(sandbox, owner["id"], "Alpha")
    won_custom = hubspot_deal(sandbox, owner["id"], "Bravo", pipeline=CUSTOM_PIPELINE_ID, dealstage=CUSTOM_WON_STAGE)
    lost = hubspot_deal(sandbox, owner["id"], "Charlie", pipeline=CUSTOM_PIPELINE_ID, dealstage=CUSTOM_LOST_STAGE)
    batch = [stage_change(won_default, "closedwon", event_id=1),
             stage_change(won_custom, CUSTOM_WON_STAGE, event_id=2),
             stage_change(lost, CUSTOM_LOST_STAGE, event_id=3),
             {**stage_change(won_default, "x", event_id=4), "propertyName": "amount", "propertyValue": "1200"},
             # the same change again, from an object.* subscription
             stage_change(won_default, "closedwon", event_id=5, subscription="object.propertyChange")]

    started = time.monotonic()
    answer = crm_stack.hubspot(batch)
    assert answer.status_code == 200 and time.monotonic() - started < 5
    outcomes = [event["outcome"] for event in answer.json()["events"]]
    assert outcomes == ["created", "pending", "pending", "ignored", "duplicate"]

    rooms_by_tag = {}
    for deal_id in (won_default, won_custom):
        onboarding = crm_stack.onboarding_of(deal_id)
        assert (onboarding["source"], onboarding["account_id"]) == ("hubspot", str(PORTAL_ID))
        done = crm_stack.wait_status(onboarding["onboarding_id"], "completed")
        assert done["client"]["email"].startswith("buyer@")  # the contact labelled primary, lower-cased
        manager = next(step for step in done["steps"] if step["name"] == "manager")["result"]
        assert manager["email"] == REP_EMAIL and "deal owner" in manager["why"]
        rooms_by_tag[f"hubspot-{PORTAL_ID}-deal-{deal_id}"] = (deal_id, done)
    # The lost deal's pending event is judged too, and ignored, naming the stage.
    wait_until(lambda: all(event["outcome"] != "pending" for event in crm_stack.events()), message="no pending")
    assert len(crm_stack.onboardings()) == 2
    ignored = [event for event in crm_stack.events() if event["deal_id"] == lost]
    assert [event["outcome"] for event in ignored] == ["ignored"]
    assert "not closed-won" in ignored[0]["errors"]["_ignored"][0]

    rooms = sandbox.rooms()
    assert len(rooms) == 2
    rep = next(user for user in sandbox.state()["users"] if user["email"] == REP_EMAIL)
    for room in rooms:
        [tag] = [tag for tag in room["tags"] if tag.startswith("hubspot-")]
        deal_id, done = rooms_by_tag[tag]
        assert room["title"] == f"Client - {'Alpha' if deal_id == won_default else 'Bravo'} Inc"
        members = {member["id"]: member["access"] for member in room["members"]}
        assert members[rep["id"]] == 9
        deal = sandbox.hubspot_deal(deal_id)
        assert deal["properties"]["docspace_room_id"] == str(room["id"])
        assert deal["properties"]["docspace_room_url"] == room["links"][0]["shareLink"] == done["room"]["url"]
        [note] = deal["notes"]
        assert room["links"][0]["shareLink"] in note["body"]
    assert sandbox.hubspot_deal(lost)["notes"] == []

    # HubSpot redelivers the whole batch: nothing new.
    calls_before = len(sandbox.calls())
    again = crm_stack.hubspot([{**event, "attemptNumber": 1} for event in batch])
    outcomes = [event["outcome"] for event in again.json()["events"]]
    # The lost deal's change is judged afresh (as every event not onboarded is), pending for the worker again.
    assert outcomes == ["duplicate", "duplicate", "pending", "ignored", "duplicate"]
    wait_until(lambda: all(event["outcome"] != "pending" for event in crm_stack.events()), message="no pending")
    time.sleep(0.5)  # a poll's worth more
    assert len(sandbox.rooms()) == 2 and len(sandbox.calls()) == calls_before
    assert all(len(sandbox.hubspot_deal(deal_id)["notes"]) == 1 for deal_id in (won_default, won_custom))


def test_a_hubspot_deal_won_twice_gets_one_room_and_one_note(crm_stack):
    sandbox = crm_stack.sandbox
    owner = sandbox.hubspot_add_owner(email=REP_EMAIL, firstName="Rita", lastName="Rep")
    deal_id = hubspot_deal(sandbox, owner["id"], "Delta")
    crm_stack.hubspot([stage_change(deal_id, "closedwon", occurred_at=1764500000000)])
    crm_stack.wait_status(crm_stack.onboarding_of(deal_id)["onboarding_id"], "completed")
    # Reopened, then won again: a new change, a new event, the same deal.
    crm_stack.hubspot([stage_change(deal_id, "contractsent", occurred_at=1764500100000, event_id=8)])
    answer = crm_stack.hubspot([stage_change(deal_id, "closedwon", occurred_at=1764500200000, event_id=9)])
    assert answer.json()["events"][0]["outcome"] == "duplicate"
    time.sleep(1.5)
    assert len(sandbox.rooms()) == 1 and len(sandbox.hubspot_deal(deal_id)["notes"]) == 1


def test_the_room_tags_name_source_account_and_deal(crm_stack):
    sandbox = crm_stack.sandbox
    raw, headers = signed(deal_payload("42"))  # the generic source keeps deal-<id>
    assert requests.post(f"{crm_stack.url}/webhooks/deal-won", data=raw, headers=headers,
                         timeout=10).status_code == 202
    rep = sandbox.pipedrive_add_user(name="Rita Rep", email=REP_EMAIL)
    deal = sandbox.pipedrive_add_deal(title="Forty-two", owner_id=rep["id"],
                                      person={"name": "Pia Person", "emails": [{"value": "pia@p.example",
                                                                                "primary": True}]})
    crm_stack.pipedrive(won_v2(deal["id"]))
    for onboarding in wait_until(lambda: len(crm_stack.onboardings()) == 2 and crm_stack.onboardings()):
        crm_stack.wait_status(onboarding["onboarding_id"], "completed")
    tags = sorted(tag for room in sandbox.rooms() for tag in room["tags"] if "deal-" in tag)
    assert tags == ["deal-42", f"pipedrive-{COMPANY_ID}-deal-{deal['id']}"]


def won_v2(deal_id: int, event_id: str | None = None, company_id: int = COMPANY_ID) -> dict:
    """A Pipedrive webhook v2: a deal's status changed from open to won."""
    return {"meta": {"action": "change", "entity": "deal", "entity_id": str(deal_id),
                     "id": event_id or str(uuid.uuid4()), "company_id": str(company_id), "user_id": "15000001",
                     "version": "2.0", "attempt": 1, "timestamp": "2026-11-30T10:00:00.000Z", "type": "general",
                     "change_source": "app", "is_bulk_edit": False},
            "data": {"id": deal_id, "title": "ignored here", "status": "won", "owner_id": 15000001},
            "previous": {"status": "open"}}


def test_a_pipedrive_won_deal_gets_its_fields_and_one_note(crm_stack):
    sandbox = crm_stack.sandbox
    rep = sandbox.pipedrive_add_user(name="Rita Rep", email=REP_EMAIL)
    deal = sandbox.pipedrive_add_deal(title="Echo renewal", owner_id=rep["id"], organization={"name": "Echo GmbH"},
                                      person={"name": "Emil Echo", "emails": [
                                          {"value": "old@echo.example", "primary": False},
                                          {"value": "Emil@Echo.example", "primary": True}]})
    event_id = str(uuid.uuid4())
    answer = crm_stack.pipedrive(won_v2(deal["id"], event_id))
    assert answer.status_code == 202
    done = crm_stack.wait_status(answer.json()["onboarding_id"], "completed")
    assert (done["source"], done["account_id"], done["deal"]["title"]) == ("pipedrive", str(COMPANY_ID),
                                                                           "Echo renewal")
    assert (done["client"]["name"], done["client"]["email"]) == ("Echo GmbH", "emil@echo.example")

    [room] = crm_stack.sandbox.rooms()
    assert f"pipedrive-{COMPANY_ID}-deal-{deal['id']}" in room["tags"]
    state = sandbox.pipedrive_state()
    keys = {field["name"]: field["key"] for field in state["deal_fields"]}
    written = sandbox.pipedrive_deal(deal["id"])
    assert written["custom_fields"][keys["DocSpace room ID"]] == str(room["id"])
    assert written["custom_fields"][keys["DocSpace room link"]] == room["links"][0]["shareLink"]
    [note] = written["notes"]
    assert room["links"][0]["shareLink"] in note["content"]
    # The token only ever went in the x-api-token header.
    assert all("api_token" not in call["query"] for call in sandbox.pipedrive_calls())

    # A retry of the same webhook, a v1 webhook of the same win, and a second win: no second room or note.
    assert crm_stack.pipedrive(won_v2(deal["id"], event_id)).json()["duplicate"] is True
    v1 = {"v": 1, "event": "updated.deal", "retry": 0,
          "meta": {"v": 1, "action": "updated", "object": "deal", "id": deal["id"], "company_id": COMPANY_ID,
                   "timestamp_micro": 1764500000000000},
          "current": {"id": deal["id"], "status": "won"}, "previous": {"id": deal["id"], "status": "open"}}
    assert crm_stack.pipedrive(v1).json()["duplicate"] is True
    assert crm_stack.pipedrive(won_v2(deal["id"])).json()["duplicate"] is True
    not_won = won_v2(deal["id"])
    not_won["previous"] = {"title": "old title"}
    assert crm_stack.pipedrive(not_won).json()["status"] == "ignored"
    time.sleep(1)
    assert len(sandbox.rooms()) == 1 and len(sandbox.pipedrive_deal(deal["id"])["notes"]) == 1


def test_bad_signatures_and_credentials_get_401_and_record_nothing(crm_stack):
    event = [stage_change("30000000001", "closedwon")]
    now_ms = int(time.time() * 1000)
    refused = [
        crm_stack.hubspot(event, secret="not-the-client-secret"),
        crm_stack.hubspot(event, timestamp_ms=now_ms - 301_000),  # stale
        crm_stack.hubspot(event, timestamp_ms=now_ms + 301_000),  # ahead
        crm_stack.hubspot(event, headers={"X-HubSpot-Signature-v3": ""}),
        requests.post(f"{crm_stack.url}/webhooks/hubspot", json=event, timeout=10),
        crm_stack.pipedrive(won_v2(1001), password="wrong"),
        crm_stack.pipedrive(won_v2(1001), user="someone-else"),
        requests.post(f"{crm_stack.url}/webhooks/pipedrive", json=won_v2(1001), timeout=10),
    ]
    assert [answer.status_code for answer in refused] == [401] * len(refused)
    assert crm_stack.events() == [] and crm_stack.onboardings() == []
    # The signature covers the URL HubSpot called: the same batch signed for another URL is refused.
    body = json.dumps(event)
    timestamp = str(now_ms)
    other_url = Signature.get_signature(HUBSPOT_SECRET, body, "v3", f"{crm_stack.url}/webhooks/hubspot", "POST",
                                        timestamp)
    answer = requests.post(f"{crm_stack.url}/webhooks/hubspot", data=body, timeout=10, headers={
        "X-HubSpot-Signature-v3": other_url, "X-HubSpot-Request-Timestamp": timestamp})
    assert answer.status_code == 401 and crm_stack.events() == []


def test_hubspot_down_or_throttled_delays_the_room_but_never_the_acknowledgement(crm_stack):
    sandbox = crm_stack.sandbox
    owner = sandbox.hubspot_add_owner(email=REP_EMAIL, firstName="Rita", lastName="Rep")
    deal_id = hubspot_deal(sandbox, owner["id"], "Foxtrot", pipeline=CUSTOM_PIPELINE_ID,
                           dealstage=CUSTOM_WON_STAGE)
    # HubSpot is down when the worker asks its pipelines and when it reads the deal, then throttles the write-back.
    sandbox.faults({"action": "status", "target": "hubspot", "path": "pipelines", "status": 503, "times": 1},
                   {"action": "status", "target": "hubspot", "path": "objects/deals/", "method": "GET",
                    "status": 503, "times": 2},
                   {"action": "status", "target": "hubspot", "method": "PATCH", "status": 429, "retry_after": 2,
                    "times": 1})
    started = time.monotonic()
    answer = crm_stack.hubspot([stage_change(deal_id, CUSTOM_WON_STAGE)])
    assert answer.status_code == 200 and time.monotonic() - started < 1
    assert answer.json()["events"][0]["outcome"] == "pending"
    onboarding = crm_stack.onboarding_of(deal_id, timeout=30)
    done = crm_stack.wait_status(onboarding["onboarding_id"], "completed", timeout=60)
    assert done["attempts"] >= 2
    calls = sandbox.hubspot_calls()
    throttled = next(call for call in calls if call["status"] == 429)
    after = [call for call in calls if call["seq"] > throttled["seq"]]
    assert after and after[0]["started_at"] - throttled["started_at"] >= 2.0
    assert sandbox.hubspot_deal(deal_id)["properties"]["docspace_room_id"] == str(sandbox.rooms()[0]["id"])
    assert len(sandbox.hubspot_deal(deal_id)["notes"]) == 1


def test_a_deal_without_a_contact_email_fails_visibly_and_retry_works_once_fixed(crm_stack):
    sandbox = crm_stack.sandbox
    rep = sandbox.pipedrive_add_user(name="Rita Rep", email=REP_EMAIL)
    deal = sandbox.pipedrive_add_deal(title="Golf", owner_id=rep["id"], person={"name": "No Mail"})
    answer = crm_stack.pipedrive(won_v2(deal["id"]))
    onboarding_id = answer.json()["onboarding_id"]
    failed = crm_stack.wait_status(onboarding_id, "failed")
    assert "has no contact e-mail address" in failed["last_error"]["message"]
    assert failed["last_error"]["step"] == "enrich:client"
    assert sandbox.rooms() == []

    # Fixed in the CRM: the same person now has an address.
    sandbox.pipedrive_add_deal(title="Golf 2", owner_id=rep["id"], person={
        "name": "No Mail", "emails": [{"value": "nomail@golf.example", "primary": True}]})
    person_id = sandbox.pipedrive_deal(deal["id"])["person_id"]
    fixed = requests.patch(f"{sandbox.pipedrive_url}/api/v2/deals/{deal['id']}", timeout=5,
                           headers={"x-api-token": PIPEDRIVE_TOKEN},
                           json={"person_id": next(d["person_id"] for d in sandbox.pipedrive_state()["deals"]
                                                   if d["title"] == "Golf 2")})
    assert fixed.ok and sandbox.pipedrive_deal(deal["id"])["person_id"] != person_id
    assert crm_stack.admin("POST", f"/api/onboardings/{onboarding_id}/retry").json()["action"] == "retried"
    done = crm_stack.wait_status(onboarding_id, "completed")
    assert done["client"]["email"] == "nomail@golf.example"


def test_the_write_back_names_the_setup_command_when_the_fields_are_missing(sqlite_url, sandbox, tmp_path):
    env = crm_env(sqlite_url, sandbox)
    sandbox.add_user(email=REP_EMAIL, displayName="Rita Rep", type="RoomAdmin")
    web, worker = start_web(env, tmp_path, port := free_port()), start_worker(env, tmp_path)
    try:
        stack = CrmStack(f"http://127.0.0.1:{port}", env, web, worker, sandbox)
        owner = sandbox.hubspot_add_owner(email=REP_EMAIL, firstName="Rita", lastName="Rep")
        deal_id = hubspot_deal(sandbox, owner["id"], "Hotel")
        stack.hubspot([stage_change(deal_id, "closedwon")])
        onboarding_id = stack.onboarding_of(deal_id)["onboarding_id"]
        failed = stack.wait_status(onboarding_id, "failed")
        assert failed["last_error"]["step"] == "write-back"
        assert "run `flask --app wsgi hubspot setup`" in failed["last_error"]["message"]

        first = run_flask(env, "hubspot", "setup")
        second = run_flask(env, "hubspot", "setup")
        assert "created the deal property docspace_room_id" in first.stdout
        assert "created" not in second.stdout and second.returncode == 0
        assert sorted(sandbox.hubspot_state()["properties"]) == ["docspace_room_id", "docspace_room_url"]
        for _ in range(2):
            assert run_flask(env, "pipedrive", "setup").returncode == 0
        names = [field["name"] for field in sandbox.pipedrive_state()["deal_fields"]]
        assert sorted(names) == ["DocSpace room ID", "DocSpace room link"]

        stack.admin("POST", f"/api/onboardings/{onboarding_id}/retry")
        stack.wait_status(onboarding_id, "completed")
        assert len(sandbox.hubspot_deal(deal_id)["notes"]) == 1 and len(sandbox.rooms()) == 1
    finally:
        worker.stop()
        web.stop()


def test_a_note_whose_answer_was_lost_is_not_written_twice(crm_stack):
    sandbox = crm_stack.sandbox
    owner = sandbox.hubspot_add_owner(email=REP_EMAIL, firstName="Rita", lastName="Rep")
    hubspot_id = hubspot_deal(sandbox, owner["id"], "India")
    rep = sandbox.pipedrive_add_user(name="Rita Rep", email=REP_EMAIL)
    pipedrive = sandbox.pipedrive_add_deal(title="Juliet", owner_id=rep["id"], person={
        "name": "Jules", "emails": [{"value": "jules@juliet.example", "primary": True}]})
    # Each CRM makes the note, then the answer is lost on the way back.
    sandbox.faults({"action": "after_drop", "target": "hubspot", "method": "POST", "path": "objects/notes",
                    "times": 1},
                   {"action": "after_status", "target": "pipedrive", "method": "POST", "path": "v1/notes",
                    "status": 502, "times": 1})
    crm_stack.hubspot([stage_change(hubspot_id, "closedwon")])
    crm_stack.pipedrive(won_v2(pipedrive["id"]))
    for deal_id in (hubspot_id, str(pipedrive["id"])):
        done = crm_stack.wait_status(crm_stack.onboarding_of(deal_id)["onboarding_id"], "completed")
        write_back = next(step for step in done["steps"] if step["name"] == "write-back")
        assert write_back["attempts"] == 2 and write_back["result"]["note_found"] is True
    assert len(sandbox.hubspot_deal(hubspot_id)["notes"]) == 1
    assert len(sandbox.pipedrive_deal(pipedrive["id"])["notes"]) == 1
    assert len(sandbox.rooms()) == 2

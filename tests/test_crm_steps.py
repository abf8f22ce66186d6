"""CRM enrichment and write-backs, in milliseconds: the real app, worker and clients, with the sandbox served
in-process (onboarding/sandbox/inprocess.py) instead of over sockets."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from hubspot.utils.signature import Signature

from onboarding import create_app
from onboarding.bootstrap import Services, bootstrap
from onboarding.config import load_settings
from onboarding.crm.hubspot.api import rate_limit_wait
from onboarding.crm.pipedrive.steps import field_keys
from onboarding.outside import OutsideApi
from onboarding.sandbox import create_app as create_sandbox
from onboarding.sandbox.hubspot import PORTAL_ID
from onboarding.sandbox.inprocess import InProcessAdapter
from onboarding.sandbox.pipedrive import COMPANY_ID
from onboarding.worker import Worker
from tests.conftest import API_KEY, HUBSPOT_TOKEN, MANAGER_ID, PIPEDRIVE_TOKEN, service_env

SANDBOX = "http://sandbox.test"
PUBLIC = "https://onboarding.example.com"
HUBSPOT_SECRET = "hs-secret-" + uuid.uuid4().hex


class World:
    """The service's web app and worker, wired to an in-process sandbox."""

    def __init__(self, database_url: str, **overrides: str) -> None:
        """Services from a full environment with every CRM on, their HTTP sessions served by the sandbox."""
        self.sandbox = create_sandbox(API_KEY, hubspot_token=HUBSPOT_TOKEN, pipedrive_token=PIPEDRIVE_TOKEN)
        self.control = self.sandbox.test_client()
        env = service_env(database_url, SANDBOX, f"{SANDBOX}/crm/callbacks", PUBLIC_BASE_URL=PUBLIC,
                          HUBSPOT_CLIENT_SECRET=HUBSPOT_SECRET, HUBSPOT_ACCESS_TOKEN=HUBSPOT_TOKEN,
                          HUBSPOT_API_URL=f"{SANDBOX}/hubspot", PIPEDRIVE_WEBHOOK_USER="u",
                          PIPEDRIVE_WEBHOOK_PASSWORD="p", PIPEDRIVE_API_TOKEN=PIPEDRIVE_TOKEN,
                          PIPEDRIVE_API_URL=f"{SANDBOX}/pipedrive", **overrides)
        self.services: Services = bootstrap(load_settings(env))
        adapter = InProcessAdapter(self.sandbox)
        for api in _outside_apis(self.services):
            api.session.mount(SANDBOX, adapter)
        self.web = create_app(services=self.services).test_client()

    def sandbox_post(self, path: str, body: dict) -> dict:
        """Call a /_sandbox control endpoint."""
        answer = self.control.post(f"/_sandbox/{path}", json=body)
        assert answer.status_code < 300, answer.get_data()
        return answer.get_json()

    def state(self, crm: str) -> dict:
        """A CRM imitation's state."""
        return self.control.get(f"/_sandbox/{crm}/state").get_json()

    def hubspot_won(self, deal_id: str) -> dict:
        """Deliver a signed HubSpot batch moving the deal to closedwon; return the event's outcome."""
        body = json.dumps([{"eventId": 1, "subscriptionId": 2, "portalId": PORTAL_ID, "appId": 3,
                            "occurredAt": 1764500000000, "subscriptionType": "deal.propertyChange",
                            "attemptNumber": 0, "objectId": int(deal_id), "propertyName": "dealstage",
                            "propertyValue": "closedwon"}])
        timestamp = str(int(time.time() * 1000))
        signature = Signature.get_signature(HUBSPOT_SECRET, body, "v3", f"{PUBLIC}/webhooks/hubspot", "POST",
                                            timestamp)
        answer = self.web.post("/webhooks/hubspot", data=body, headers={
            "X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp})
        return answer.get_json()["events"][0]

    def work(self) -> dict:
        """Run a worker until nothing is left; return the only onboarding, in detail."""
        Worker(self.services).run(once=True)
        [brief] = self.web.get("/api/onboardings", headers=self.admin).get_json()["onboardings"]
        return self.web.get(f"/api/onboardings/{brief['onboarding_id']}", headers=self.admin).get_json()

    @property
    def admin(self) -> dict:
        """The admin API's headers."""
        return {"Authorization": f"Bearer {self.services.settings.admin_token}"}


def _outside_apis(services: Services) -> list[OutsideApi]:
    """Every outside API client the services hold."""
    apis = [services.docspace.api]
    for crm in services.crms.values():
        client = crm.write_back.api
        apis.append(client if isinstance(client, OutsideApi) else client.api)
    return apis


def step(onboarding: dict, name: str) -> dict:
    """One step of an onboarding's detail."""
    return next(entry for entry in onboarding["steps"] if entry["name"] == name)


@pytest.fixture
def world(sqlite_url):
    """A world on an empty SQLite database."""
    built = World(sqlite_url)
    yield built
    built.services.db.dispose()


def test_an_owner_who_cannot_manage_rooms_gives_way_to_the_account_manager(world):
    world.sandbox_post("users", {"email": "plain@sales.example", "displayName": "Plain User", "type": "User"})
    owner = world.sandbox_post("hubspot/owners", {"email": "plain@sales.example", "firstName": "P", "lastName": "U"})
    deal = world.sandbox_post("hubspot/deals", {"dealname": "Kilo", "hubspot_owner_id": owner["id"],
                                                "company": {"name": "Kilo Ltd"},
                                                "contacts": [{"email": "k@kilo.example"}]})
    assert world.web.application.test_cli_runner().invoke(args=["hubspot", "setup"]).exit_code == 0
    assert world.hubspot_won(deal["id"])["outcome"] == "created"
    done = world.work()
    assert done["status"] == "completed", done["last_error"]
    manager = step(done, "manager")["result"]
    assert manager["user_id"] == MANAGER_ID
    assert "plain@sales.example" in manager["why"] and "cannot manage rooms" in manager["why"]
    assert done["manager_user_id"] == MANAGER_ID
    assert (done["client"]["name"], done["deal"]["title"]) == ("Kilo Ltd", "Kilo")
    # The company HubSpot lists twice is read once.
    company_reads = [call for call in world.state("hubspot")["calls"] if "objects/companies" in call["path"]]
    assert len(company_reads) == 1


def test_without_a_fallback_an_owner_unknown_to_docspace_fails_saying_so(sqlite_url):
    world = World(sqlite_url, ACCOUNT_MANAGER_ID="")
    owner = world.sandbox_post("hubspot/owners", {"email": "nobody@sales.example", "firstName": "N",
                                                  "lastName": "B"})
    deal = world.sandbox_post("hubspot/deals", {"dealname": "Lima", "hubspot_owner_id": owner["id"],
                                                "contacts": [{"email": "l@lima.example", "firstname": "Lou"}]})
    world.hubspot_won(deal["id"])
    failed = world.work()
    assert failed["status"] == "failed" and failed["last_error"]["step"] == "manager"
    assert "nobody@sales.example) has no DocSpace account" in failed["last_error"]["message"]
    assert "ACCOUNT_MANAGER_ID" in failed["last_error"]["message"]
    assert failed["client"]["name"] == "Lou"  # no company: the contact's name
    world.services.db.dispose()


def test_pipedrive_fields_are_found_by_name_and_the_oldest_of_two_wins():
    fields = [{"id": 70, "key": "b" * 40, "name": "DocSpace room ID"}, {"id": 12, "key": "title", "name": "Title"},
              {"id": 60, "key": "a" * 40, "name": "DocSpace room ID"}, {"id": 61, "key": "c" * 40,
                                                                      "name": "DocSpace room link"}]
    assert field_keys(fields) == {"DocSpace room ID": "a" * 40, "DocSpace room link": "c" * 40}


def test_a_pipedrive_deal_runs_in_process_with_its_enrichment_and_write_back(world):
    for _ in range(2):
        assert world.web.application.test_cli_runner().invoke(args=["pipedrive", "setup"]).exit_code == 0
    user = world.sandbox_post("pipedrive/users", {"name": "Rita", "email": "alice@sandbox.example"})
    deal = world.sandbox_post("pipedrive/deals", {"title": "Mike", "owner_id": user["id"], "person": {
        "name": "Mo", "emails": [{"value": "mo@mike.example", "primary": True}]}})
    answer = world.web.post("/webhooks/pipedrive", auth=("u", "p"), json={
        "meta": {"action": "change", "entity": "deal", "entity_id": str(deal["id"]), "id": str(uuid.uuid4()),
                 "company_id": str(COMPANY_ID), "version": "2.0"},
        "data": {"id": deal["id"], "status": "won"}, "previous": {"status": "open"}})
    assert answer.status_code == 202
    done = world.work()
    assert done["status"] == "completed", done["last_error"]
    assert step(done, "manager")["result"]["user_id"] == MANAGER_ID  # alice@sandbox.example is a room admin
    written = next(entry for entry in world.state("pipedrive")["deals"] if entry["id"] == deal["id"])
    assert len(written["notes"]) == 1 and list(written["custom_fields"].values()).count(None) == 0
    assert len(world.state("pipedrive")["deal_fields"]) == 2  # setup twice made them once


def test_hubspot_429_waits_by_its_policy():
    class Answer:
        def __init__(self, body: dict, headers: dict | None = None) -> None:
            self.body, self.headers = body, headers or {}

        def json(self) -> dict:
            return self.body

    from datetime import UTC, datetime

    assert rate_limit_wait(Answer({"policyName": "TEN_SECONDLY_ROLLING"})) == 10.0
    assert rate_limit_wait(Answer({"policyName": "SECONDLY"})) == 1.0
    assert rate_limit_wait(Answer({"policyName": "TEN_SECONDLY_ROLLING"}, {"Retry-After": "3"})) == 3.0
    late = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert rate_limit_wait(Answer({"policyName": "DAILY"}), now=late) == 3600.0


def test_an_onboarding_whose_crm_was_switched_off_fails_saying_so(world):
    answer = world.web.post("/webhooks/pipedrive", auth=("u", "p"), json={
        "meta": {"action": "change", "entity": "deal", "entity_id": "9", "id": str(uuid.uuid4()),
                 "company_id": str(COMPANY_ID), "version": "2.0"},
        "data": {"id": 9, "status": "won"}, "previous": {"status": "open"}})
    assert answer.status_code == 202
    del world.services.crms["pipedrive"]  # as a worker started without PIPEDRIVE_* settings
    failed = world.work()
    assert failed["status"] == "failed"
    assert failed["last_error"]["message"].startswith("the pipedrive CRM is not configured in this worker")

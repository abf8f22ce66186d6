"""End to end over real HTTP: gunicorn, a worker, the DocSpace sandbox and its CRM receiver, on both engines."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.conftest import ADMIN_TOKEN, CRM_SECRET, MANAGER_ID, Sandbox, deal_payload, service_env, signed
from tests.processes import Process, free_port, start_web, start_worker, wait_until

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    """The running service."""

    url: str
    env: dict
    web: Process
    worker: Process
    sandbox: Sandbox

    def deliver(self, payload: dict, message_id: str | None = None) -> requests.Response:
        """POST a signed deal to the web process."""
        raw, headers = signed(payload, message_id=message_id)
        return requests.post(f"{self.url}/webhooks/deal-won", data=raw, headers=headers, timeout=10)

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the admin API."""
        return requests.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                timeout=10, **kwargs)

    def onboarding(self, onboarding_id: str) -> dict:
        """One onboarding, from the admin API."""
        return self.admin("GET", f"/api/onboardings/{onboarding_id}").json()

    def wait_status(self, onboarding_id: str, status: str, timeout: float = 30) -> dict:
        """Wait until an onboarding reaches a status."""
        def reached():
            current = self.onboarding(onboarding_id)
            return current if current["status"] == status else None

        return wait_until(reached, timeout=timeout, interval=0.1, message=f"{onboarding_id} to be {status}")


@pytest.fixture
def stack(database_url, sandbox, tmp_path, request):
    """Web and worker processes on an empty database, talking to the sandbox."""
    env = service_env(database_url, sandbox.url, sandbox.crm_url)
    port = free_port()
    web = start_web(env, tmp_path, port)
    worker = start_worker(env, tmp_path)
    yield Stack(f"http://127.0.0.1:{port}", env, web, worker, sandbox)
    worker.stop()
    web.stop()


def verified_callbacks(sandbox: Sandbox) -> list[dict]:
    """The CRM callbacks received, each verified with the standardwebhooks library."""
    bodies = []
    for callback in sandbox.callbacks():
        headers = {name.lower(): value for name, value in callback["headers"].items()}
        bodies.append(Webhook(CRM_SECRET).verify(callback["body"], headers))
    return bodies


def test_a_won_deal_becomes_a_complete_room_and_the_crm_is_told(stack):
    answer = stack.deliver(deal_payload("D-7781"))
    assert answer.status_code == 202
    onboarding_id = answer.json()["onboarding_id"]
    done = stack.wait_status(onboarding_id, "completed")

    rooms = stack.sandbox.rooms()
    assert len(rooms) == 1
    room = rooms[0]
    assert room["roomType"] == 5
    assert room["title"] == "Client - Acme Corporation"
    assert {"deal-D-7781", "crm-client"} <= set(room["tags"])
    folders = {folder["title"]: folder for folder in room["folders"]}
    assert set(folders) == {"Invoices", "Contracts", "Deliverables"}
    assert sorted(file["title"] for file in folders["Deliverables"]["files"]) == [
        "How to use the client portal.pdf", "Welcome to your client room.pdf"]
    assert folders["Invoices"]["files"] == [] and folders["Contracts"]["files"] == []
    members = {member.get("email"): member for member in room["members"]}
    manager = next(member for member in room["members"] if member["id"] == MANAGER_ID)
    assert manager["access"] == 9
    assert members["contact@acme.example.com"]["access"] == 2
    assert len(room["links"]) == 1 and room["links"][0]["primary"]

    # The share call used invitations with the room roles, never the sample's entries.
    share = stack.sandbox.calls_to("PUT", "files/rooms/{id}/share")
    assert len(share) == 1
    assert share[0]["body"]["invitations"] == [{"id": MANAGER_ID, "access": 9},
                                               {"email": "contact@acme.example.com", "access": 2}]

    [callback] = verified_callbacks(stack.sandbox)
    assert callback["type"] == "onboarding.completed"
    assert (callback["onboarding_id"], callback["deal_id"], callback["client_id"]) == (
        onboarding_id, "D-7781", "C-10045")
    assert callback["room"] == {"id": room["id"], "title": room["title"], "url": room["links"][0]["shareLink"]}
    # Both link to this onboarding (each signed when it was made, so their timestamps may differ).
    for link in (callback["status_url"], answer.json()["status_url"]):
        assert link.startswith(f"http://onboarding.test/status/{onboarding_id}.")

    assert done["room"] == callback["room"]
    # room, client, 3 folders, 2 copies, access, link, callback
    assert [step["status"] for step in done["steps"]] == ["done"] * 10


def test_the_same_deal_again_changes_nothing(stack):
    payload = deal_payload("D-42")
    first = stack.deliver(payload, message_id="msg_first")
    onboarding_id = first.json()["onboarding_id"]
    stack.wait_status(onboarding_id, "completed")
    calls_before = len(stack.sandbox.calls())

    again = stack.deliver(payload, message_id="msg_first")
    other_id = stack.deliver(payload, message_id="msg_second")
    for answer in (again, other_id):
        assert answer.status_code == 200
        assert answer.json()["onboarding_id"] == onboarding_id
        assert answer.json()["status"] == "completed"
    # Give a worker every chance to do something it should not.
    wait_until(lambda: "run ended" in stack.worker.output(), message="the first run to be logged")
    listing = stack.admin("GET", "/api/onboardings").json()["onboardings"]
    assert [item["onboarding_id"] for item in listing] == [onboarding_id]
    assert len(stack.sandbox.rooms()) == 1
    assert len(stack.sandbox.calls()) == calls_before
    assert len(verified_callbacks(stack.sandbox)) == 1


def test_a_known_client_is_invited_by_id(stack):
    payload = deal_payload("D-5")
    payload["client"]["email"] = "client@known.example"
    onboarding_id = stack.deliver(payload).json()["onboarding_id"]
    done = stack.wait_status(onboarding_id, "completed")
    share = stack.sandbox.calls_to("PUT", "files/rooms/{id}/share")
    assert share[0]["body"]["invitations"][1] == {"id": "44444444-4444-4444-8444-444444444444", "access": 2}
    access = next(step for step in done["steps"] if step["name"] == "access")
    assert access["result"]["client_invited_by"] == "id"
    client = next(step for step in done["steps"] if step["name"] == "client")
    assert client["result"] == {"user_id": "44444444-4444-4444-8444-444444444444"}


def test_the_status_link_shows_progress_without_the_admin_token(stack):
    answer = stack.deliver(deal_payload("D-6")).json()
    stack.wait_status(answer["onboarding_id"], "completed")
    status_url = answer["status_url"].replace("http://onboarding.test", stack.url)
    shown = requests.get(status_url, timeout=5).json()
    assert shown["status"] == "completed"
    assert shown["room"]["url"].startswith(stack.sandbox.url)
    assert "result" not in json.dumps(shown["steps"])
    assert requests.get(status_url[:-3] + "abc", timeout=5).status_code == 404
    assert stack.admin("GET", "/api/onboardings").ok
    assert requests.get(f"{stack.url}/api/onboardings", timeout=5).status_code == 401

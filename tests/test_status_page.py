"""Status links as a page for browsers, JSON for everyone else (on both engines)."""

from __future__ import annotations

import copy
import time

import pytest
from sqlalchemy import update

from onboarding.models import Onboarding, StepResult, utcnow
from onboarding.status import step_title
from onboarding.views import onboarding_summary
from tests.conftest import deal_payload, signed

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def deliver(client, payload: dict) -> tuple[str, str]:
    """Deliver a signed deal; its onboarding id and its status link's path."""
    raw, headers = signed(payload)
    answer = client.post("/webhooks/deal-won", data=raw, headers=headers)
    assert answer.status_code == 202
    body = answer.get_json()
    return body["onboarding_id"], body["status_url"].replace("http://onboarding.test", "")


def page(client, path: str, status: int = 200) -> str:
    """The status page as a browser gets it."""
    answer = client.get(path, headers={"Accept": BROWSER})
    assert answer.status_code == status
    assert answer.mimetype == "text/html"
    assert "Accept" in answer.vary
    return answer.get_data(as_text=True)


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_programs_get_the_json_as_before(app, client, accept):
    onboarding_id, path = deliver(client, deal_payload("D-501"))
    answer = client.get(path, headers={"Accept": accept} if accept else {})
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    services = app.extensions["onboarding"]
    with app.app_context():
        expected = app.json.response(onboarding_summary(services.db, onboarding_id, services.step_names,
                                                        detailed=False)).get_data()
    assert answer.get_data() == expected


def test_a_browser_gets_a_page_with_the_deal_the_client_and_the_steps_to_do(client):
    _, path = deliver(client, deal_payload("D-502"))
    html = page(client, path)
    assert '<html lang="en">' in html
    assert '<meta name="viewport"' in html
    assert "<script" not in html
    assert "DocSpace onboarding" in html
    assert "D-502" in html and "Acme annual plan" in html
    assert "Acme Corporation" in html and "contact@acme.example.com" in html
    assert '<span class="badge badge-queued">' in html
    assert "Still to do (10)" in html and "Done (0)" in html
    for title in ("Create the client room", "Folder “Invoices”", "Copy “Welcome to your client room.pdf” into "
                  "Deliverables", "Tell the CRM"):
        assert title in html


def test_a_completed_onboarding_shows_the_room_link(app, client):
    onboarding_id, path = deliver(client, deal_payload("D-503"))
    db = app.extensions["onboarding"].db
    with db.transaction() as session:
        session.execute(update(Onboarding).where(Onboarding.id == onboarding_id)
                        .values(status="completed", completed_at=utcnow(), room_id="4101"))
        session.add_all([StepResult(onboarding_id=onboarding_id, name="room", status="done", attempts=1,
                                    result={"room_id": 4101, "title": "Client - Acme Corporation"}),
                         StepResult(onboarding_id=onboarding_id, name="link", status="done", attempts=1,
                                    result={"url": "https://portal.example.com/s/abc?x=1&y=2"})])
    html = page(client, path)
    assert '<span class="badge badge-completed">' in html
    assert "The client room is ready since" in html
    assert '<a href="https://portal.example.com/s/abc?x=1&amp;y=2" rel="noreferrer noopener">' in html
    assert "Client - Acme Corporation" in html
    assert "Done (2)" in html and "Still to do (8)" in html
    assert "Finished" in html


def test_a_failed_onboarding_says_which_step_failed_and_why(app, client):
    onboarding_id, path = deliver(client, deal_payload("D-504"))
    with app.extensions["onboarding"].db.transaction() as session:
        session.execute(update(Onboarding).where(Onboarding.id == onboarding_id).values(
            status="failed", last_error={"step": "folder:Invoices", "message": "DocSpace refused: the room is full"}))
        session.add(StepResult(onboarding_id=onboarding_id, name="folder:Invoices", status="failed", attempts=3,
                               error={"message": "DocSpace refused: the room is full"}))
    html = page(client, path)
    assert '<span class="badge badge-failed">' in html
    assert "<strong>Folder “Invoices”</strong> failed: DocSpace refused: the room is full" in html
    assert "Folder “Invoices” <span class=\"muted\">(failed)</span>" in html


def test_everything_from_the_deal_is_escaped(client):
    _, path = deliver(client, deal_payload("D-505", client={"id": "C-1", "name": "<script>alert(1)</script>",
                                                            "email": "x@example.com"}))
    html = page(client, path)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_page_loads_nothing_and_leaks_no_referer(client):
    _, path = deliver(client, deal_payload("D-506"))
    answer = client.get(path, headers={"Accept": BROWSER})
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


def test_an_invalid_link_is_a_page_for_browsers_and_json_for_programs(client):
    assert "This status link is not valid." in page(client, "/status/nonsense", 404)
    answer = client.get("/status/nonsense")
    assert answer.status_code == 404
    assert answer.get_json() == {"error": "This status link is not valid."}


def test_an_expired_link_is_a_page_for_browsers_and_json_for_programs(app, client):
    onboarding_id, _ = deliver(client, deal_payload("D-507"))
    signer = copy.copy(app.extensions["onboarding"].status_links.signer)
    signer.get_timestamp = lambda: int(time.time()) - 365 * 24 * 3600
    path = f"/status/{signer.sign(onboarding_id).decode()}"
    assert "This status link has expired." in page(client, path, 410)
    answer = client.get(path, headers={"Accept": "application/json"})
    assert answer.status_code == 410
    assert answer.get_json() == {"error": "This status link has expired."}


@pytest.mark.parametrize(("name", "title"), [
    ("folder:Invoices", "Folder “Invoices”"),
    ("copy:Deliverables/Welcome.pdf", "Copy “Welcome.pdf” into Deliverables"),
    ("copy:/Welcome.pdf", "Copy “Welcome.pdf” into the room"),
    ("enrich:client", "Find the client in the CRM"),
    ("write-back", "Write the room onto the CRM deal"),
    ("callback", "Tell the CRM"),
    ("manager", "Choose the room manager"),
    ("hubspot:deal", "Read the deal"),
    ("pipedrive:deal", "Read the deal"),
    ("something:new", "something:new"),
])
def test_step_names_in_words(name, title):
    assert step_title(name) == title

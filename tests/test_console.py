"""The operator console through Flask's test client: sign-in, sessions, CSRF, the sign-in limit, lists, search,
actions and the audit (the browser tests in test_console_browser.py drive the same pages in Chromium)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from onboarding.models import AuditEntry, Onboarding
from tests.conftest import ADMIN_TOKEN, deal_payload, service_env, signed
from tests.processes import run_flask


def csrf(page: str) -> str:
    """The CSRF token in a page's forms."""
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, token: str = ADMIN_TOKEN, **extra):
    """Sign in through the form, as a browser does."""
    form = csrf(client.get("/console/login").get_data(as_text=True))
    return client.post("/console/login", data={"csrf_token": form, "token": token, **extra})


def deliver(app, deal_id: str, **changes) -> str:
    """Record a won deal; return its onboarding id."""
    raw, headers = signed(deal_payload(deal_id, **changes))
    return app.test_client().post("/webhooks/deal-won", data=raw, headers=headers).get_json()["onboarding_id"]


def fail(app, onboarding_id: str, message: str) -> None:
    """Mark an onboarding failed at its room step, as the worker would."""
    with app.extensions["onboarding"].db.writing() as connection:
        connection.execute(update(Onboarding).where(Onboarding.id == onboarding_id).values(
            status="failed", last_error={"step": "room", "message": message, "kind": "permanent"}))


@pytest.fixture
def console(make_app, sqlite_url):
    """A signed-in console client on an app, and the app."""
    app = make_app(sqlite_url)
    client = app.test_client()
    assert sign_in(client).status_code == 302
    yield client, app
    app.extensions["onboarding"].db.dispose()


@pytest.mark.parametrize(("method", "path"), [("GET", "/console"), ("GET", "/console/events"),
                                              ("GET", "/console/onboardings/0123"), ("GET", "/console?q=x")])
def test_every_console_url_sends_a_stranger_to_sign_in(make_app, method, path):
    answer = make_app().test_client().open(path, method=method)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/console/login?next=")


def test_posts_without_the_csrf_token_are_refused(console):
    client, app = console
    onboarding_id = deliver(app, "D-1")
    fail(app, onboarding_id, "boom")
    for path in (f"/console/onboardings/{onboarding_id}/retry", "/console/retry-failed", "/console/logout"):
        assert client.post(path, data={}).status_code == 400
        assert client.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert app.test_client().post("/console/login", data={"token": ADMIN_TOKEN}).status_code == 400
    with app.extensions["onboarding"].db.reading() as session:
        assert session.get(Onboarding, onboarding_id).status == "failed"


def test_the_session_cookie_is_httponly_lax_and_secure_behind_https(make_app):
    for base, secure in (("http://onboarding.test", False), ("https://onboarding.example.com", True)):
        client = make_app(PUBLIC_BASE_URL=base).test_client()
        cookie = sign_in(client).headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
        assert ("Secure" in cookie) is secure
        assert ADMIN_TOKEN not in cookie


def test_a_wrong_token_is_refused_and_ten_failures_a_minute_lock_the_address_out(make_app):
    client = make_app().test_client()
    for _ in range(10):
        answer = sign_in(client, token="not-the-token")
        assert answer.status_code == 401 and "That is not the admin token." in answer.get_data(as_text=True)
    assert sign_in(client).status_code == 429  # even the right token, until the minute has passed
    # Counted in the database: another web process sees the same lock; another address is not locked.
    assert sign_in(make_app().test_client()).status_code == 429
    elsewhere = make_app().test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.9.8.7"
    assert sign_in(elsewhere).status_code == 302


def test_the_list_counts_filters_and_searches(console):
    client, app = console
    ids = {deal: deliver(app, deal) for deal in ("D-100", "D-200")}
    special = deliver(app, "D-300", client={"id": "C-9", "name": "Zeta Zinc", "email": "ops@zeta.example"})
    fail(app, ids["D-200"], "DocSpace refused (403): no rights")
    with app.extensions["onboarding"].db.writing() as connection:
        connection.execute(update(Onboarding).where(Onboarding.id == special).values(room_id="4711"))
    page = client.get("/console").get_data(as_text=True)
    assert "D-100" in page and "D-200" in page and "D-300" in page
    assert re.search(r"badge-failed\">failed</span>\s*<strong>1</strong>", page)
    failed = client.get("/console?status=failed").get_data(as_text=True)
    assert "D-200" in failed and "D-100" not in failed and "no rights" in failed
    for query in ("D-300", "zinc", "ZETA.example", "4711"):
        found = client.get("/console", query_string={"q": query}).get_data(as_text=True)
        assert "D-300" in found and "D-100" not in found, query
    assert "No onboarding matches." in client.get("/console?q=50%25_off").get_data(as_text=True)


def test_retry_from_the_console_is_audited_beside_the_api_and_the_cli(console, sqlite_url):
    client, app = console
    onboarding_id = deliver(app, "D-400")
    fail(app, onboarding_id, "DocSpace refused (404): template 9001 not found")
    page = client.get(f"/console/onboardings/{onboarding_id}").get_data(as_text=True)
    assert "template 9001 not found" in page and ">Retry</button>" in page
    answer = client.post(f"/console/onboardings/{onboarding_id}/retry", data={"csrf_token": csrf(page)})
    assert answer.status_code == 302
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Queued again" in page and "badge-queued" in page

    fail(app, onboarding_id, "again")
    api = app.test_client().post(f"/api/onboardings/{onboarding_id}/retry",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert api.get_json()["action"] == "retried"
    fail(app, onboarding_id, "and again")
    cli = run_flask(service_env(sqlite_url, "http://127.0.0.1:9", "http://127.0.0.1:9/crm"), "retry", onboarding_id)
    assert "retried" in cli.stdout, cli.stderr
    with app.extensions["onboarding"].db.reading() as session:
        actors = [entry.actor for entry in session.query(AuditEntry).filter(
            AuditEntry.onboarding_id == onboarding_id).order_by(AuditEntry.at)]
    assert actors[0].startswith("console:") and actors[1] == "api-token" and actors[2].startswith("cli:")
    page = client.get(f"/console/onboardings/{onboarding_id}").get_data(as_text=True)
    assert page.count("<td>retry</td>") == 3 and "api-token" in page


def test_events_show_refusals_and_replay_makes_no_second_room(console):
    client, app = console
    raw, headers = signed(deal_payload("D-500", client={"id": "C-5"}))  # no name, no e-mail: refused
    refused = app.test_client().post("/webhooks/deal-won", data=raw, headers=headers)
    assert refused.status_code == 422
    page = client.get("/console/events?deal_id=D-500").get_data(as_text=True)
    assert "rejected" in page and "Missing data for required field." in page
    event_id = refused.get_json()["event_id"]
    answer = client.post(f"/console/events/{event_id}/replay", data={"csrf_token": csrf(page),
                                                                     "next": "/console/events"})
    assert "still refused" in client.get(answer.headers["Location"]).get_data(as_text=True)

    onboarding_id = deliver(app, "D-501")
    page = client.get(f"/console/onboardings/{onboarding_id}").get_data(as_text=True)
    assert "&#34;D-501&#34;" in page or '"D-501"' in page  # the recorded body, pretty-printed
    assert "webhook-signature" not in page
    event = re.search(r"/console/events/([0-9a-f]{32})/replay", page).group(1)
    answer = client.post(f"/console/events/{event}/replay", data={"csrf_token": csrf(page)})
    assert answer.headers["Location"].endswith(onboarding_id)
    assert "names an existing onboarding" in client.get(answer.headers["Location"]).get_data(as_text=True)
    with app.extensions["onboarding"].db.reading() as session:
        assert session.query(Onboarding).count() == 1


def test_sign_out_ends_the_session(console):
    client, _ = console
    page = client.get("/console").get_data(as_text=True)
    assert client.post("/console/logout", data={"csrf_token": csrf(page)}).status_code == 302
    assert client.get("/console").status_code == 302

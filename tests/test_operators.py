"""Operators' commands and probes: replay, listing, health, readiness."""

from __future__ import annotations

import json

from onboarding.models import Onboarding
from tests.conftest import ADMIN_TOKEN, deal_payload, service_env
from tests.processes import run_flask


def test_replay_a_saved_payload_then_again_is_a_duplicate(tmp_path, sqlite_url):
    env = service_env(sqlite_url, "http://127.0.0.1:9", "http://127.0.0.1:9/crm")
    payload = tmp_path / "deal.json"
    payload.write_text(json.dumps(deal_payload("D-900")))
    first = run_flask(env, "replay", str(payload))
    assert first.returncode == 0, first.stderr
    onboarding_id = first.stdout.split()[1]
    assert first.stdout.startswith(f"onboarding {onboarding_id} queued (created)")
    again = run_flask(env, "replay", str(payload))
    assert again.stdout.startswith(f"onboarding {onboarding_id} queued (duplicate)")
    listed = run_flask(env, "onboardings", "--status", "queued")
    assert onboarding_id in listed.stdout and "D-900" in listed.stdout
    assert onboarding_id not in run_flask(env, "onboardings", "--status", "failed").stdout


def test_replay_refuses_an_invalid_payload_with_its_errors(tmp_path, sqlite_url):
    env = service_env(sqlite_url, "http://127.0.0.1:9", "http://127.0.0.1:9/crm")
    payload = tmp_path / "bad.json"
    payload.write_text(json.dumps(deal_payload("D-901", client={"id": "C-1"})))
    result = run_flask(env, "replay", str(payload))
    assert result.returncode == 1
    assert result.stdout.startswith("rejected: event ")
    assert "Missing data for required field." in result.stdout


def test_healthz_and_readyz(make_app, database_url):
    app = make_app(database_url)
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"draining": "no", "database": "ok", "schema": "ok"}


def test_readyz_is_503_when_the_schema_is_behind(make_app, tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'empty.db'}")
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert "run flask db upgrade" in answer.get_json()["checks"]["schema"]


def test_the_admin_api_lists_and_filters(make_app, sqlite_url):
    app = make_app(sqlite_url)
    client = app.test_client()
    db = app.extensions["onboarding"].db
    with db.transaction() as session:
        for number, status in enumerate(["queued", "failed", "completed"]):
            session.add(Onboarding(source="generic", deal_id=f"D-{number}", client_id="C-1", client_name="A",
                                   client_email="a@b.c", manager_user_id="m", status=status))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/api/onboardings").status_code == 401
    assert client.get("/api/onboardings", headers={"Authorization": "Bearer wrong"}).status_code == 401
    page = client.get("/api/onboardings?status=failed", headers=auth).get_json()
    assert [item["deal"]["id"] for item in page["onboardings"]] == ["D-1"]
    assert client.get("/api/onboardings?status=nope", headers=auth).status_code == 400
    assert client.get("/api/onboardings?colour=red", headers=auth).status_code == 400
    paged = client.get("/api/onboardings?limit=2", headers=auth).get_json()
    assert len(paged["onboardings"]) == 2 and paged["next_offset"] == 2
    assert client.get("/api/onboardings/nope", headers=auth).status_code == 404

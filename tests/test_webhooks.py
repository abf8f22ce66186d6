"""The receiver: answers, refusals, dedupe, and what each writes to the database (on both engines)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from onboarding.models import Event, Onboarding
from tests.conftest import BOTH_ACCEPT_PATHS, OLD_WEBHOOK_SECRET, deal_payload, signed

URL = "/webhooks/deal-won"


@pytest.fixture(params=BOTH_ACCEPT_PATHS)
def accept_path(request) -> str:
    """Every test here runs through the fast path and through Flask alone (see conftest.accept_path)."""
    return request.param


def count(app, model) -> int:
    """Rows in a table."""
    with app.extensions["onboarding"].db.reading() as session:
        return session.scalar(select(func.count()).select_from(model))


def post(client, body, **kwargs):
    """POST a signed body."""
    raw, headers = signed(body, **kwargs)
    return client.post(URL, data=raw, headers=headers)


def test_a_signed_deal_is_accepted_with_a_status_link(app, client):
    answer = post(client, deal_payload("D-7781"))
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["status"] == "queued"
    assert body["duplicate"] is False
    with app.extensions["onboarding"].db.reading() as session:
        onboarding = session.get(Onboarding, body["onboarding_id"])
        assert (onboarding.deal_id, onboarding.client_id, onboarding.client_email) == (
            "D-7781", "C-10045", "contact@acme.example.com")
        event = session.get(Event, body["event_id"])
        assert event.outcome == "accepted" and event.onboarding_id == onboarding.id
        assert json.loads(event.body)["deal"]["id"] == "D-7781"
        assert "webhook-signature" not in event.headers
    status = client.get(body["status_url"].replace("http://onboarding.test", ""))
    assert status.status_code == 200
    assert status.get_json()["onboarding_id"] == body["onboarding_id"]
    assert [step["status"] for step in status.get_json()["steps"]] == ["pending"] * 10


def test_the_same_delivery_again_names_the_original_onboarding(app, client):
    raw, headers = signed(deal_payload("D-1"))
    first = client.post(URL, data=raw, headers=headers)
    second = client.post(URL, data=raw, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.get_json()["onboarding_id"] == first.get_json()["onboarding_id"]
    assert second.get_json()["duplicate"] is True
    assert count(app, Onboarding) == 1
    assert count(app, Event) == 1


def test_the_same_deal_under_another_webhook_id_names_the_original_onboarding(app, client):
    first = post(client, deal_payload("D-2"))
    second = post(client, deal_payload("D-2", client={"id": "C-9", "name": "Other", "email": "o@example.com"}))
    assert second.status_code == 200
    assert second.get_json()["onboarding_id"] == first.get_json()["onboarding_id"]
    assert count(app, Onboarding) == 1
    assert count(app, Event) == 2


def test_a_rotated_secret_is_still_accepted(client):
    assert post(client, deal_payload(), secret=OLD_WEBHOOK_SECRET).status_code == 202


def test_another_event_type_is_ignored_but_recorded(app, client):
    answer = post(client, {"type": "deal.lost", "deal": {"id": "D-3"}})
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "ignored"
    assert count(app, Onboarding) == 0
    assert count(app, Event) == 1


def test_unreadable_json_is_400_and_recorded_without_an_onboarding(app, client):
    answer = post(client, b'{"type": "deal.won", ')
    assert answer.status_code == 400
    assert "not valid JSON" in answer.get_json()["error"]
    assert count(app, Onboarding) == 0
    assert count(app, Event) == 1


def test_schema_errors_are_422_with_field_messages(app, client):
    payload = deal_payload(client={"id": "", "name": " ", "email": "not-an-email", "docspace_user_id": "x"})
    del payload["deal"]
    answer = post(client, payload)
    assert answer.status_code == 422
    errors = answer.get_json()["errors"]
    assert errors["deal"] == ["Missing data for required field."]
    assert set(errors["client"]) == {"id", "name", "email", "docspace_user_id"}
    assert count(app, Onboarding) == 0
    with app.extensions["onboarding"].db.reading() as session:
        assert session.scalar(select(Event.outcome)) == "rejected"


def test_a_payload_without_manager_needs_a_configured_default(make_app, sqlite_url):
    app = make_app(sqlite_url, ACCOUNT_MANAGER_ID="")
    payload = deal_payload()
    del payload["account_manager"]
    answer = post(app.test_client(), payload)
    assert answer.status_code == 422
    assert "ACCOUNT_MANAGER_ID" in answer.get_json()["errors"]["account_manager"]["docspace_user_id"][0]


def test_unknown_fields_are_ignored_and_numeric_ids_accepted(app, client):
    payload = deal_payload(extra={"anything": 1})
    payload["deal"]["id"] = 7781
    payload["client"]["country"] = "NL"
    answer = post(client, payload)
    assert answer.status_code == 202
    with app.extensions["onboarding"].db.reading() as session:
        assert session.get(Onboarding, answer.get_json()["onboarding_id"]).deal_id == "7781"


def test_a_refused_event_is_accepted_when_redelivered_fixed(app, client):
    payload = deal_payload("D-4")
    payload["client"]["email"] = "broken"
    raw, headers = signed(payload)
    assert client.post(URL, data=raw, headers=headers).status_code == 422
    payload["client"]["email"] = "fixed@example.com"
    raw, headers = signed(payload, message_id=headers["webhook-id"])
    assert client.post(URL, data=raw, headers=headers).status_code == 202
    assert count(app, Event) == 1
    assert count(app, Onboarding) == 1


def test_bad_signatures_are_401_and_write_nothing(app, client):
    raw, headers = signed(deal_payload())
    cases = {
        "missing": {k: v for k, v in headers.items() if k != "webhook-signature"},
        "no id": {k: v for k, v in headers.items() if k != "webhook-id"},
        "wrong": {**headers, "webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
        "garbage": {**headers, "webhook-signature": "garbage"},
        "malformed timestamp": {**headers, "webhook-timestamp": "yesterday"},
    }
    for name, bad in cases.items():
        answer = client.post(URL, data=raw, headers=bad)
        assert answer.status_code == 401, name
        assert "reason" in answer.get_json()
    stale_raw, stale = signed(deal_payload(), timestamp=datetime.now(UTC) - timedelta(minutes=6))
    assert client.post(URL, data=stale_raw, headers=stale).status_code == 401
    future_raw, future = signed(deal_payload(), timestamp=datetime.now(UTC) + timedelta(minutes=6))
    assert client.post(URL, data=future_raw, headers=future).status_code == 401
    tampered = raw.replace(b"Acme Corporation", b"Evil Corporation")
    assert client.post(URL, data=tampered, headers=headers).status_code == 401
    assert count(app, Onboarding) == 0
    assert count(app, Event) == 0


def test_a_body_over_the_limit_is_413(app, client):
    raw, headers = signed(deal_payload(padding="x" * (300 * 1024)))
    answer = client.post(URL, data=raw, headers=headers)
    assert answer.status_code == 413
    assert "error" in answer.get_json()
    assert count(app, Event) == 0


def test_no_500_for_odd_but_signed_bodies(app, client):
    for body in (b"[]", b"null", b"42", b'"text"', b"\xff\xfe", b'{"type": 5}', b'{"type": "deal.won", "deal": []}',
                 b'{"type": "deal.won", "deal": {"id": true}, "client": null}'):
        raw, headers = signed(body)
        answer = client.post(URL, data=raw, headers=headers)
        assert answer.status_code in (400, 422), (body, answer.status_code)
    assert count(app, Onboarding) == 0

"""The CRM sources' pure logic: HubSpot's signature v3 (cross-checked with HubSpot's own client), which events
are won deals, how deliveries are identified, Pipedrive's credentials. No server needed."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hubspot.utils.signature import Signature

from onboarding.crm.hubspot.source import HubSpotSource, _stages, event_key, v3_signature, v3_uri
from onboarding.crm.pipedrive.source import PipedriveSource
from onboarding.signatures import SignatureError
from onboarding.sources import Inbound

SECRET = "client-secret-of-the-app"
BASE = "https://onboarding.example.com"


def hubspot_request(body: bytes, query: bytes = b"", *, secret: str = SECRET, uri: str | None = None,
                    timestamp: str | None = None) -> Inbound:
    """A request as HubSpot would send it, signed by HubSpot's client for the URI it called."""
    timestamp = timestamp or str(int(time.time() * 1000))
    called = uri or f"{BASE}/webhooks/hubspot" + (f"?{query.decode()}" if query else "")
    signature = Signature.get_signature(secret, body.decode(), "v3", called, "POST", timestamp)
    return Inbound("POST", query, {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp},
                   body)


def test_our_v3_signature_is_the_one_hubspots_client_accepts():
    body = '[{"objectId":1,"propertyValue":"Zoë ✓"}]'
    timestamp = str(int(time.time() * 1000))
    ours = v3_signature(SECRET, "POST", f"{BASE}/webhooks/hubspot", body.encode(), timestamp)
    assert Signature.is_valid(ours, SECRET, body, f"{BASE}/webhooks/hubspot", "POST", "v3", timestamp)
    assert not Signature.is_valid(ours, SECRET + "x", body, f"{BASE}/webhooks/hubspot", "POST", "v3", timestamp)


def test_the_signed_uri_is_the_public_one_with_its_query_and_v3_decoding():
    source = HubSpotSource(SECRET, BASE, 300)
    source.verify(hubspot_request(b"[]"))
    source.verify(hubspot_request(b"[]", b"app=a%3Ab", uri=f"{BASE}/webhooks/hubspot?app=a:b"))
    assert v3_uri(f"{BASE}/x", b"q=%2F%40%21%24%27%28%29%2a%2C%3B%3F") == f"{BASE}/x?q=/@!$'()*,;?"
    with pytest.raises(SignatureError):  # signed for the URL a proxy forwarded to, not the public one
        source.verify(hubspot_request(b"[]", uri="http://10.0.0.5:8000/webhooks/hubspot"))


@pytest.mark.parametrize(("change", "code"), [
    ({"secret": "wrong"}, "mismatch"),
    ({"timestamp": -301_000}, "stale"),
    ({"timestamp": +301_000}, "stale"),
    ({"timestamp": "1.7e12"}, "malformed"),
])
def test_bad_hubspot_signatures_are_refused_with_a_reason(change, code):
    if isinstance(change.get("timestamp"), int):  # milliseconds from now
        change = {"timestamp": str(int(time.time() * 1000) + change["timestamp"])}
    with pytest.raises(SignatureError) as error:
        HubSpotSource(SECRET, BASE, 300).verify(hubspot_request(b"[]", **change))
    assert error.value.code == code


def event(**changes) -> dict:
    """A deal.propertyChange of dealstage to closedwon."""
    return {"eventId": 1, "subscriptionId": 2, "portalId": 62515, "appId": 4, "occurredAt": 1764500000000,
            "subscriptionType": "deal.propertyChange", "attemptNumber": 0, "objectId": 33995947220,
            "propertyName": "dealstage", "propertyValue": "closedwon", **changes}


@pytest.mark.parametrize(("changes", "outcome"), [
    ({}, "accepted"),
    ({"subscriptionType": "object.propertyChange", "objectTypeId": "0-3"}, "accepted"),
    ({"propertyValue": "closedlost"}, "ignored"),
    ({"propertyValue": "1002"}, "pending"),  # a custom pipeline's stage: the worker asks HubSpot
    ({"propertyName": "amount", "propertyValue": "100"}, "ignored"),
    ({"subscriptionType": "object.propertyChange", "objectTypeId": "0-1"}, "ignored"),
    ({"subscriptionType": "contact.propertyChange"}, "ignored"),
    ({"subscriptionType": "deal.creation", "propertyName": None, "propertyValue": None}, "ignored"),
    ({"portalId": None}, "rejected"),
])
def test_each_hubspot_event_is_judged_on_its_own(changes, outcome):
    verdict = HubSpotSource(SECRET, BASE, 300).judge(json.dumps(event(**changes)).encode())
    assert verdict.outcome == outcome
    if outcome == "accepted":
        assert (verdict.deal.source, verdict.deal.account_id, verdict.deal.deal_id) == (
            "hubspot", "62515", "33995947220")
        assert verdict.deal.tag == "hubspot-62515-deal-33995947220"


def test_a_batch_is_split_into_events_identified_apart_from_their_attempt():
    source = HubSpotSource(SECRET, BASE, 300)
    batch = [event(), event(attemptNumber=3), event(subscriptionId=9, subscriptionType="object.propertyChange")]
    deliveries = source.deliveries(Inbound("POST", b"", {}, json.dumps(batch).encode()))
    assert deliveries[0].id == deliveries[1].id != deliveries[2].id
    assert json.loads(deliveries[2].body)["subscriptionId"] == 9
    assert event_key(event()) == event_key(event(attemptNumber=1))
    # A body that is no batch is one delivery, refused when judged.
    whole = source.deliveries(Inbound("POST", b"", {}, b'{"not": "a batch"}'))
    assert source.judge(whole.body).outcome == "rejected"


def test_closed_won_is_what_the_pipeline_settings_say():
    stages = _stages({"id": "1", "label": "Enterprise", "stages": [
        {"id": "a", "metadata": {"isClosed": "true", "probability": "1.0"}},
        {"id": "b", "metadata": {"isClosed": "true", "probability": "0.0"}},
        {"id": "c", "metadata": {"isClosed": "false", "probability": "1.0"}},
        {"id": "d", "metadata": {}}]})
    assert {stage: won for stage, (won, _) in stages.items()} == {"a": True, "b": False, "c": False, "d": False}


def test_pipedrive_basic_credentials_are_compared_whole():
    source = PipedriveSource("user", "pass:word")
    good = "Basic " + base64.b64encode(b"user:pass:word").decode()
    source.verify(Inbound("POST", b"", {"Authorization": good}, b"{}"))
    for offered in ("Basic " + base64.b64encode(b"user:pass").decode(), "Bearer x", "Basic !!!", ""):
        with pytest.raises(SignatureError):
            source.verify(Inbound("POST", b"", {"Authorization": offered}, b"{}"))


@pytest.mark.parametrize(("payload", "outcome"), [
    ({"meta": {"entity": "deal", "action": "change", "id": "e1", "company_id": "77"},
      "data": {"id": 8, "status": "won"}, "previous": {"status": "open"}}, "accepted"),
    ({"meta": {"entity": "deal", "action": "change", "id": "e1", "company_id": "77"},
      "data": {"id": 8, "status": "won"}, "previous": {"title": "x"}}, "ignored"),
    ({"meta": {"entity": "deal", "action": "change", "id": "e1", "company_id": "77"},
      "data": {"id": 8, "status": "lost"}, "previous": {"status": "open"}}, "ignored"),
    ({"meta": {"entity": "person", "action": "change", "id": "e1", "company_id": "77"},
      "data": {"id": 8}, "previous": {}}, "ignored"),
    ({"event": "updated.deal", "meta": {"object": "deal", "id": 8, "company_id": 77},
      "current": {"id": 8, "status": "won"}, "previous": {"status": "open"}}, "accepted"),
    ({"event": "updated.deal", "meta": {"object": "deal", "id": 8, "company_id": 77},
      "current": {"id": 8, "status": "won"}, "previous": {"status": "won"}}, "ignored"),
    ({"meta": {"entity": "deal", "action": "change", "id": "e1"},
      "data": {"id": 8, "status": "won"}, "previous": {"status": "open"}}, "rejected"),
])
def test_a_pipedrive_deal_is_won_when_its_status_changes_to_won(payload, outcome):
    verdict = PipedriveSource("u", "p").judge(json.dumps(payload).encode())
    assert verdict.outcome == outcome
    if outcome == "accepted":
        assert (verdict.deal.account_id, verdict.deal.deal_id, verdict.deal.tag) == ("77", "8",
                                                                                     "pipedrive-77-deal-8")

"""The HubSpot and Pipedrive imitations, in process through Flask's test client: wire formats, strictness, limits."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from flask.testing import FlaskClient

from onboarding.sandbox import create_app, hubspot, pipedrive

HUBSPOT_TOKEN = "pat-na1-test-token"
PIPEDRIVE_TOKEN = "0123456789abcdef0123456789abcdef01234567"
HS_AUTH = {"Authorization": f"Bearer {HUBSPOT_TOKEN}"}
PD_AUTH = {"x-api-token": PIPEDRIVE_TOKEN}
HEX40 = re.compile(r"[0-9a-f]{40}")


@pytest.fixture()
def client() -> FlaskClient:
    """A fresh sandbox app's test client."""
    app = create_app("sk-test", hubspot_token=HUBSPOT_TOKEN, pipedrive_token=PIPEDRIVE_TOKEN)
    return app.test_client()


def hs(client: FlaskClient, method: str, path: str, **kwargs):
    """An authenticated HubSpot request."""
    return client.open(f"/hubspot/{path}", method=method, headers=HS_AUTH, **kwargs)


def pd(client: FlaskClient, method: str, path: str, **kwargs):
    """An authenticated Pipedrive request."""
    return client.open(f"/pipedrive/{path}", method=method, headers=PD_AUTH, **kwargs)


def control(client: FlaskClient, method: str, path: str, body: dict | None = None, status: int | None = None):
    """A /_sandbox control request; its JSON answer, checked against `status` when given."""
    answer = client.open(f"/_sandbox/{path}", method=method, json=body)
    if status is not None:
        assert answer.status_code == status, answer.get_data(as_text=True)
    return answer.get_json()


def is_uuid(value: str) -> bool:
    """Whether value is a UUID string."""
    try:
        uuid.UUID(value)
    except (TypeError, ValueError):
        return False
    return True


def seed_hubspot_deal(client: FlaskClient, **deal) -> dict:
    """A HubSpot deal through the control API, with a company and two contacts unless told otherwise."""
    body = {"dealname": "Acme annual plan", "company": {"name": "Acme Corporation", "domain": "acme.example.com"},
            "contacts": [{"email": "ann@acme.example.com", "firstname": "Ann", "lastname": "Lee", "label": "Primary"},
                         {"email": "bob@acme.example.com", "firstname": "Bob", "lastname": "Ray"}], **deal}
    return control(client, "POST", "hubspot/deals", body, status=201)


def seed_pipedrive_deal(client: FlaskClient, **deal) -> dict:
    """A Pipedrive deal through the control API, with a person and an organization."""
    body = {"title": "Acme annual plan", "organization": {"name": "Acme Corporation"},
            "person": {"name": "Ann Lee", "emails": [{"value": "ann@acme.example.com", "primary": True}]}, **deal}
    return control(client, "POST", "pipedrive/deals", body, status=201)


# --- HubSpot: auth and envelopes ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer pat-na1-wrong"},
                                     {"Authorization": HUBSPOT_TOKEN}, {"Authorization": f"bearer  {HUBSPOT_TOKEN}"}])
def test_hubspot_refuses_requests_without_the_bearer_token(client, headers):
    """401 with HubSpot's INVALID_AUTHENTICATION envelope and no rate-limit headers; the call is still logged."""
    answer = client.get("/hubspot/crm/v3/pipelines/deals", headers=headers)
    assert answer.status_code == 401
    body = answer.get_json()
    assert set(body) == {"status", "message", "correlationId", "category"}
    assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found.") and is_uuid(body["correlationId"])
    assert "X-HubSpot-RateLimit-Max" not in answer.headers
    calls = control(client, "GET", "hubspot/state")["calls"]
    assert [(c["method"], c["route"], c["status"]) for c in calls] == [("GET", "crm/v3/pipelines/deals", 401)]


def test_hubspot_refuses_the_retired_hapikey_parameter(client):
    """API keys in the query were sunset; only the bearer token counts."""
    answer = client.get(f"/hubspot/crm/v3/pipelines/deals?hapikey={HUBSPOT_TOKEN}")
    assert answer.status_code == 401


def test_hubspot_unknown_routes_answer_404_after_auth(client):
    """An unimplemented path is a 404 in HubSpot's envelope, but only for an authenticated caller."""
    assert client.get("/hubspot/crm/v3/objects/tickets/1/whatever").status_code == 401
    answer = hs(client, "GET", "crm/v3/objects/tickets/1/whatever")
    assert answer.status_code == 404 and answer.get_json()["status"] == "error"


# --- HubSpot: pipelines ---------------------------------------------------------------------------------------


def test_hubspot_pipelines_have_string_metadata_and_a_numeric_custom_pipeline(client):
    """Stage metadata values are strings; the custom pipeline's ids are numeric strings."""
    answer = hs(client, "GET", "crm/v3/pipelines/deals")
    assert answer.status_code == 200
    pipelines = {p["id"]: p for p in answer.get_json()["results"]}
    default = pipelines["default"]
    assert default["label"] == "Sales Pipeline" and default["archived"] is False
    stages = {s["id"]: s for s in default["stages"]}
    assert list(stages) == ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled",
                            "decisionmakerboughtin", "contractsent", "closedwon", "closedlost"]
    assert stages["closedwon"]["metadata"] == {"isClosed": "true", "probability": "1.0"}
    assert stages["closedlost"]["metadata"] == {"isClosed": "true", "probability": "0.0"}
    assert stages["appointmentscheduled"]["metadata"] == {"isClosed": "false", "probability": "0.2"}
    assert stages["contractsent"]["writePermissions"] == "CRUD_ALL"
    custom = {s["id"]: s["metadata"] for s in pipelines[hubspot.CUSTOM_PIPELINE_ID]["stages"]}
    assert custom[hubspot.CUSTOM_WON_STAGE] == {"isClosed": "true", "probability": "1.0"}
    assert custom[hubspot.CUSTOM_LOST_STAGE] == {"isClosed": "true", "probability": "0.0"}
    assert all(stage_id.isdigit() for stage_id in custom)
    assert hs(client, "GET", "crm/v3/pipelines/deals/nope").status_code == 404


# --- HubSpot: reading records ---------------------------------------------------------------------------------


def test_hubspot_deal_lists_its_company_twice_and_its_contacts_and_notes(client):
    """Inline associations: the company as primary and unlabeled, contacts once each; unknown types ignored."""
    seeded = seed_hubspot_deal(client)
    answer = hs(client, "GET", f"crm/v3/objects/deals/{seeded['id']}",
                query_string={"properties": "dealname,dealstage,amount,nonexistent",
                              "associations": "companies,contacts,notes,tickets"})
    assert answer.status_code == 200
    deal = answer.get_json()
    assert deal["id"] == seeded["id"] and int(deal["id"]) >= 30000000000 and deal["archived"] is False
    assert deal["properties"] == {
        "amount": None, "createdate": deal["createdAt"], "dealname": "Acme annual plan",
        "dealstage": "appointmentscheduled", "hs_lastmodifieddate": deal["updatedAt"], "hs_object_id": seeded["id"]}
    company_id = seeded["company_id"]
    assert deal["associations"] == {
        "companies": {"results": [{"id": company_id, "type": "deal_to_company"},
                                  {"id": company_id, "type": "deal_to_company_unlabeled"}]},
        "contacts": {"results": [{"id": contact_id, "type": "deal_to_contact"}
                                 for contact_id in seeded["contact_ids"]]},
    }  # no notes yet: HubSpot leaves out empty association types


def test_hubspot_default_properties_and_no_associations_key_without_the_parameter(client):
    """Without ?properties the default set comes back; without ?associations there is no associations key."""
    seeded = seed_hubspot_deal(client, amount=1500)
    deal = hs(client, "GET", f"crm/v3/objects/deals/{seeded['id']}").get_json()
    assert set(deal["properties"]) == {"amount", "closedate", "createdate", "dealname", "dealstage",
                                       "hs_lastmodifieddate", "hs_object_id", "pipeline"}
    assert deal["properties"]["amount"] == "1500" and "associations" not in deal


def test_hubspot_company_and_contact_reads(client):
    """Companies and contacts read like deals; contacts carry lastmodifieddate instead of hs_lastmodifieddate."""
    seeded = seed_hubspot_deal(client)
    company = hs(client, "GET", f"crm/v3/objects/companies/{seeded['company_id']}?properties=name,domain")
    assert company.get_json()["properties"]["name"] == "Acme Corporation"
    assert company.get_json()["properties"]["domain"] == "acme.example.com"
    contact = hs(client, "GET", f"crm/v3/objects/contacts/{seeded['contact_ids'][0]}",
                 query_string={"properties": ["email", "firstname"], "associations": "deals"}).get_json()
    assert contact["properties"]["email"] == "ann@acme.example.com"
    assert set(contact["properties"]) == {"email", "firstname", "createdate", "lastmodifieddate", "hs_object_id"}
    assert contact["associations"]["deals"]["results"] == [{"id": seeded["id"], "type": "contact_to_deal"}]


def test_hubspot_control_reuses_companies_and_contacts(client):
    """A second deal for the same company name and contact email links the existing records."""
    first = seed_hubspot_deal(client)
    second = seed_hubspot_deal(client, dealname="Acme renewal", company={"name": "ACME Corporation"},
                               contacts=[{"email": "ANN@acme.example.com"}])
    assert second["company_id"] == first["company_id"] and second["contact_ids"] == first["contact_ids"][:1]
    assert second["id"] != first["id"]


def test_hubspot_missing_records_answer_object_not_found(client):
    """Missing deals, owners, properties and groups: 404 with OBJECT_NOT_FOUND; an unknown type is a 400."""
    for path in ("crm/v3/objects/deals/999", "crm/v3/objects/notes/1", "crm/v3/owners/1",
                 "crm/v3/properties/deals/docspace_room_id", "crm/v3/properties/deals/groups/docspace"):
        answer = hs(client, "GET", path)
        assert answer.status_code == 404, path
        body = answer.get_json()
        assert body["message"] == "resource not found" and body["category"] == "OBJECT_NOT_FOUND"
        assert is_uuid(body["correlationId"])
    answer = hs(client, "GET", "crm/v3/objects/widgets/1")
    assert answer.status_code == 400 and "Unable to infer object type" in answer.get_json()["message"]


def test_hubspot_v4_associations_use_integer_ids_and_labels(client):
    """v4 lists each contact once with all its association types, the label as USER_DEFINED; ids are integers."""
    seeded = seed_hubspot_deal(client)
    answer = hs(client, "GET", f"crm/v4/objects/deals/{seeded['id']}/associations/contacts")
    assert answer.status_code == 200
    results = answer.get_json()["results"]
    ann, bob = (int(contact_id) for contact_id in seeded["contact_ids"])
    assert results[0]["toObjectId"] == ann
    assert results[0]["associationTypes"][0] == {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}
    labelled = results[0]["associationTypes"][1]
    assert labelled["category"] == "USER_DEFINED" and labelled["label"] == "Primary"
    assert isinstance(labelled["typeId"], int)
    assert results[1] == {"toObjectId": bob, "associationTypes": [
        {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}]}
    companies = hs(client, "GET", f"crm/v4/objects/deals/{seeded['id']}/associations/companies").get_json()
    assert companies["results"] == [{"toObjectId": int(seeded["company_id"]), "associationTypes": [
        {"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"},
        {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None}]}]


def test_hubspot_owner_lookup_by_id_and_user_id(client):
    """Owners have a string id (what hubspot_owner_id holds) and a different integer userId."""
    owner = control(client, "POST", "hubspot/owners", {"email": "mia@example.com", "firstName": "Mia",
                                                       "lastName": "Hall"}, status=201)
    assert isinstance(owner["id"], str) and owner["id"] != str(owner["userId"])
    answer = hs(client, "GET", f"crm/v3/owners/{owner['id']}")
    assert answer.status_code == 200
    assert answer.get_json() == {**owner, "type": "PERSON", "teams": [], "archived": False}
    by_user = hs(client, "GET", f"crm/v3/owners/{owner['userId']}?idProperty=userId")
    assert by_user.get_json()["id"] == owner["id"]
    assert hs(client, "GET", f"crm/v3/owners/{owner['userId']}").status_code == 404


# --- HubSpot: writing ------------------------------------------------------------------------------------------


def test_hubspot_patch_of_an_undefined_property_is_refused_and_changes_nothing(client):
    """PROPERTY_DOESNT_EXIST inside a VALIDATION_ERROR message; the valid property in the same PATCH is not set."""
    seeded = seed_hubspot_deal(client)
    answer = hs(client, "PATCH", f"crm/v3/objects/deals/{seeded['id']}",
                json={"properties": {"dealname": "Renamed", "docspace_room_id": "123"}})
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["category"] == "VALIDATION_ERROR" and is_uuid(body["correlationId"])
    assert body["message"] == ('Property values were not valid: [{"isValid":false,"message":"Property '
                               '\\"docspace_room_id\\" does not exist","error":"PROPERTY_DOESNT_EXIST",'
                               '"name":"docspace_room_id"}]')
    listed = json.loads(body["message"].removeprefix("Property values were not valid: "))
    assert listed == [{"isValid": False, "message": 'Property "docspace_room_id" does not exist',
                       "error": "PROPERTY_DOESNT_EXIST", "name": "docspace_room_id"}]
    state = control(client, "GET", "hubspot/state")
    assert state["deals"][0]["properties"]["dealname"] == "Acme annual plan"


def test_hubspot_patch_after_creating_the_property(client):
    """Once the property exists the PATCH succeeds and answers with the updated object."""
    seeded = seed_hubspot_deal(client)
    created = hs(client, "POST", "crm/v3/properties/deals", json={
        "name": "docspace_room_id", "label": "DocSpace room", "type": "string", "fieldType": "text",
        "groupName": "dealinformation"})
    assert created.status_code == 201
    assert created.get_json()["name"] == "docspace_room_id" and "hubspotDefined" not in created.get_json()
    answer = hs(client, "PATCH", f"crm/v3/objects/deals/{seeded['id']}",
                json={"properties": {"docspace_room_id": 123}})
    assert answer.status_code == 200
    assert answer.get_json()["properties"]["docspace_room_id"] == "123"  # values are stored as strings
    state = control(client, "GET", "hubspot/state")
    assert state["properties"] == ["docspace_room_id"]
    assert state["deals"][0]["properties"]["docspace_room_id"] == "123"


def test_hubspot_patch_refuses_read_only_and_bad_stage_values(client):
    """Calculated properties cannot be written; a stage must belong to the deal's pipeline."""
    seeded = seed_hubspot_deal(client)
    answer = hs(client, "PATCH", f"crm/v3/objects/deals/{seeded['id']}",
                json={"properties": {"hs_is_closed_won": "true", "dealstage": hubspot.CUSTOM_WON_STAGE}})
    assert answer.status_code == 400
    errors = json.loads(answer.get_json()["message"].removeprefix("Property values were not valid: "))
    assert {(e["name"], e["error"]) for e in errors} == {("hs_is_closed_won", "READ_ONLY_VALUE"),
                                                        ("dealstage", "INVALID_OPTION")}
    for body in ({}, {"properties": "x"}):
        assert hs(client, "PATCH", f"crm/v3/objects/deals/{seeded['id']}", json=body).status_code == 400
    assert hs(client, "PATCH", f"crm/v3/objects/deals/{seeded['id']}", data="{}").status_code == 415
    assert hs(client, "PATCH", "crm/v3/objects/deals/1", json={"properties": {}}).status_code == 404


def test_hubspot_closing_a_deal_sets_closedate_and_the_calculated_properties(client):
    """Moving into closedwon stamps closedate; hs_is_closed_won and hs_deal_stage_probability follow the stage."""
    seeded = seed_hubspot_deal(client)
    answer = hs(client, "PATCH", f"crm/v3/objects/deals/{seeded['id']}",
                json={"properties": {"dealstage": "closedwon"}})
    assert answer.status_code == 200
    deal = hs(client, "GET", f"crm/v3/objects/deals/{seeded['id']}",
              query_string={"properties": "closedate,hs_is_closed_won,hs_deal_stage_probability"}).get_json()
    assert deal["properties"]["hs_is_closed_won"] == "true"
    assert deal["properties"]["hs_deal_stage_probability"] == "1"
    assert deal["properties"]["closedate"] is not None
    won = seed_hubspot_deal(client, dealname="Custom won", pipeline=hubspot.CUSTOM_PIPELINE_ID,
                            dealstage=hubspot.CUSTOM_WON_STAGE)
    properties = next(d for d in control(client, "GET", "hubspot/state")["deals"] if d["id"] == won["id"])["properties"]
    assert properties["hs_is_closed_won"] == "true" and properties["closedate"]


def test_hubspot_property_creation_is_strict(client):
    """Required fields, known enums, an existing group; a duplicate (or built-in) name is a 409."""
    valid = {"name": "docspace_room_url", "label": "DocSpace room", "type": "string", "fieldType": "text",
             "groupName": "dealinformation"}
    for missing in ("name", "label", "type", "fieldType", "groupName"):
        body = {key: value for key, value in valid.items() if key != missing}
        answer = hs(client, "POST", "crm/v3/properties/deals", json=body)
        assert answer.status_code == 400 and missing in answer.get_json()["message"], missing
    for change in ({"type": "text"}, {"fieldType": "string"}, {"groupName": "nogroup"}, {"name": "Bad-Name"}):
        answer = hs(client, "POST", "crm/v3/properties/deals", json={**valid, **change})
        assert answer.status_code == 400 and answer.get_json()["category"] == "VALIDATION_ERROR", change
    assert hs(client, "POST", "crm/v3/properties/deals", json=valid).status_code == 201
    duplicate = hs(client, "POST", "crm/v3/properties/deals", json=valid)
    assert duplicate.status_code == 409
    assert duplicate.get_json()["message"] == "Property named 'docspace_room_url' already exists."
    assert duplicate.get_json()["category"] == "OBJECT_ALREADY_EXISTS"
    assert hs(client, "POST", "crm/v3/properties/deals", json={**valid, "name": "dealname"}).status_code == 409
    fetched = hs(client, "GET", "crm/v3/properties/deals/docspace_room_url")
    assert fetched.status_code == 200 and fetched.get_json()["groupName"] == "dealinformation"
    assert hs(client, "GET", "crm/v3/properties/deals/dealstage").get_json()["hubspotDefined"] is True


def test_hubspot_property_groups(client):
    """The seeded group exists; a new one is a 201, the same name again a 409; a new property may use it."""
    assert hs(client, "GET", "crm/v3/properties/deals/groups/dealinformation").status_code == 200
    created = hs(client, "POST", "crm/v3/properties/deals/groups", json={"name": "docspace", "label": "DocSpace"})
    assert created.status_code == 201
    assert created.get_json() == {"name": "docspace", "label": "DocSpace", "displayOrder": -1, "archived": False}
    assert hs(client, "POST", "crm/v3/properties/deals/groups",
              json={"name": "docspace", "label": "Again"}).status_code == 409
    assert hs(client, "POST", "crm/v3/properties/deals/groups", json={"name": "x"}).status_code == 400
    assert hs(client, "POST", "crm/v3/properties/deals", json={
        "name": "docspace_room_id", "label": "Room", "type": "string", "fieldType": "text",
        "groupName": "docspace"}).status_code == 201
    assert control(client, "GET", "hubspot/state")["groups"] == ["dealinformation", "docspace"]


def note_body(deal_id: str, **changes) -> dict:
    """A note creation body associated with a deal."""
    body = {"properties": {"hs_timestamp": "2026-01-01T00:00:00Z", "hs_note_body": "<p>Room: 42</p>"},
            "associations": [{"to": {"id": deal_id},
                              "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}]}]}
    body.update(changes)
    return body


def test_hubspot_note_on_a_deal_is_listed_with_the_deal(client):
    """A 201 note object; the deal lists it under associations=notes; the note reads back."""
    seeded = seed_hubspot_deal(client)
    answer = hs(client, "POST", "crm/v3/objects/notes", json=note_body(seeded["id"]))
    assert answer.status_code == 201
    note = answer.get_json()
    assert note["properties"]["hs_note_body"] == "<p>Room: 42</p>"
    assert note["properties"]["hs_timestamp"] == "2026-01-01T00:00:00.000Z"
    deal = hs(client, "GET", f"crm/v3/objects/deals/{seeded['id']}?associations=notes").get_json()
    assert deal["associations"]["notes"]["results"] == [{"id": note["id"], "type": "deal_to_note"}]
    fetched = hs(client, "GET", f"crm/v3/objects/notes/{note['id']}?properties=hs_note_body").get_json()
    assert fetched["properties"]["hs_note_body"] == "<p>Room: 42</p>"
    assert control(client, "GET", "hubspot/state")["deals"][0]["notes"] == [
        {"id": note["id"], "body": "<p>Room: 42</p>", "timestamp": "2026-01-01T00:00:00.000Z"}]
    millis = hs(client, "POST", "crm/v3/objects/notes",
                json=note_body(seeded["id"], properties={"hs_timestamp": 1767225600000, "hs_note_body": "x"}))
    assert millis.get_json()["properties"]["hs_timestamp"] == "2026-01-01T00:00:00.000Z"


def test_hubspot_note_creation_is_strict(client):
    """hs_timestamp is required; association type 214 must point at an existing deal; nothing is half-created."""
    seeded = seed_hubspot_deal(client)
    wrong_type = [{"to": {"id": seeded["id"]},
                   "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 213}]}]
    user_defined = [{"to": {"id": seeded["id"]},
                     "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 214}]}]
    missing_deal = [{"to": {"id": "123"},
                     "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}]}]
    cases = [note_body(seeded["id"], properties={"hs_note_body": "no timestamp"}),
             note_body(seeded["id"], properties={"hs_timestamp": "yesterday"}),
             note_body(seeded["id"], properties={"hs_timestamp": "2026-01-01T00:00:00Z", "hs_body": "typo"}),
             note_body(seeded["id"], associations=wrong_type), note_body(seeded["id"], associations=user_defined),
             note_body(seeded["id"], associations=missing_deal)]
    for body in cases:
        answer = hs(client, "POST", "crm/v3/objects/notes", json=body)
        assert answer.status_code == 400, body
        assert answer.get_json()["category"] == "VALIDATION_ERROR"
    missing = hs(client, "POST", "crm/v3/objects/notes", json=cases[0]).get_json()["message"]
    assert "hs_timestamp" in missing and "REQUIRED_PROPERTY" in missing
    assert control(client, "GET", "hubspot/state")["deals"][0]["notes"] == []
    assert hs(client, "GET", "crm/v3/objects/notes/50000000001").status_code == 404


# --- HubSpot: limits, faults, control ----------------------------------------------------------------------


def test_hubspot_ten_secondly_limit(client):
    """Over the limit: 429 with HubSpot's body and headers and NO Retry-After; answers below it carry the headers."""
    control(client, "PUT", "hubspot/config", {"max_per_10s": 3}, status=200)
    answers = [hs(client, "GET", "crm/v3/pipelines/deals") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    for answer in answers:
        assert answer.headers["X-HubSpot-RateLimit-Max"] == "3"
        assert answer.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    limited = answers[-1]
    assert "Retry-After" not in limited.headers
    body = limited.get_json()
    assert body["status"] == "error" and body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert is_uuid(body["correlationId"]) and is_uuid(body["requestId"])
    control(client, "PUT", "hubspot/config", {"max_per_10s": None}, status=200)
    unlimited = hs(client, "GET", "crm/v3/pipelines/deals")
    assert unlimited.status_code == 200 and "X-HubSpot-RateLimit-Max" not in unlimited.headers


def test_hubspot_default_limit_is_100_per_10_seconds(client):
    """The 101st request in the window is refused."""
    statuses = [hs(client, "GET", "crm/v3/pipelines/deals").status_code for _ in range(101)]
    assert statuses.count(200) == 100 and statuses[-1] == 429


def test_hubspot_canned_faults_use_hubspot_envelopes(client):
    """Fault paths match below /hubspot/; a 429 has no Retry-After unless the rule sets one; others use the
    error envelope."""
    seeded = seed_hubspot_deal(client)
    control(client, "PUT", "faults", {"rules": [
        {"target": "hubspot", "action": "status", "status": 429, "path": r"^crm/v3/objects/deals/\d+$", "times": 1},
        {"target": "hubspot", "action": "status", "status": 429, "retry_after": 7, "path": "^crm/v3/objects/deals/",
         "times": 1},
        {"target": "hubspot", "action": "status", "status": 503, "path": "^crm/v3/objects/deals/", "times": 1},
    ]}, status=200)
    first, second, third, fourth = (hs(client, "GET", f"crm/v3/objects/deals/{seeded['id']}") for _ in range(4))
    assert first.status_code == 429 and "Retry-After" not in first.headers
    assert first.get_json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert second.status_code == 429 and second.headers["Retry-After"] == "7"
    assert third.status_code == 503
    assert third.get_json()["status"] == "error" and is_uuid(third.get_json()["correlationId"])
    assert fourth.status_code == 200
    statuses = [c["status"] for c in control(client, "GET", "hubspot/state")["calls"]]
    assert statuses == [429, 429, 503, 200]


def test_hubspot_docspace_faults_do_not_touch_hubspot(client):
    """A docspace rule whose path would match does not fire for /hubspot requests."""
    control(client, "PUT", "faults", {"rules": [{"action": "status", "status": 500, "path": "crm"}]}, status=200)
    assert hs(client, "GET", "crm/v3/pipelines/deals").status_code == 200


def test_hubspot_calls_record_route_query_and_body(client):
    """Each request is logged with its route template, query string, JSON body and status."""
    seeded = seed_hubspot_deal(client)
    hs(client, "PATCH", f"crm/v3/objects/deals/{seeded['id']}", json={"properties": {"dealname": "x"}})
    hs(client, "GET", f"crm/v3/objects/deals/{seeded['id']}?properties=dealname")
    calls = control(client, "GET", "hubspot/state")["calls"]
    assert [(c["method"], c["route"], c["status"]) for c in calls] == [
        ("PATCH", "crm/v3/objects/deals/{object_id}", 200),
        ("GET", "crm/v3/objects/deals/{object_id}", 200)]
    assert calls[0]["body"] == {"properties": {"dealname": "x"}} and calls[1]["query"] == "properties=dealname"
    assert calls[1]["path"] == f"crm/v3/objects/deals/{seeded['id']}"
    hs(client, "GET", f"crm/v4/objects/deals/{seeded['id']}/associations/contacts")
    assert control(client, "GET", "hubspot/state")["calls"][-1]["route"] == \
        "crm/v4/objects/deals/{object_id}/associations/contacts"


def test_hubspot_control_state_validation_and_reset(client):
    """State shows the portal; malformed control bodies are 400s; reset empties the portal and its log."""
    state = control(client, "GET", "hubspot/state", status=200)
    assert state["portal_id"] == hubspot.PORTAL_ID == 62515 and state["deals"] == []
    assert state["config"] == {"max_per_10s": 100}
    for body in ({}, {"dealname": "x", "pipeline": "nope"}, {"dealname": "x", "dealstage": "1002"},
                 {"dealname": "x", "typo": 1}, {"dealname": "x", "contacts": [{"firstname": "no email"}]},
                 {"dealname": "x", "properties": {"docspace_room_id": "1"}}):
        assert "error" in control(client, "POST", "hubspot/deals", body, status=400), body
    control(client, "PUT", "hubspot/config", {"max_per_10s": 0}, status=400)
    control(client, "PUT", "hubspot/config", {"max_per_10s": 5}, status=200)
    seed_hubspot_deal(client)
    hs(client, "GET", "crm/v3/pipelines/deals")
    control(client, "POST", "reset", status=200)
    state = control(client, "GET", "hubspot/state")
    assert state["deals"] == [] and state["calls"] == [] and state["config"] == {"max_per_10s": 100}
    assert seed_hubspot_deal(client)["id"] == "30000000001"


def test_hubspot_account_details_show_the_portal_id(client):
    """The token's portal, as a client can check it."""
    assert hs(client, "GET", "account-info/v3/details").get_json()["portalId"] == hubspot.PORTAL_ID


# --- Pipedrive: auth and envelopes ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-token": "wrong"}, {"Authorization": f"Bearer {PIPEDRIVE_TOKEN}"}])
def test_pipedrive_refuses_requests_without_the_token(client, headers):
    """401 with Pipedrive's unauthorized body; the rate-limit headers are there anyway."""
    answer = client.get("/pipedrive/v1/users/me", headers=headers)
    assert answer.status_code == 401
    assert answer.get_json() == {"success": False, "error": "unauthorized access", "errorCode": 401,
                                 "error_info": pipedrive.ERROR_INFO}
    assert answer.headers["x-ratelimit-limit"] == "20" and "x-daily-requests-left" in answer.headers


def test_pipedrive_accepts_the_api_token_parameter_and_logs_it(client):
    """The old query parameter still works, and the call log keeps the query so tests can forbid it."""
    answer = client.get(f"/pipedrive/v1/users/me?api_token={PIPEDRIVE_TOKEN}")
    assert answer.status_code == 200 and answer.get_json()["data"]["company_id"] == pipedrive.COMPANY_ID
    calls = control(client, "GET", "pipedrive/state")["calls"]
    assert calls[0]["query"] == f"api_token={PIPEDRIVE_TOKEN}" and calls[0]["route"] == "v1/users/me"


def test_pipedrive_unknown_routes_and_bad_ids(client):
    """Unknown paths: 404 "Unknown method ."; a non-integer id: 400; missing entities: 404 naming them."""
    answer = pd(client, "GET", "v1/nothing")
    assert answer.status_code == 404 and answer.get_json()["error"] == "Unknown method ."
    assert pd(client, "GET", "api/v2/deals/abc").status_code == 400
    for path, entity in (("api/v2/deals/5", "Deal"), ("api/v2/persons/5", "Person"),
                         ("api/v2/organizations/5", "Organization"), ("v1/users/5", "User")):
        answer = pd(client, "GET", path)
        assert answer.status_code == 404
        assert answer.get_json() == {"success": False, "error": f"{entity} not found",
                                     "error_info": pipedrive.ERROR_INFO, "data": None, "additional_data": None}


# --- Pipedrive: reading ---------------------------------------------------------------------------------------


def test_pipedrive_v2_deal_person_organization_and_v1_user(client):
    """v2 answers use plain integer ids; every custom field appears in custom_fields, null when empty."""
    owner = control(client, "POST", "pipedrive/users", {"name": "Mia Hall", "email": "mia@example.com"}, status=201)
    field = pd(client, "POST", "v1/dealFields", json={"name": "DocSpace room", "field_type": "varchar"})
    key = field.get_json()["data"]["key"]
    seeded = seed_pipedrive_deal(client, owner_id=owner["id"], value=1200)
    answer = pd(client, "GET", f"api/v2/deals/{seeded['id']}")
    assert answer.status_code == 200
    deal = answer.get_json()["data"]
    assert deal["id"] == seeded["id"] and deal["owner_id"] == owner["id"] and deal["status"] == "open"
    assert deal["person_id"] == seeded["person_id"] and deal["org_id"] == seeded["org_id"]
    assert deal["custom_fields"] == {key: None} and deal["won_time"] is None and deal["value"] == 1200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", deal["add_time"])
    person = pd(client, "GET", f"api/v2/persons/{seeded['person_id']}").get_json()["data"]
    assert person["name"] == "Ann Lee" and person["first_name"] == "Ann" and person["last_name"] == "Lee"
    assert person["emails"] == [{"value": "ann@acme.example.com", "primary": True, "label": "work"}]
    assert person["org_id"] == seeded["org_id"]
    org = pd(client, "GET", f"api/v2/organizations/{seeded['org_id']}").get_json()["data"]
    assert org["name"] == "Acme Corporation" and org["owner_id"] == owner["id"]
    user = pd(client, "GET", f"v1/users/{owner['id']}").get_json()
    assert user["success"] is True and user["data"]["email"] == "mia@example.com"
    assert user["data"]["active_flag"] is True and user["data"]["is_deleted"] is False


def test_pipedrive_deal_fields_page_and_custom_keys_are_hashes(client):
    """Built-in fields have short keys; custom ones random 40-hex keys; same names allowed; paging works."""
    first = pd(client, "POST", "v1/dealFields", json={"name": "DocSpace room", "field_type": "varchar"})
    second = pd(client, "POST", "v1/dealFields", json={"name": "DocSpace room", "field_type": "text"})
    assert first.status_code == second.status_code == 201
    keys = [first.get_json()["data"]["key"], second.get_json()["data"]["key"]]
    assert all(HEX40.fullmatch(key) for key in keys) and keys[0] != keys[1]
    assert first.get_json()["data"]["edit_flag"] is True
    everything = pd(client, "GET", "v1/dealFields?start=0&limit=500").get_json()
    assert everything["additional_data"]["pagination"] == {"start": 0, "limit": 500,
                                                           "more_items_in_collection": False}
    fields = everything["data"]
    assert fields[0]["key"] == "id" and {"title", "value", "status"} <= {f["key"] for f in fields}
    assert [f["key"] for f in fields[-2:]] == keys
    seen, start = [], 0
    while True:
        page = pd(client, "GET", f"v1/dealFields?start={start}&limit=7").get_json()
        seen += [f["key"] for f in page["data"]]
        pagination = page["additional_data"]["pagination"]
        if not pagination["more_items_in_collection"]:
            assert "next_start" not in pagination
            break
        start = pagination["next_start"]
    assert seen == [f["key"] for f in fields] and len(seen) > 7
    capped = pd(client, "GET", "v1/dealFields?limit=9999").get_json()["additional_data"]["pagination"]
    assert capped["limit"] == 500
    state = control(client, "GET", "pipedrive/state")
    assert state["deal_fields"] == [{"key": keys[0], "name": "DocSpace room", "field_type": "varchar"},
                                    {"key": keys[1], "name": "DocSpace room", "field_type": "text"}]


def test_pipedrive_deal_field_creation_is_strict(client):
    """Name and a known field_type are required; enum and set need options."""
    for body in ({"field_type": "varchar"}, {"name": "x"}, {"name": "x", "field_type": "string"},
                 {"name": "x", "field_type": "enum"}):
        answer = pd(client, "POST", "v1/dealFields", json=body)
        assert answer.status_code == 400 and answer.get_json()["success"] is False, body
    enum = pd(client, "POST", "v1/dealFields", json={"name": "Kind", "field_type": "enum",
                                                     "options": [{"label": "A"}, {"label": "B"}]})
    assert [o["label"] for o in enum.get_json()["data"]["options"]] == ["A", "B"]
    form = pd(client, "POST", "v1/dealFields", data={"name": "Form field", "field_type": "varchar"})
    assert form.status_code == 201


# --- Pipedrive: writing ---------------------------------------------------------------------------------------


def test_pipedrive_patch_custom_fields_by_key(client):
    """An existing key is written and read back; an unknown key is a 400 and changes nothing."""
    key = pd(client, "POST", "v1/dealFields", json={"name": "DocSpace room", "field_type": "varchar"}
             ).get_json()["data"]["key"]
    seeded = seed_pipedrive_deal(client)
    bogus = "f" * 40
    answer = pd(client, "PATCH", f"api/v2/deals/{seeded['id']}",
                json={"title": "Renamed", "custom_fields": {key: "https://docspace/room/1", bogus: "x"}})
    assert answer.status_code == 400
    assert answer.get_json() == {"success": False, "error": f"Custom field with key '{bogus}' does not exist",
                                 "error_info": pipedrive.ERROR_INFO, "data": None, "additional_data": None}
    assert control(client, "GET", "pipedrive/state")["deals"][0]["title"] == "Acme annual plan"
    answer = pd(client, "PATCH", f"api/v2/deals/{seeded['id']}", json={"custom_fields": {key: "https://r/1"}})
    assert answer.status_code == 200 and answer.get_json()["data"]["custom_fields"] == {key: "https://r/1"}
    assert control(client, "GET", "pipedrive/state")["deals"][0]["custom_fields"] == {key: "https://r/1"}


def test_pipedrive_patch_is_strict_about_fields_and_types(client):
    """Unknown top-level fields (such as a v1-style flat custom key), wrong types and bad references are 400s."""
    key = pd(client, "POST", "v1/dealFields", json={"name": "Room", "field_type": "varchar"}).get_json()["data"]["key"]
    seeded = seed_pipedrive_deal(client)
    for body in ({key: "flat like v1"}, {"title": 5}, {"status": "closed"}, {"owner_id": 999},
                 {"custom_fields": {key: 12}}, {"custom_fields": {key: "x" * 256}}, {"stage_id": 99}):
        answer = pd(client, "PATCH", f"api/v2/deals/{seeded['id']}", json=body)
        assert answer.status_code == 400, body
    assert pd(client, "PATCH", f"api/v2/deals/{seeded['id']}", data="title=x").status_code == 400
    assert pd(client, "PATCH", "api/v2/deals/99999", json={"title": "x"}).status_code == 404


def test_pipedrive_status_changes_stamp_times(client):
    """Winning sets won_time and close_time and leaves the stage; reopening clears them."""
    seeded = seed_pipedrive_deal(client)
    won = pd(client, "PATCH", f"api/v2/deals/{seeded['id']}", json={"status": "won"}).get_json()["data"]
    assert won["status"] == "won" and won["won_time"] and won["close_time"] == won["won_time"]
    assert won["stage_id"] == 1
    reopened = pd(client, "PATCH", f"api/v2/deals/{seeded['id']}", json={"status": "open"}).get_json()["data"]
    assert reopened["won_time"] is None and reopened["close_time"] is None


def test_pipedrive_notes(client):
    """A 201 note on a deal; listed by deal_id with pagination; an empty list has data null."""
    seeded = seed_pipedrive_deal(client)
    other = seed_pipedrive_deal(client, title="Other")
    answer = pd(client, "POST", "v1/notes", json={"content": "<p>Room</p><script>x()</script>",
                                                  "deal_id": seeded["id"]})
    assert answer.status_code == 201
    note = answer.get_json()["data"]
    assert note["content"] == "<p>Room</p>" and note["deal_id"] == seeded["id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", note["add_time"])
    pd(client, "POST", "v1/notes", data={"content": "second", "deal_id": str(seeded["id"])})
    listed = pd(client, "GET", f"v1/notes?deal_id={seeded['id']}&start=0&limit=1").get_json()
    assert [n["content"] for n in listed["data"]] == ["<p>Room</p>"]
    assert listed["additional_data"]["pagination"] == {"start": 0, "limit": 1, "more_items_in_collection": True,
                                                       "next_start": 1}
    empty = pd(client, "GET", f"v1/notes?deal_id={other['id']}").get_json()
    assert empty["success"] is True and empty["data"] is None
    assert empty["additional_data"]["pagination"]["more_items_in_collection"] is False
    deal_state = control(client, "GET", "pipedrive/state")["deals"][0]
    assert [n["content"] for n in deal_state["notes"]] == ["<p>Room</p>", "second"]


def test_pipedrive_note_creation_is_strict(client):
    """Content is required, the note must be attached to something, and the deal must exist."""
    seeded = seed_pipedrive_deal(client)
    for body in ({"deal_id": seeded["id"]}, {"content": "  ", "deal_id": seeded["id"]}, {"content": "x"},
                 {"content": "x", "deal_id": 424242}, {"content": "x", "deal_id": "abc"}):
        answer = pd(client, "POST", "v1/notes", json=body)
        assert answer.status_code == 400 and answer.get_json()["success"] is False, body
    assert control(client, "GET", "pipedrive/state")["deals"][0]["notes"] == []


# --- Pipedrive: limits, faults, control -----------------------------------------------------------------------


def test_pipedrive_burst_limit(client):
    """The 21st request within 2 s is a 429 with Pipedrive's body and x-ratelimit headers, no Retry-After."""
    answers = [pd(client, "GET", "v1/users/me") for _ in range(21)]
    assert [a.status_code for a in answers] == [200] * 20 + [429]
    assert answers[0].headers["x-ratelimit-limit"] == "20" and answers[0].headers["x-ratelimit-remaining"] == "19"
    assert 1 <= int(answers[0].headers["x-ratelimit-reset"]) <= 2
    limited = answers[-1]
    assert limited.get_json() == {"success": False, "error": "Request over limit", "error_info": pipedrive.ERROR_INFO,
                                  "data": None, "additional_data": None}
    assert limited.headers["x-ratelimit-remaining"] == "0" and 1 <= int(limited.headers["x-ratelimit-reset"]) <= 2
    assert "Retry-After" not in limited.headers and "x-daily-requests-left" in limited.headers
    control(client, "PUT", "pipedrive/config", {"max_per_2s": None}, status=200)
    unlimited = pd(client, "GET", "v1/users/me")
    assert unlimited.status_code == 200 and "x-ratelimit-limit" not in unlimited.headers


def test_pipedrive_daily_budget_is_charged_by_endpoint_cost(client):
    """x-daily-requests-left drops by each endpoint's token cost; an exhausted budget answers 429."""
    control(client, "PUT", "pipedrive/config", {"daily_budget": 25}, status=200)
    first = pd(client, "GET", "v1/dealFields")  # costs 20
    assert first.headers["x-daily-requests-left"] == "5"
    seeded = seed_pipedrive_deal(client)
    assert pd(client, "GET", f"api/v2/deals/{seeded['id']}").headers["x-daily-requests-left"] == "4"
    refused = pd(client, "PATCH", f"api/v2/deals/{seeded['id']}", json={"title": "x"})  # costs 5
    assert refused.status_code == 429 and refused.get_json()["success"] is False
    assert control(client, "GET", "pipedrive/config")["daily_left"] == 4


def test_pipedrive_canned_faults_use_pipedrive_envelopes(client):
    """A canned 429 carries x-ratelimit headers and Retry-After only when the rule sets one; others the envelope."""
    control(client, "PUT", "faults", {"rules": [
        {"target": "pipedrive", "action": "status", "status": 429, "path": "^api/v2/deals/7$", "times": 1},
        {"target": "pipedrive", "action": "status", "status": 429, "retry_after": 3, "path": "^api/v2/deals/",
         "times": 1},
        {"target": "pipedrive", "action": "after_status", "status": 500, "path": "^api/v2/deals/", "times": 1},
    ]}, status=200)
    first, second, third, fourth = (pd(client, "GET", "api/v2/deals/7") for _ in range(4))
    assert first.status_code == 429 and "Retry-After" not in first.headers
    assert first.get_json()["error"] == "Request over limit"
    assert first.headers["x-ratelimit-remaining"] == "0" and int(first.headers["x-ratelimit-reset"]) >= 1
    assert second.status_code == 429 and second.headers["Retry-After"] == "3"
    assert second.headers["x-ratelimit-reset"] == "3"
    assert third.status_code == 500 and third.get_json() == {
        "success": False, "error": "Internal Server Error", "error_info": pipedrive.ERROR_INFO, "data": None,
        "additional_data": None}
    assert fourth.status_code == 404  # no deal 7: the faults are used up
    assert [c["status"] for c in control(client, "GET", "pipedrive/state")["calls"]] == [429, 429, 500, 404]


def test_pipedrive_control_state_validation_and_reset(client):
    """State shows the company; malformed control bodies are 400s; reset empties it and keeps the seed user."""
    state = control(client, "GET", "pipedrive/state", status=200)
    assert state["company_id"] == pipedrive.COMPANY_ID == 7788001 and state["deals"] == []
    assert state["config"]["max_per_2s"] == 20
    for body in ({}, {"title": "x", "status": "deleted"}, {"title": "x", "owner_id": "1"},
                 {"title": "x", "custom_fields": {"f" * 40: "x"}}, {"title": "x", "person": {"emails": []}},
                 {"title": "x", "typo": 1}):
        assert "error" in control(client, "POST", "pipedrive/deals", body, status=400), body
    control(client, "POST", "pipedrive/users", {"name": "No email"}, status=400)
    control(client, "PUT", "pipedrive/config", {"max_per_2s": "many"}, status=400)
    again = seed_pipedrive_deal(client)
    reused = seed_pipedrive_deal(client, title="Second", organization={"name": "acme corporation"},
                                 person={"name": "A. Lee", "emails": [{"value": "ANN@acme.example.com",
                                                                       "primary": True}]})
    assert (reused["org_id"], reused["person_id"]) == (again["org_id"], again["person_id"])
    won = seed_pipedrive_deal(client, title="Won already", status="won")
    assert pd(client, "GET", f"api/v2/deals/{won['id']}").get_json()["data"]["won_time"]
    control(client, "POST", "reset", status=200)
    state = control(client, "GET", "pipedrive/state")
    assert state["deals"] == [] and state["calls"] == [] and len(state["users"]) == 1

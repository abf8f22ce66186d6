"""The DocSpace sandbox over real HTTP: envelope, rules, faults, limits, the fake CRM and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from onboarding.sandbox import serve

API_KEY = "sk-test"
OWNER = "11111111-1111-4111-8111-111111111111"
MANAGER = "22222222-2222-4222-8222-222222222222"
BOB = "33333333-3333-4333-8333-333333333333"
CLIENT = "44444444-4444-4444-8444-444444444444"
HIDDEN = "55555555-5555-4555-8555-555555555555"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A sandbox served from a background thread on a free loopback port."""
    server = serve("127.0.0.1", 0, API_KEY)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fresh(base_url: str) -> Iterator[None]:
    """Every test starts from the seed, and leaves no faults or sleeping requests behind."""
    requests.post(f"{base_url}/_sandbox/reset", timeout=5).raise_for_status()
    yield
    requests.post(f"{base_url}/_sandbox/reset", timeout=5).raise_for_status()


@pytest.fixture()
def api(base_url: str):
    """Call api/2.0 with the API key: api(method, path, **requests_kwargs)."""
    def call(method: str, path: str, **kwargs) -> requests.Response:
        """One authenticated request."""
        kwargs.setdefault("timeout", 5)
        return requests.request(method, f"{base_url}/api/2.0/{path}", headers=AUTH, **kwargs)
    return call


def control(base_url: str, method: str, path: str, **kwargs) -> requests.Response:
    """Call the /_sandbox control API."""
    response = requests.request(method, f"{base_url}/_sandbox/{path}", timeout=5, **kwargs)
    response.raise_for_status()
    return response


def set_faults(base_url: str, *rules: dict) -> None:
    """Replace the fault rules."""
    control(base_url, "PUT", "faults", json={"rules": list(rules)})


def sandbox_state(base_url: str) -> dict:
    """The control API's state report."""
    return control(base_url, "GET", "state").json()


def new_room(api, title: str = "Acme", room_type: int | str = 5, tags: list[str] | None = None) -> dict:
    """Create a room and return its FolderDto."""
    response = api("POST", "files/rooms", json={"title": title, "roomType": room_type, "tags": tags or []})
    assert response.status_code == 200, response.text
    return response.json()["response"]


# --- envelope and auth -----------------------------------------------------------------------------------


def test_success_envelope_has_docspace_shape(api, base_url):
    """Success: response, count, links, status 0, statusCode 200, and no null fields."""
    response = api("GET", "people/@self")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == 0 and body["statusCode"] == 200 and body["count"] == 1
    assert body["links"] == [{"href": f"{base_url}/api/2.0/people/@self", "action": "GET"}]
    assert body["response"]["id"] == OWNER and body["response"]["isOwner"] and body["response"]["isAdmin"]
    assert "null" not in response.text


def test_missing_or_wrong_key_gets_401_error_envelope(base_url):
    """No key and a wrong key both get the 401 error envelope."""
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        response = requests.get(f"{base_url}/api/2.0/files/rooms", headers=headers, timeout=5)
        assert response.status_code == 401
        body = response.json()
        assert body["status"] == 1 and body["statusCode"] == 401
        assert body["error"]["message"] == "Unauthorized"
        assert body["error"]["type"] == "System.Security.Authentication.AuthenticationException"


def test_unknown_api_route_is_404_envelope(api):
    """An unknown api/2.0 path is a 404 error envelope, not an HTML page."""
    response = api("GET", "files/nothing/here")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


# --- rooms -----------------------------------------------------------------------------------------------


def test_create_room_and_find_it_by_tag_and_search_area(api, base_url):
    """Rooms are found by tag, text and type; archived ones only with searchArea 1 or 2."""
    room = new_room(api, "Acme: Deal", "CustomRoom", ["deal-1", "client"])
    assert room["title"] == "Acme_ Deal"  # DocSpace rewrites ':' in titles
    assert (room["roomType"], room["type"], room["parentId"], room["rootFolderType"]) == (5, 19, 2, 14)
    assert room["id"] >= 1000 and room["tags"] == ["deal-1", "client"]
    new_room(api, "Other", 6, ["deal-2"])

    found = api("GET", "files/rooms", params={"tags": '["deal-1","nope"]'}).json()["response"]
    assert [f["id"] for f in found["folders"]] == [room["id"]] and found["total"] == 1
    assert found["current"]["id"] == 2 and found["pathParts"] == [{"id": 2, "title": "Rooms"}]
    assert api("GET", "files/rooms", params={"tags": '["deal"]'}).json()["response"]["total"] == 0
    assert api("GET", "files/rooms", params={"filterValue": "acme"}).json()["response"]["total"] == 1
    assert api("GET", "files/rooms", params={"type": [6, 1]}).json()["response"]["folders"][0]["title"] == "Other"

    control(base_url, "POST", f"rooms/{room['id']}/archive")
    by_area = {area: api("GET", "files/rooms", params={"tags": '["deal-1"]', "searchArea": area}).json()
               for area in (0, 1, 2)}
    assert by_area[0]["response"]["total"] == 0
    assert by_area[1]["response"]["folders"][0]["rootFolderType"] == 20
    assert by_area[2]["response"]["total"] == 1
    assert api("GET", f"files/rooms/{room['id']}").json()["response"]["rootFolderType"] == 20


def test_same_room_posted_twice_makes_two_rooms(api):
    """DocSpace has no idempotency key: the same POST twice makes two rooms."""
    first, second = new_room(api, "Twin"), new_room(api, "Twin")
    assert first["id"] != second["id"]
    assert api("GET", "files/rooms", params={"filterValue": "Twin"}).json()["response"]["total"] == 2


def test_room_validation_failures_are_problem_details(api):
    """Bad room bodies get 400 ProblemDetails inside a success-shaped envelope."""
    response = api("POST", "files/rooms", json={"roomType": 5})
    body = response.json()
    assert response.status_code == 400
    assert body["status"] == 1 and body["statusCode"] == 400
    assert body["response"]["title"] == "One or more validation errors occurred."
    assert body["response"]["errors"] == {"Title": ["The Title field is required."]}
    assert api("POST", "files/rooms", json={"title": "x", "roomType": 3}).status_code == 400
    assert api("POST", "files/rooms", json={"title": "x" * 171, "roomType": 5}).status_code == 400


def test_unknown_room_is_404(api):
    """An unknown room id is ItemNotFound (404)."""
    response = api("GET", "files/rooms/424242")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "The room not found"


# --- folders and files -----------------------------------------------------------------------------------


def test_folders_in_a_room(api):
    """A room id works as a folder parent, same titles are not merged, and listings page."""
    room = new_room(api)
    first = api("POST", f"files/folder/{room['id']}", json={"title": "Contracts"}).json()["response"]
    again = api("POST", f"files/folder/{room['id']}", json={"title": "Contracts"}).json()["response"]
    assert first["parentId"] == room["id"] and first["rootFolderType"] == 14
    assert first["id"] != again["id"]  # no duplicate-title check

    listing = api("GET", f"files/{room['id']}").json()["response"]
    assert [f["title"] for f in listing["folders"]] == ["Contracts", "Contracts"]
    assert listing["total"] == 2 and listing["current"]["id"] == room["id"]
    assert listing["pathParts"] == [{"id": 2, "title": "Rooms"}, {"id": room["id"], "title": "Acme"}]
    page = api("GET", f"files/{room['id']}", params={"startIndex": 1, "count": 1}).json()["response"]
    assert page["count"] == 1 and page["folders"][0]["id"] == again["id"]


def test_folder_parent_must_exist_and_not_be_the_rooms_root(api):
    """A missing parent is 403 (not 404), as is a plain folder under Rooms."""
    missing = api("POST", "files/folder/999999", json={"title": "x"})
    assert missing.status_code == 403
    assert missing.json()["error"]["type"] == "System.InvalidOperationException"
    assert api("POST", "files/folder/2", json={"title": "x"}).status_code == 403
    assert api("POST", "files/folder/1", json={"title": "x" * 166}).status_code == 400
    assert api("GET", "files/999999").status_code == 404


def test_copy_template_into_room(api):
    """copyas makes a new file; missing source 404, missing destination 403, no title 400."""
    room = new_room(api)
    folder = api("POST", f"files/folder/{room['id']}", json={"title": "Start here"}).json()["response"]
    response = api("POST", "files/file/9001/copyas",
                   json={"destFolderId": str(folder["id"]), "destTitle": "Welcome.pdf"})
    copy = response.json()["response"]
    assert response.status_code == 200
    assert copy["id"] >= 20000 and copy["folderId"] == folder["id"] and copy["fileExst"] == ".pdf"
    assert copy["version"] == 1 and copy["rootFolderType"] == 14 and copy["viewUrl"]
    assert [f["title"] for f in api("GET", f"files/{folder['id']}").json()["response"]["files"]] == ["Welcome.pdf"]

    missing_source = api("POST", "files/file/1/copyas", json={"destFolderId": folder["id"], "destTitle": "a.pdf"})
    assert missing_source.status_code == 404
    assert missing_source.json()["error"]["type"] == "System.IO.FileNotFoundException"
    assert api("POST", "files/file/9001/copyas", json={"destFolderId": 999999, "destTitle": "a.pdf"}).status_code == 403
    no_title = api("POST", "files/file/9001/copyas", json={"destFolderId": folder["id"]})
    assert no_title.status_code == 400 and "DestTitle" in no_title.json()["response"]["errors"]


# --- members ---------------------------------------------------------------------------------------------


def test_share_with_invitations(api):
    """Room admin gets 9; an unknown email becomes a pending guest missing from the reply."""
    room = new_room(api)
    response = api("PUT", f"files/rooms/{room['id']}/share", json={
        "invitations": [{"id": MANAGER, "access": 9}, {"email": "new@client.example", "access": 2}],
        "notify": False, "message": "Welcome"})
    body = response.json()["response"]
    assert response.status_code == 200 and body["error"] == 0 and "warning" not in body
    assert [(m["sharedTo"]["id"], m["access"]) for m in body["members"]] == [(MANAGER, 9)]  # email invitee not listed

    guest = api("GET", "people/email", params={"email": "NEW@client.example"}).json()["response"]
    assert guest["isVisitor"] and guest["activationStatus"] == 2 and guest["displayName"] == "new@client.example"
    members = api("GET", f"files/rooms/{room['id']}/share").json()
    assert members["total"] == 3
    assert [(m["sharedTo"]["id"], m["access"], m["isOwner"]) for m in members["response"]] == [
        (OWNER, 9, True), (MANAGER, 9, False), (guest["id"], 2, False)]
    assert members["response"][1]["sharedToUser"] == members["response"][1]["sharedTo"]


def test_share_with_entries_changes_nothing(api, base_url):
    """The tutorial's `entries` body is ignored: 200, empty result, no change."""
    room = new_room(api)
    response = api("PUT", f"files/rooms/{room['id']}/share",
                   json={"entries": [{"id": MANAGER, "isGroup": False, "access": 4}]})
    assert response.status_code == 200 and response.json()["response"] == {"members": [], "error": 0}
    assert [m["id"] for m in sandbox_state(base_url)["rooms"][0]["members"]] == [OWNER]


def test_share_refuses_roles_the_user_type_or_room_type_forbids(api, base_url):
    """9 for a User, or 2 in a public room, is 403 and nothing is applied."""
    custom, public = new_room(api), new_room(api, "Public", 6)
    refused = api("PUT", f"files/rooms/{custom['id']}/share",
                  json={"invitations": [{"id": CLIENT, "access": 2}, {"id": BOB, "access": 9}]})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "The role is not available for this user type"
    not_in_public = api("PUT", f"files/rooms/{public['id']}/share", json={"invitations": [{"id": CLIENT, "access": 2}]})
    assert not_in_public.status_code == 403
    assert all(len(room["members"]) == 1 for room in sandbox_state(base_url)["rooms"])  # nothing applied


def test_hidden_guest_is_dropped_silently(api):
    """A guest the caller may not see is left out without an error."""
    room = new_room(api)
    response = api("PUT", f"files/rooms/{room['id']}/share",
                   json={"invitations": [{"id": HIDDEN, "access": 2}, {"id": CLIENT, "access": "Read"}]})
    assert [m["sharedTo"]["id"] for m in response.json()["response"]["members"]] == [CLIENT]
    ids = [m["sharedTo"]["id"] for m in api("GET", f"files/rooms/{room['id']}/share").json()["response"]]
    assert HIDDEN not in ids and CLIENT in ids


def test_access_zero_removes_and_guest_invites_can_be_disabled(api, base_url):
    """Access 0 removes a member; new guests need allow_guests."""
    room = new_room(api)
    share = f"files/rooms/{room['id']}/share"
    api("PUT", share, json={"invitations": [{"id": CLIENT, "access": 2}]})
    api("PUT", share, json={"invitations": [{"id": CLIENT, "access": 0}]})
    assert [m["sharedTo"]["id"] for m in api("GET", share).json()["response"]] == [OWNER]
    control(base_url, "PUT", "config", json={"allow_guests": False})
    assert api("PUT", share, json={"invitations": [{"email": "x@new.example", "access": 2}]}).status_code == 403


def test_people_lookup_by_email(api):
    """people/email: found, 404 unknown, 403 hidden, 400 empty."""
    assert api("GET", "people/email", params={"email": "alice@sandbox.example"}).json()["response"]["isRoomAdmin"]
    assert api("GET", "people/email", params={"email": "nobody@x.example"}).status_code == 404
    assert api("GET", "people/email", params={"email": "hidden@other.example"}).status_code == 403
    assert api("GET", "people/email", params={"email": ""}).status_code == 400


def test_control_api_adds_users(api, base_url):
    """A room admin added through the control API may be made room manager."""
    added = control(base_url, "POST", "users", json={"email": "carol@sandbox.example", "type": "RoomAdmin"}).json()
    room = new_room(api)
    response = api("PUT", f"files/rooms/{room['id']}/share", json={"invitations": [{"id": added["id"], "access": 9}]})
    assert response.json()["response"]["members"][0]["access"] == 9


# --- links -----------------------------------------------------------------------------------------------


def test_primary_link_is_get_or_create(api, base_url):
    """GET link creates the primary external link once and returns it after."""
    room = new_room(api)
    first = api("GET", f"files/rooms/{room['id']}/link").json()["response"]
    second = api("GET", f"files/rooms/{room['id']}/link").json()["response"]
    assert first == second
    assert first["access"] == 2 and first["subjectType"] == 4 and first["sharedLink"] == first["sharedTo"]
    assert first["sharedLink"]["primary"] and first["sharedLink"]["linkType"] == 1
    assert first["sharedLink"]["shareLink"].startswith(f"{base_url}/s/")
    assert len(sandbox_state(base_url)["rooms"][0]["links"]) == 1


def test_collaboration_room_has_no_external_link(api):
    """Collaboration rooms refuse external links (403) but take invitation links."""
    room = new_room(api, "Collab", 2)
    refused = api("GET", f"files/rooms/{room['id']}/link")
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "System.InvalidOperationException"
    assert api("PUT", f"files/rooms/{room['id']}/links", json={"access": 2, "linkType": 1}).status_code == 403
    invitation = api("PUT", f"files/rooms/{room['id']}/links", json={"access": 2, "linkType": 0}).json()["response"]
    assert invitation["subjectType"] == 3 and invitation["sharedLink"]["linkType"] == 0


def test_public_room_gets_a_primary_link_and_links_are_capped(api):
    """Public rooms start with a primary link, hold six at most, and revoke with 0."""
    room = new_room(api, "Public", 6)
    links = f"files/rooms/{room['id']}/links"
    primary = api("GET", links, params={"type": 1}).json()["response"]
    assert len(primary) == 1 and primary[0]["sharedLink"]["primary"] and primary[0]["access"] == 2
    for _ in range(5):
        assert api("PUT", links, json={"access": 2, "linkType": 1}).status_code == 200
    assert api("PUT", links, json={"access": 2, "linkType": 1}).status_code == 403
    link_id = primary[0]["sharedLink"]["id"]
    assert api("PUT", links, json={"access": 9, "linkType": 1, "linkId": link_id}).status_code == 403
    revoked = api("PUT", links, json={"access": 0, "linkType": 1, "linkId": link_id})
    assert revoked.status_code == 200
    assert len(api("GET", links, params={"type": 1}).json()["response"]) == 5


# --- faults ----------------------------------------------------------------------------------------------


def test_status_429_fault_counts_down(api, base_url):
    """A 429 fault has no body, carries Retry-After, and stops after `times`."""
    set_faults(base_url, {"method": "POST", "path": "^files/rooms$", "action": "status", "status": 429,
                          "retry_after": 7, "times": 1})
    limited = api("POST", "files/rooms", json={"title": "A", "roomType": 5})
    assert limited.status_code == 429 and limited.content == b""
    assert limited.headers["Retry-After"] == "7" and limited.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Limit" in limited.headers and "X-RateLimit-Reset" in limited.headers
    assert control(base_url, "GET", "faults").json()["rules"][0]["times"] == 0
    assert api("POST", "files/rooms", json={"title": "A", "roomType": 5}).status_code == 200
    assert len(sandbox_state(base_url)["rooms"]) == 1


def test_5xx_fault_answers_error_envelope_and_only_matching_requests(api, base_url):
    """A 5xx fault answers an error envelope for matching requests only."""
    set_faults(base_url, {"method": "POST", "path": "rooms", "action": "status", "status": 503, "times": 2})
    assert api("GET", "files/rooms").status_code == 200  # other method: untouched
    failures = [api("POST", "files/rooms", json={"title": "A", "roomType": 5}) for _ in range(3)]
    assert [r.status_code for r in failures] == [503, 503, 200]
    assert failures[0].json()["statusCode"] == 503 and failures[0].json()["status"] == 1
    assert len(sandbox_state(base_url)["rooms"]) == 1


def test_html502_does_nothing(api, base_url):
    """html502 answers a proxy page and creates nothing."""
    set_faults(base_url, {"method": "*", "path": "files/rooms", "action": "html502"})
    response = api("POST", "files/rooms", json={"title": "A", "roomType": 5})
    assert response.status_code == 502 and response.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text
    assert sandbox_state(base_url)["rooms"] == []


def test_after_status_creates_the_room_but_answers_502(api, base_url):
    """after_status: the room exists although the client saw 502."""
    set_faults(base_url, {"method": "POST", "path": "files/rooms", "action": "after_status", "status": 502, "times": 1})
    response = api("POST", "files/rooms", json={"title": "Lost answer", "roomType": 5})
    assert response.status_code == 502 and "Bad Gateway" in response.text
    assert [room["title"] for room in sandbox_state(base_url)["rooms"]] == ["Lost answer"]


def test_drop_closes_the_connection_without_doing_anything(api, base_url):
    """drop: no response at all, no room, and the server keeps serving."""
    set_faults(base_url, {"method": "POST", "path": "files/rooms", "action": "drop", "times": 1})
    with pytest.raises(requests.ConnectionError):
        api("POST", "files/rooms", json={"title": "A", "roomType": 5})
    assert sandbox_state(base_url)["rooms"] == []
    assert api("GET", "people/@self").status_code == 200  # the server survived


def test_after_drop_creates_the_room_then_closes_the_connection(api, base_url):
    """after_drop: the room exists although the client got no response."""
    set_faults(base_url, {"method": "POST", "path": "files/rooms", "action": "after_drop", "times": 1})
    with pytest.raises(requests.ConnectionError):
        api("POST", "files/rooms", json={"title": "Dropped answer", "roomType": 5})
    state = sandbox_state(base_url)
    assert [room["title"] for room in state["rooms"]] == ["Dropped answer"]
    assert control(base_url, "GET", "calls").json()[-1]["status"] is None  # recorded as dropped
    assert state["in_flight_writes"] == 0


def test_hang_outlasts_the_client_timeout_and_latency_delays(api, base_url):
    """hang outlasts a client timeout; latency delays but answers."""
    set_faults(base_url, {"method": "GET", "path": "people", "action": "hang", "seconds": 3, "times": 1},
               {"method": "GET", "path": "files/rooms", "action": "latency", "seconds": 0.3, "times": 1})
    with pytest.raises(requests.Timeout):
        api("GET", "people/@self", timeout=0.3)
    started = time.monotonic()
    assert api("GET", "files/rooms").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_bad_fault_rule_is_rejected(base_url):
    """A malformed fault rule is refused with 400."""
    response = requests.put(f"{base_url}/_sandbox/faults", json={"rules": [{"action": "explode"}]}, timeout=5)
    assert response.status_code == 400 and "action" in response.json()["error"]


# --- traffic limits --------------------------------------------------------------------------------------


def _parallel_posts(api, count: int) -> list[requests.Response]:
    """Fire `count` room creations at once."""
    barrier = threading.Barrier(count)

    def post(index: int) -> requests.Response:
        """Wait for the others, then post."""
        barrier.wait()
        return api("POST", "files/rooms", json={"title": f"R{index}", "roomType": 5})

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def test_peak_concurrent_writes_is_tracked(api, base_url):
    """Overlapping POSTs raise the peak of in-flight writes."""
    control(base_url, "PUT", "config", json={"latency_ms": 400})
    responses = _parallel_posts(api, 8)
    state = sandbox_state(base_url)
    assert all(r.status_code == 200 for r in responses)
    assert 5 <= state["peak_concurrent_writes"] <= 8 and state["in_flight_writes"] == 0
    assert state["calls"]["POST files/rooms"] == 8


def test_concurrent_write_limit_answers_429(api, base_url):
    """Beyond max_concurrent_writes, writes get an immediate empty 429."""
    control(base_url, "PUT", "config", json={"latency_ms": 400, "max_concurrent_writes": 2})
    responses = _parallel_posts(api, 6)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}
    assert all(r.headers["Retry-After"] == "1" and r.content == b"" for r in responses if r.status_code == 429)
    assert sandbox_state(base_url)["peak_concurrent_writes"] == 2


def test_serves_a_hundred_concurrent_connections(api, base_url):
    """A hundred slow requests are served in parallel."""
    control(base_url, "PUT", "config", json={"latency_ms": 300})
    started = time.monotonic()
    with ThreadPoolExecutor(100) as pool:
        codes = list(pool.map(lambda _: api("GET", "people/@self", timeout=10).status_code, range(100)))
    assert codes == [200] * 100
    assert time.monotonic() - started < 5  # in parallel: one after another would take 30 s


def test_rate_per_minute_answers_429(api, base_url):
    """The sliding window refuses the request past rate_per_minute."""
    control(base_url, "PUT", "config", json={"rate_per_minute": 3})
    codes = [api("GET", "people/@self").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


# --- call log, CRM, reset, CLI ---------------------------------------------------------------------------


def test_call_log_records_bodies_and_route_templates(api, base_url):
    """The call log keeps bodies, statuses and route templates."""
    room = new_room(api)
    since = control(base_url, "GET", "calls").json()[-1]["seq"]
    api("POST", f"files/folder/{room['id']}", json={"title": "Docs"})
    body = {"invitations": [{"id": MANAGER, "access": 9}], "notify": False}
    api("PUT", f"files/rooms/{room['id']}/share", json=body)
    calls = control(base_url, "GET", "calls", params={"since": since}).json()
    assert [(c["method"], c["route"], c["status"]) for c in calls] == [
        ("POST", "files/folder/{folderId}", 200), ("PUT", "files/rooms/{id}/share", 200)]
    assert calls[1]["body"] == body and calls[1]["path"] == f"files/rooms/{room['id']}/share"
    assert sandbox_state(base_url)["calls"]["POST files/folder/{folderId}"] == 1


def test_crm_receiver_records_callbacks_and_honours_faults(base_url):
    """The fake CRM records raw callbacks; crm faults fail the first ones."""
    set_faults(base_url, {"target": "crm", "method": "POST", "path": "^callbacks$", "action": "status",
                          "status": 500, "times": 2})
    payload = json.dumps({"deal_id": "123", "room_url": "http://x"})
    headers = {"Content-Type": "application/json", "X-Signature": "sha256=abc"}
    codes = [requests.post(f"{base_url}/crm/callbacks", data=payload, headers=headers, timeout=5).status_code
             for _ in range(3)]
    assert codes == [500, 500, 200]
    recorded = control(base_url, "GET", "crm/callbacks").json()
    assert len(recorded) == 1 and recorded[0]["body"] == payload and recorded[0]["path"] == "/crm/callbacks"
    assert recorded[0]["headers"]["X-Signature"] == "sha256=abc"
    assert sandbox_state(base_url)["crm_callbacks"] == 1


def test_reset_restores_the_seed(api, base_url):
    """Reset clears rooms, calls and settings and restarts ids."""
    new_room(api)
    control(base_url, "PUT", "config", json={"max_concurrent_writes": 1})
    control(base_url, "POST", "reset")
    state = sandbox_state(base_url)
    assert state["rooms"] == [] and state["calls"] == {} and state["config"]["max_concurrent_writes"] is None
    assert new_room(api)["id"] == 1000


@pytest.mark.slow
def test_cli_announces_the_address_and_stops_on_sigterm():
    """The CLI prints SANDBOX_READY with the port and exits 0 on SIGTERM."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen([sys.executable, "-m", "onboarding.sandbox", "--port", "0", "--api-key", API_KEY],
                               cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("SANDBOX_READY http://127.0.0.1:")
        url = line.split(" ", 1)[1]
        assert requests.get(f"{url}/api/2.0/people/@self", headers=AUTH, timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()

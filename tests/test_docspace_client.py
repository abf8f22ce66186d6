"""The DocSpace client against the sandbox over real HTTP: envelopes unwrapped, failures typed."""

from __future__ import annotations

import pytest

from onboarding.docspace import DocSpace
from onboarding.errors import PermanentError, TransientError
from onboarding.limiter import Limiter
from tests.conftest import API_KEY


def client(sandbox, api_key: str = API_KEY, read_timeout: float = 5) -> DocSpace:
    """A client of the sandbox."""
    return DocSpace(sandbox.url, api_key, connect_timeout=2, read_timeout=read_timeout,
                    limiter=Limiter(15, 1500))


def test_rooms_are_created_and_found_again_by_tag(sandbox):
    docspace = client(sandbox)
    room = docspace.create_room("Client - Acme", 5, ["deal-1", "crm-client"])
    assert room["roomType"] == 5
    assert [found["id"] for found in docspace.rooms_tagged("deal-1")] == [room["id"]]
    assert docspace.rooms_tagged("deal-2") == []


def test_folder_contents_are_read_across_pages(sandbox):
    docspace = client(sandbox)
    room = docspace.create_room("Paged", 5, [])
    created = [docspace.create_folder(room["id"], f"F{number}")["id"] for number in range(105)]
    assert sorted(folder["id"] for folder in docspace.folder_contents(room["id"])["folders"]) == created


def test_a_wrong_key_is_permanent_with_docspace_s_message(sandbox):
    with pytest.raises(PermanentError) as error:
        client(sandbox, api_key="sk-wrong").create_room("x", 5, [])
    assert error.value.status == 401
    assert error.value.endpoint == "POST files/rooms"


def test_refusals_are_permanent_and_carry_the_message(sandbox):
    docspace = client(sandbox)
    room = docspace.create_room("Collab", 2, [])
    with pytest.raises(PermanentError) as error:
        docspace.primary_external_link(room["id"])
    assert error.value.status == 403
    with pytest.raises(PermanentError) as error:
        docspace.create_folder(999999, "x")
    assert error.value.status == 403 and "folder not found" in error.value.message
    with pytest.raises(PermanentError) as error:
        docspace.copy_file(123456, room["id"], "x.pdf")
    assert error.value.status == 404
    with pytest.raises(PermanentError) as error:
        docspace.create_room("", 5, [])
    assert error.value.status == 400 and "Title" in error.value.message


def test_an_unknown_email_is_none_not_an_error(sandbox):
    docspace = client(sandbox)
    assert docspace.user_by_email("nobody@example.com") is None
    assert docspace.user_by_email("client@known.example")["id"] == "44444444-4444-4444-8444-444444444444"


@pytest.mark.parametrize(("rule", "status"), [
    ({"action": "status", "status": 429, "retry_after": 7}, 429),
    ({"action": "status", "status": 500}, 500),
    ({"action": "html502"}, 502),
    ({"action": "drop"}, None),
])
def test_passing_failures_are_transient(sandbox, rule, status):
    sandbox.faults({"method": "POST", "path": "^files/rooms$", "times": 1, **rule})
    docspace = client(sandbox)
    with pytest.raises(TransientError) as error:
        docspace.create_room("x", 5, [])
    assert error.value.status == status
    if status == 429:
        assert error.value.retry_after == 7
    assert docspace.create_room("x", 5, [])["title"] == "x"


def test_a_hang_is_a_transient_timeout(sandbox):
    sandbox.faults({"method": "GET", "path": "^files/rooms$", "action": "hang", "seconds": 3, "times": 1})
    with pytest.raises(TransientError, match=r"did not answer within 0\.5 s"):
        client(sandbox, read_timeout=0.5).rooms_tagged("deal-x")

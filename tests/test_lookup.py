"""`flask --app wsgi docspace people|files` against the sandbox: the ids ACCOUNT_MANAGER_ID and the plan need."""

from __future__ import annotations

import json

import pytest

from onboarding import create_app, lookup
from onboarding.config import load_settings
from onboarding.sandbox.state import MANAGER_ID, USER_ID
from tests.conftest import API_KEY, service_env


@pytest.fixture
def docspace(sandbox, sqlite_url):
    """Run `flask --app wsgi docspace ...` on an app pointed at the sandbox."""
    app = create_app(load_settings(service_env(sqlite_url, sandbox.url, sandbox.crm_url)))
    if "docspace" not in app.cli.commands:
        lookup.init_app(app)

    def run(*args: str):
        result = app.test_cli_runner().invoke(args=["docspace", *args])
        assert API_KEY not in result.output
        return result

    yield run
    app.extensions["onboarding"].db.dispose()


def test_people_lists_who_can_manage_rooms(docspace):
    result = docspace("people")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert rows[0] == ["ID", "NAME", "E-MAIL", "ACCOUNT", "TYPE", "MANAGES", "ROOMS"]
    assert [MANAGER_ID, "Alice", "Manager", "alice@sandbox.example", "room", "admin", "yes"] in rows
    assert [USER_ID, "Bob", "User", "bob@sandbox.example", "user", "no"] in rows
    assert "hidden@other.example" not in result.output  # a user the key's user may not see


def test_people_search_as_json(docspace):
    result = docspace("people", "--search", "ALI", "--json")
    assert json.loads(result.output) == [{"id": MANAGER_ID, "name": "Alice Manager", "email": "alice@sandbox.example",
                                          "account_type": "room admin", "can_manage_rooms": True}]
    assert json.loads(docspace("people", "--search", "bob@", "--json").output)[0]["can_manage_rooms"] is False
    assert "No DocSpace user's name or e-mail contains 'nobody'" in docspace("people", "--search", "nobody").output


def test_files_of_my_documents_and_of_a_folder(docspace):
    mine = docspace("files", "--folder", "@my")
    assert mine.exit_code == 0, mine.output
    assert mine.output.splitlines()[0] == "My documents (folder 1)"
    assert mine.output.splitlines()[2].split() == ["100", "folder", "Templates"]
    templates = docspace("files", "--folder", "100")
    assert templates.output.splitlines()[0] == "My documents / Templates (folder 100)"
    assert templates.output.splitlines()[2].split() == ["9001", "file", "(.pdf)", "Welcome", "to", "your", "client",
                                                        "room.pdf"]


def test_files_search_as_json(docspace):
    result = docspace("files", "--folder", "100", "--search", "portal", "--json")
    assert json.loads(result.output) == [{"id": 9002, "title": "How to use the client portal.pdf", "type": "file",
                                          "extension": ".pdf"}]


def test_files_refusals_are_the_commands_errors(docspace):
    missing = docspace("files", "--folder", "999999")
    assert missing.exit_code == 1
    assert "DocSpace refused (404)" in missing.output
    wrong = docspace("files", "--folder", "templates")
    assert wrong.exit_code == 2
    assert 'neither a folder id (a number) nor "@my"' in wrong.output

"""`flask --app wsgi check` against the sandbox: everything passing, then one culprit at a time; never a secret."""

from __future__ import annotations

import json
import secrets

import pytest
from standardwebhooks.webhooks import Webhook

from onboarding import check, create_app
from onboarding.config import load_settings
from onboarding.docspace import DocSpace
from onboarding.errors import PermanentError
from onboarding.limiter import Limiter
from onboarding.sandbox.state import USER_ID
from tests.conftest import API_KEY, CRM_SECRET, HUBSPOT_TOKEN, PIPEDRIVE_TOKEN, service_env
from tests.processes import free_port

SECRET_SETTINGS = ("DOCSPACE_API_KEY", "ADMIN_TOKEN", "SECRET_KEY", "CRM_CALLBACK_SECRET", "HUBSPOT_CLIENT_SECRET",
                   "HUBSPOT_ACCESS_TOKEN", "PIPEDRIVE_WEBHOOK_PASSWORD", "PIPEDRIVE_API_TOKEN")
PLAN_WITH_A_MISSING_TEMPLATE = """
[room]
type = "custom"

[[folders]]
title = "Deliverables"

[[templates]]
file_id = 9001
folder = "Deliverables"
title = "Welcome.pdf"

[[templates]]
file_id = 424242
title = "Price list.pdf"
"""


def crms_on(sandbox) -> dict[str, str]:
    """The settings that switch HubSpot and Pipedrive on against the sandbox."""
    return {"HUBSPOT_CLIENT_SECRET": "hubspot-client-secret-" + secrets.token_hex(8),
            "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN, "HUBSPOT_API_URL": sandbox.hubspot_url,
            "PIPEDRIVE_WEBHOOK_USER": "pipedrive-hook", "PIPEDRIVE_WEBHOOK_PASSWORD": "pd-" + secrets.token_hex(8),
            "PIPEDRIVE_API_TOKEN": PIPEDRIVE_TOKEN, "PIPEDRIVE_API_URL": sandbox.pipedrive_url}


def secrets_of(env: dict[str, str]) -> list[str]:
    """Every secret value in a service environment, and the key inside each whsec_ secret."""
    values = [env[name] for name in SECRET_SETTINGS if env.get(name)]
    for entry in [*env["WEBHOOK_SECRETS"].split(), env["CRM_CALLBACK_SECRET"]]:
        values += [entry, entry.removeprefix("whsec_")]
    return values


@pytest.fixture
def cli(sandbox, sqlite_url):
    """Run a command of an app built from the service environment (pointed at the sandbox) with overrides; fail the
    test if its output holds any secret of that environment."""
    apps = []

    def run(*args: str, **overrides: str):
        env = service_env(sqlite_url, sandbox.url, sandbox.crm_url, **overrides)
        app = create_app(load_settings(env))
        if "check" not in app.cli.commands:
            check.init_app(app)
        apps.append(app)
        result = app.test_cli_runner().invoke(args=list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        for secret in secrets_of(env):
            assert secret not in result.output
        return result

    yield run
    for app in apps:
        app.extensions["onboarding"].db.dispose()


def lines(result) -> dict[str, list[str]]:
    """The output's lines by their label: ok, FAILED, skipped."""
    found: dict[str, list[str]] = {"ok": [], "FAILED": [], "skipped": []}
    for line in result.output.splitlines():
        label = line.split(" ", 1)[0]
        found[label].append(line)
    return found


def test_a_ready_service_passes_every_check(cli):
    result = cli("check")
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert not found["FAILED"] and not found["skipped"]
    output = result.output
    assert "DocSpace: answers at" in output and "(DocSpace 3.7.2)" in output
    assert "Sandbox Owner is the owner" in output
    assert "ACCOUNT_MANAGER_ID: 22222222-2222-4222-8222-222222222222 is Alice Manager" in output
    assert '[[templates]] #1 file_id = 9001 ("Welcome to your client room.pdf"): readable' in output
    assert '[[templates]] #2 file_id = 9002 ("How to use the client portal.pdf"): readable' in output
    assert "plan: " in output and "checked when the plan was loaded at start-up" in output
    assert "CRM_CALLBACK_URL: 127.0.0.1 resolves" in output


@pytest.mark.parametrize("case", ["wrong key", "nothing listens", "missing template", "plain user as manager",
                                  "callback nowhere", "schema behind"])
def test_one_culprit_fails_alone_and_is_named(cli, tmp_path, case):
    overrides, culprit, fix = {
        "wrong key": ({"DOCSPACE_API_KEY": "sk-wrong-" + secrets.token_hex(16)},
                      "DocSpace API key: DocSpace refused (401)", "set DOCSPACE_API_KEY"),
        "nothing listens": ({"DOCSPACE_URL": f"http://127.0.0.1:{free_port()}"},
                            "DocSpace: no DocSpace API answers at", "set DOCSPACE_URL"),
        "missing template": ({"ONBOARDING_PLAN": str(tmp_path / "plan.toml")},
                             '[[templates]] #2 file_id = 424242 ("Price list.pdf"): not readable: DocSpace refused '
                             "(403): The required file was not found", "flask --app wsgi docspace files --folder @my"),
        "plain user as manager": ({"ACCOUNT_MANAGER_ID": USER_ID},
                                  f"ACCOUNT_MANAGER_ID: {USER_ID} is Bob User (bob@sandbox.example), a user, who "
                                  "cannot manage rooms", "flask --app wsgi docspace people"),
        "callback nowhere": ({"CRM_CALLBACK_URL": f"http://127.0.0.1:{free_port()}/callbacks"},
                             "CRM_CALLBACK_URL: http://127.0.0.1:", "check that the CRM's receiver runs"),
        "schema behind": ({"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"},
                          "database: answers, but its schema is at nothing", "run `flask --app wsgi db upgrade`"),
    }[case]
    (tmp_path / "plan.toml").write_text(PLAN_WITH_A_MISSING_TEMPLATE)
    result = cli("check", **overrides)
    assert result.exit_code == 1
    failed = lines(result)["FAILED"]
    assert len(failed) == 1, result.output
    assert failed[0].startswith(f"FAILED   {culprit}"), result.output
    assert fix in failed[0]


def test_checks_that_need_the_key_are_skipped_saying_why(cli):
    result = cli("check", DOCSPACE_API_KEY="sk-wrong-" + secrets.token_hex(16))
    skipped = lines(result)["skipped"]
    assert [line.split(":", 1)[0] for line in skipped] == [
        "skipped  DocSpace API key's user may create rooms", "skipped  ACCOUNT_MANAGER_ID",
        'skipped  [[templates]] #1 file_id = 9001 ("Welcome to your client room.pdf")',
        'skipped  [[templates]] #2 file_id = 9002 ("How to use the client portal.pdf")']
    assert all(line.endswith("not checked, because DocSpace did not accept the API key") for line in skipped)


def test_json_lists_every_check_with_its_fix(cli):
    result = cli("check", "--json", ACCOUNT_MANAGER_ID=USER_ID)
    assert result.exit_code == 1
    outcomes = json.loads(result.output)
    assert all(set(outcome) == {"check", "ok", "detail", "fix"} for outcome in outcomes)
    assert [outcome["check"] for outcome in outcomes if outcome["ok"] is not True] == ["ACCOUNT_MANAGER_ID"]
    manager = next(outcome for outcome in outcomes if outcome["check"] == "ACCOUNT_MANAGER_ID")
    assert manager["ok"] is False and "room admin" in manager["fix"]
    assert all(outcome["fix"] is None for outcome in outcomes if outcome["ok"])


def test_crms_fail_until_their_setup_has_run(cli, sandbox):
    crms = crms_on(sandbox)
    before = cli("check", **crms)
    assert before.exit_code == 1
    failed = lines(before)["FAILED"]
    assert failed == [
        "FAILED   HubSpot deal properties: missing: docspace_room_id, docspace_room_url; fix: run "
        "`flask --app wsgi hubspot setup`",
        'FAILED   Pipedrive deal fields: missing: "DocSpace room ID", "DocSpace room link"; fix: run '
        "`flask --app wsgi pipedrive setup`"]
    assert "ok       HubSpot token: valid" in before.output and "ok       Pipedrive token: valid" in before.output

    assert cli("hubspot", "setup", **crms).exit_code == 0
    assert lines(cli("check", **crms))["FAILED"] == [failed[1]]
    assert cli("pipedrive", "setup", **crms).exit_code == 0
    after = cli("check", **crms)
    assert after.exit_code == 0, after.output
    assert "HubSpot deal properties: docspace_room_id and docspace_room_url exist" in after.output


def test_wrong_crm_tokens_are_named_and_their_fields_skipped(cli, sandbox):
    crms = {**crms_on(sandbox), "HUBSPOT_ACCESS_TOKEN": "pat-na1-wrong", "PIPEDRIVE_API_TOKEN": "0" * 40}
    result = cli("check", **crms)
    assert [line.split(":", 1)[0] for line in lines(result)["FAILED"]] == ["FAILED   HubSpot token",
                                                                          "FAILED   Pipedrive token"]
    assert "set HUBSPOT_ACCESS_TOKEN" in result.output and "set PIPEDRIVE_API_TOKEN" in result.output
    assert [line.split(":", 1)[0] for line in lines(result)["skipped"]] == ["skipped  HubSpot deal properties",
                                                                           "skipped  Pipedrive deal fields"]


def test_send_test_posts_a_signed_test_event(cli, sandbox):
    result = cli("check", "--send-test")
    assert result.exit_code == 0, result.output
    assert "ok       CRM callback test event: the CRM accepted a signed onboarding.test (HTTP 200)" in result.output
    (received,) = sandbox.callbacks()
    headers = {name.lower(): value for name, value in received["headers"].items()}
    event = Webhook(CRM_SECRET).verify(received["body"], headers)
    assert event["type"] == "onboarding.test"


def test_send_test_needs_the_generic_webhook(cli, sandbox):
    result = cli("check", "--send-test", WEBHOOK_SECRETS="", **crms_on(sandbox))
    assert result.exit_code == 2
    assert "--send-test needs the generic webhook" in result.output


def test_the_portal_says_its_version_without_a_key_and_refuses_a_missing_file_with_403(sandbox):
    docspace = DocSpace(sandbox.url, "sk-wrong", connect_timeout=2, read_timeout=5, limiter=Limiter(15, 1500))
    assert docspace.version() == {"docSpace": "3.7.2"}
    with pytest.raises(PermanentError) as refused:
        docspace.me()
    assert refused.value.status == 401
    docspace = DocSpace(sandbox.url, API_KEY, connect_timeout=2, read_timeout=5, limiter=Limiter(15, 1500))
    assert docspace.me()["isOwner"] is True
    assert docspace.user(USER_ID)["isCollaborator"] is True
    assert docspace.user("00000000-0000-4000-8000-000000000000") is None
    with pytest.raises(PermanentError) as refused:
        docspace.file_info(424242)
    assert (refused.value.status, refused.value.endpoint) == (403, "GET files/file/{fileId}")
    assert "The required file was not found" in refused.value.message

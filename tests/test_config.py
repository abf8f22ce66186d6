"""Settings: a missing or malformed one stops start-up with one line naming it."""

from __future__ import annotations

import pytest

from onboarding.config import REQUIRED, ConfigError, load_settings
from tests.conftest import service_env
from tests.processes import run_flask


def env(**changes):
    """A complete environment, changed."""
    return service_env("sqlite:////tmp/unused.db", "https://portal.example.com", "https://crm.example.com/cb",
                       **changes)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_missing_required_setting_is_named(name):
    with pytest.raises(ConfigError, match=f"^{name} is not set"):
        load_settings(env(**{name: ""}))


@pytest.mark.parametrize(("change", "message"), [
    ({"DOCSPACE_URL": "portal.example.com"}, "DOCSPACE_URL is not an http(s) URL"),
    ({"WEBHOOK_SECRETS": "whsec_abc, nope"}, "WEBHOOK_SECRETS: entry 1 is malformed"),
    ({"ADMIN_TOKEN": "short"}, "ADMIN_TOKEN is too short"),
    ({"MAX_ATTEMPTS": "many"}, "MAX_ATTEMPTS is not an integer"),
    ({"LEASE_SECONDS": "0"}, "LEASE_SECONDS must be at least"),
    ({"NOTIFY_FAILURES": "perhaps"}, "NOTIFY_FAILURES is not a boolean"),
])
def test_malformed_settings_are_named(change, message):
    with pytest.raises(ConfigError) as error:
        load_settings(env(**change))
    assert str(error.value).startswith(message)


def test_the_secrets_never_appear_in_the_message():
    with pytest.raises(ConfigError) as error:
        load_settings(env(CRM_CALLBACK_SECRET="whsec_c2VjcmV0LXZhbHVl-not-base64"))
    assert "c2VjcmV0LXZhbHVl" not in str(error.value)


def test_start_up_stops_with_one_line(tmp_path):
    result = run_flask(env(DOCSPACE_API_KEY="", DATABASE_URL=f"sqlite:///{tmp_path}/x.db"), "routes")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "onboarding: configuration error: DOCSPACE_API_KEY is not set: a DocSpace API key (Settings > Developer "
        "Tools > API keys), sent as a Bearer token"]


def test_a_bad_plan_stops_start_up_naming_the_key(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[room]\ntype = "collaboration"\n[link]\nkind = "external"\n')
    result = run_flask(env(ONBOARDING_PLAN=str(plan), DATABASE_URL=f"sqlite:///{tmp_path}/x.db"), "routes")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert '[link] kind = "external" is not possible in a collaboration room' in lines[0]


def test_a_source_is_on_when_its_credentials_are_set_and_needs_the_rest():
    hubspot_only = env(WEBHOOK_SECRETS="", CRM_CALLBACK_URL="", CRM_CALLBACK_SECRET="",
                       HUBSPOT_CLIENT_SECRET="hubspot-client-secret", HUBSPOT_ACCESS_TOKEN="pat-na1-x")
    settings = load_settings(hubspot_only)
    assert settings.webhook_secrets == () and settings.crm_callback_url is None
    assert settings.hubspot_api_url == "https://api.hubapi.com"
    with pytest.raises(ConfigError, match=r"^HUBSPOT_ACCESS_TOKEN is not set \(needed because HUBSPOT_CLIENT_SECRET"):
        load_settings({**hubspot_only, "HUBSPOT_ACCESS_TOKEN": ""})
    with pytest.raises(ConfigError, match=r"^CRM_CALLBACK_URL is not set \(needed because WEBHOOK_SECRETS"):
        load_settings(env(CRM_CALLBACK_URL=""))
    with pytest.raises(ConfigError, match=r"^PIPEDRIVE_API_URL is not set"):
        load_settings(env(PIPEDRIVE_WEBHOOK_USER="u", PIPEDRIVE_WEBHOOK_PASSWORD="p", PIPEDRIVE_API_TOKEN="t"))


def test_without_any_source_start_up_says_which_settings_switch_one_on():
    with pytest.raises(ConfigError, match=r"^no source is on: set WEBHOOK_SECRETS"):
        load_settings(env(WEBHOOK_SECRETS=""))

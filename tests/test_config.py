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

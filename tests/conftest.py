"""Shared fixtures: the sandbox process, a database on each engine, settings, the app and signed requests."""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import psycopg
import pytest
import requests
from standardwebhooks.webhooks import Webhook

from onboarding import create_app
from onboarding.config import load_settings
from onboarding.db import Database
from onboarding.signatures import parse_secret, sign
from tests.processes import start_sandbox

WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
OLD_WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
CRM_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
API_KEY = "sk-test-" + secrets.token_hex(16)
ADMIN_TOKEN = "admin-" + secrets.token_hex(16)
HUBSPOT_TOKEN = "pat-na1-" + secrets.token_hex(8)
PIPEDRIVE_TOKEN = secrets.token_hex(20)  # Pipedrive API tokens are 40 hex characters
MANAGER_ID = "22222222-2222-4222-8222-222222222222"
# The shape of the generic CRM that the step graph reads (no enrichment, a write-back step named "callback"),
# for tests of the graph alone.
GENERIC_CRM = SimpleNamespace(enrichment=(), write_back=SimpleNamespace(step="callback"))
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# -- the DocSpace sandbox ------------------------------------------------------------------------------------


class Sandbox:
    """The running sandbox: its URL and its control API."""

    def __init__(self, url: str) -> None:
        """A handle on the sandbox at url."""
        self.url = url
        self.crm_url = f"{url}/crm/callbacks"

    def reset(self) -> None:
        """Back to the seed data, no faults."""
        requests.post(f"{self.url}/_sandbox/reset", timeout=5).raise_for_status()

    def state(self) -> dict:
        """Rooms, users, counters."""
        return requests.get(f"{self.url}/_sandbox/state", timeout=5).json()

    def calls(self) -> list[dict]:
        """Every API call so far."""
        return requests.get(f"{self.url}/_sandbox/calls", timeout=5).json()

    def calls_to(self, method: str, route: str) -> list[dict]:
        """The API calls to one route template, e.g. ("PUT", "files/rooms/{id}/share")."""
        return [call for call in self.calls() if call["method"] == method and call["route"] == route]

    def callbacks(self) -> list[dict]:
        """Every CRM callback received so far."""
        return requests.get(f"{self.url}/_sandbox/crm/callbacks", timeout=5).json()

    def faults(self, *rules: dict) -> None:
        """Replace the fault rules."""
        requests.put(f"{self.url}/_sandbox/faults", json={"rules": list(rules)}, timeout=5).raise_for_status()

    def configure(self, **config) -> None:
        """Change latency, guest policy, limits."""
        requests.put(f"{self.url}/_sandbox/config", json=config, timeout=5).raise_for_status()

    def add_user(self, **user) -> dict:
        """Add a portal user."""
        answer = requests.post(f"{self.url}/_sandbox/users", json=user, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def rooms(self) -> list[dict]:
        """The rooms in the portal."""
        return self.state()["rooms"]

    # -- HubSpot (/hubspot, token HUBSPOT_TOKEN) --

    @property
    def hubspot_url(self) -> str:
        """What HUBSPOT_API_URL points at."""
        return f"{self.url}/hubspot"

    def _control(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call a /_sandbox control endpoint and return its JSON answer, failing on an error status."""
        answer = requests.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def hubspot_add_deal(self, **deal) -> dict:
        """Create a HubSpot deal (dealname, dealstage?, pipeline?, hubspot_owner_id?, company?, contacts?, ...);
        returns {id, company_id, contact_ids}."""
        return self._control("POST", "hubspot/deals", deal)

    def hubspot_add_owner(self, **owner) -> dict:
        """Create a HubSpot owner (email, firstName, lastName); returns it with its string id."""
        return self._control("POST", "hubspot/owners", owner)

    def hubspot_state(self) -> dict:
        """portal_id, config, deals with all properties and notes, custom properties, groups, owners, calls."""
        return self._control("GET", "hubspot/state")

    def hubspot_deal(self, deal_id: str) -> dict:
        """One HubSpot deal from the state: {id, properties, notes}."""
        return next(deal for deal in self.hubspot_state()["deals"] if deal["id"] == str(deal_id))

    def hubspot_calls(self) -> list[dict]:
        """Every request the HubSpot imitation received."""
        return self.hubspot_state()["calls"]

    def hubspot_configure(self, **config) -> dict:
        """Change HubSpot settings: max_per_10s (int or None)."""
        return self._control("PUT", "hubspot/config", config)

    # -- Pipedrive (/pipedrive, token PIPEDRIVE_TOKEN) --

    @property
    def pipedrive_url(self) -> str:
        """What PIPEDRIVE_API_URL points at."""
        return f"{self.url}/pipedrive"

    def pipedrive_add_user(self, **user) -> dict:
        """Create a Pipedrive user (name, email, active_flag?); returns it with its integer id."""
        return self._control("POST", "pipedrive/users", user)

    def pipedrive_add_deal(self, **deal) -> dict:
        """Create a Pipedrive deal (title, owner_id?, person?, organization?, status?, custom_fields?, ...);
        returns {id, person_id, org_id}."""
        return self._control("POST", "pipedrive/deals", deal)

    def pipedrive_state(self) -> dict:
        """company_id, config, deals with custom fields and notes, custom deal fields, users, calls."""
        return self._control("GET", "pipedrive/state")

    def pipedrive_deal(self, deal_id: int) -> dict:
        """One Pipedrive deal from the state (v2 shape plus notes)."""
        return next(deal for deal in self.pipedrive_state()["deals"] if deal["id"] == int(deal_id))

    def pipedrive_calls(self) -> list[dict]:
        """Every request the Pipedrive imitation received."""
        return self.pipedrive_state()["calls"]

    def pipedrive_configure(self, **config) -> dict:
        """Change Pipedrive settings: max_per_2s (int or None), daily_budget (int)."""
        return self._control("PUT", "pipedrive/config", config)


@pytest.fixture(scope="session")
def sandbox_process(tmp_path_factory):
    """One sandbox process for the whole run."""
    process, url = start_sandbox(tmp_path_factory.mktemp("sandbox"), API_KEY, HUBSPOT_TOKEN, PIPEDRIVE_TOKEN)
    yield Sandbox(url)
    process.stop()


@pytest.fixture
def sandbox(sandbox_process) -> Sandbox:
    """The sandbox, reset to its seed data for this test."""
    sandbox_process.reset()
    return sandbox_process


# -- databases -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_database():
    """A database of this run's own on the PostgreSQL server; skipped (or failed in CI) when there is none."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        reason = (f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(error).strip()[:120]}); start it, or point "
                  "TEST_POSTGRES_URL at one, to run the PostgreSQL half of these tests (.ci/run requires it)")
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"onboarding_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    yield url.replace("postgresql://", "postgresql+psycopg://", 1)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def reset_postgres(url: str) -> None:
    """An empty public schema."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("DROP SCHEMA IF EXISTS onboarding_limits CASCADE")
        connection.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """An empty, migrated database on each engine in turn."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'onboarding.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        reset_postgres(url)
    database = Database(url)
    database.upgrade()
    database.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """An empty, migrated SQLite database (for tests that are about something other than the engine)."""
    url = f"sqlite:///{tmp_path / 'onboarding.db'}"
    database = Database(url)
    database.upgrade()
    database.dispose()
    return url


# -- settings and the app ------------------------------------------------------------------------------------


def service_env(database_url: str, docspace_url: str, crm_url: str, **overrides: str) -> dict[str, str]:
    """The environment of the service under test (plus the current one, for PATH and the venv)."""
    env = {
        **os.environ,
        "DOCSPACE_URL": docspace_url,
        "DOCSPACE_API_KEY": API_KEY,
        "WEBHOOK_SECRETS": f"{WEBHOOK_SECRET} {OLD_WEBHOOK_SECRET}",
        "CRM_CALLBACK_URL": crm_url,
        "CRM_CALLBACK_SECRET": CRM_SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "PUBLIC_BASE_URL": "http://onboarding.test",
        "SECRET_KEY": "test-secret-key-" + secrets.token_hex(8),
        "DATABASE_URL": database_url,
        "ACCOUNT_MANAGER_ID": MANAGER_ID,
        "WORKER_POLL_SECONDS": "0.05",
        "RETRY_BASE_SECONDS": "0.2",
        "RETRY_MAX_SECONDS": "1",
        "DOCSPACE_READ_TIMEOUT": "5",
        "CRM_TIMEOUT": "5",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides)
    return env


@pytest.fixture
def accept_path() -> str:
    """How the app answers an accepted deal-won: "fast path" (onboarding/fastpath.py, as served) or "flask" (the
    route alone). The webhook test modules override this fixture to run each of their tests both ways."""
    return "fast path"


@pytest.fixture
def make_app(sqlite_url, accept_path):
    """Build the app from a service environment (no DocSpace needed: the web app never calls it)."""

    def build(database_url: str = sqlite_url, **overrides: str):
        env = service_env(database_url, "http://127.0.0.1:9", "http://127.0.0.1:9/crm", **overrides)
        app = create_app(load_settings(env))
        app.config["TESTING"] = True
        if accept_path == "flask":
            app.wsgi_app = app.wsgi_app.flask  # the fast path's own next hop: Flask's request handling
        return app

    return build


BOTH_ACCEPT_PATHS = ["fast path", "flask"]


@pytest.fixture
def app(make_app, database_url):
    """The app on each engine."""
    app = make_app(database_url)
    yield app
    app.extensions["onboarding"].db.dispose()


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()


# -- payloads and signatures ---------------------------------------------------------------------------------


def deal_payload(deal_id: str | None = None, **changes) -> dict:
    """A valid "deal won" payload (the example from the issue), with changes."""
    payload = {
        "type": "deal.won",
        "deal": {"id": deal_id or f"D-{uuid.uuid4().hex[:8]}", "title": "Acme annual plan"},
        "client": {"id": "C-10045", "name": "Acme Corporation", "email": "contact@acme.example.com"},
        "account_manager": {"docspace_user_id": MANAGER_ID},
    }
    payload.update(changes)
    return payload


def signed(body: bytes | dict, message_id: str | None = None, secret: str = WEBHOOK_SECRET,
           timestamp: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """A body and its Standard Webhooks headers, signed by the reference library."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(UTC)
    try:
        signature = Webhook(secret).sign(message_id, timestamp, raw.decode("utf-8"))
    except UnicodeDecodeError:  # the library signs text only; sign other bytes with ours
        signature = sign(parse_secret(secret), message_id, int(timestamp.timestamp()), raw)
    return raw, {"webhook-id": message_id, "webhook-timestamp": str(int(timestamp.timestamp())),
                 "webhook-signature": signature, "Content-Type": "application/json"}

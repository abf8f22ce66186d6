"""Settings read from the environment once, at start-up, and validated there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from onboarding.signatures import SecretError, parse_secret

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DEFAULT_PLAN = PACKAGE_DIR / "plans" / "default.toml"
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_DIR / 'var' / 'onboarding.db'}"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    docspace_url: str
    docspace_api_key: str
    admin_token: str
    public_base_url: str
    secret_key: str
    # The generic source (on when WEBHOOK_SECRETS is set) and its callback.
    webhook_secrets: tuple[bytes, ...] = ()
    crm_callback_url: str | None = None
    crm_callback_secret: bytes | None = None
    # HubSpot (on when HUBSPOT_CLIENT_SECRET is set) and Pipedrive (on when its webhook credentials are set).
    hubspot_client_secret: str | None = None
    hubspot_access_token: str | None = None
    hubspot_api_url: str = "https://api.hubapi.com"
    hubspot_rate_per_10_seconds: int = 100
    pipedrive_webhook_user: str | None = None
    pipedrive_webhook_password: str | None = None
    pipedrive_api_token: str | None = None
    pipedrive_api_url: str | None = None
    pipedrive_rate_per_2_seconds: int = 20
    database_url: str = DEFAULT_DATABASE_URL
    onboarding_plan: Path = DEFAULT_PLAN
    account_manager_id: str | None = None
    max_body_bytes: int = 256 * 1024
    signature_tolerance_seconds: int = 300
    status_link_max_age_seconds: int = 30 * 24 * 3600
    docspace_connect_timeout: float = 5.0
    docspace_read_timeout: float = 30.0
    docspace_max_concurrent_writes: int = 15
    docspace_rate_per_minute: int = 1500
    crm_timeout: float = 15.0
    worker_concurrency: int = 8
    worker_poll_seconds: float = 0.05
    worker_grace_seconds: float = 20.0
    lease_seconds: float = 20.0
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    max_attempts: int = 12
    max_age_seconds: int = 3 * 24 * 3600
    payload_retention_days: int = 30
    notify_failures: bool = False


REQUIRED = {
    "DOCSPACE_URL": "the base URL of your DocSpace portal, e.g. https://example.onlyoffice.com",
    "DOCSPACE_API_KEY": "a DocSpace API key (Settings > Developer Tools > API keys), sent as a Bearer token",
    "ADMIN_TOKEN": "the bearer token operators send to the admin API (at least 16 characters)",
    "PUBLIC_BASE_URL": "the URL this service is reached at, used in status links, e.g. https://onboarding.example.com",
    "SECRET_KEY": "a random string (at least 16 characters) that signs status links",
}
# Each source is on when its first setting is set; it then needs the others.
SOURCES = {
    "WEBHOOK_SECRETS": {
        "CRM_CALLBACK_URL": "the URL the CRM is called back on when a room is ready",
        "CRM_CALLBACK_SECRET": "the whsec_<base64> secret that signs callbacks to the CRM",
    },
    "HUBSPOT_CLIENT_SECRET": {
        "HUBSPOT_ACCESS_TOKEN": "a HubSpot private app (or static) access token with the deal, contact, company and "
                                "owner read scopes and deal write",
    },
    "PIPEDRIVE_WEBHOOK_USER": {
        "PIPEDRIVE_WEBHOOK_PASSWORD": "the HTTP Basic password set on the Pipedrive webhook",
        "PIPEDRIVE_API_TOKEN": "a Pipedrive API token (Personal preferences > API), sent as the x-api-token header",
        "PIPEDRIVE_API_URL": "your company's Pipedrive API base, e.g. https://acme.pipedrive.com",
    },
}
NO_SOURCE = ("no source is on: set WEBHOOK_SECRETS (the generic signed webhook), HUBSPOT_CLIENT_SECRET (HubSpot) "
             "or PIPEDRIVE_WEBHOOK_USER (Pipedrive), with the settings each needs")

# name -> (Settings field, type, lowest allowed value)
TUNABLES = {
    "MAX_BODY_BYTES": ("max_body_bytes", int, 1024),
    "SIGNATURE_TOLERANCE_SECONDS": ("signature_tolerance_seconds", int, 1),
    "STATUS_LINK_MAX_AGE_SECONDS": ("status_link_max_age_seconds", int, 60),
    "DOCSPACE_CONNECT_TIMEOUT": ("docspace_connect_timeout", float, 0.1),
    "DOCSPACE_READ_TIMEOUT": ("docspace_read_timeout", float, 0.1),
    "DOCSPACE_MAX_CONCURRENT_WRITES": ("docspace_max_concurrent_writes", int, 1),
    "DOCSPACE_RATE_PER_MINUTE": ("docspace_rate_per_minute", int, 1),
    "CRM_TIMEOUT": ("crm_timeout", float, 0.1),
    "WORKER_CONCURRENCY": ("worker_concurrency", int, 1),
    "WORKER_POLL_SECONDS": ("worker_poll_seconds", float, 0.01),
    "WORKER_GRACE_SECONDS": ("worker_grace_seconds", float, 0.0),
    "LEASE_SECONDS": ("lease_seconds", float, 1.0),
    "RETRY_BASE_SECONDS": ("retry_base_seconds", float, 0.0),
    "RETRY_MAX_SECONDS": ("retry_max_seconds", float, 0.0),
    "MAX_ATTEMPTS": ("max_attempts", int, 1),
    "MAX_AGE_SECONDS": ("max_age_seconds", int, 1),
    "PAYLOAD_RETENTION_DAYS": ("payload_retention_days", int, 1),
    "HUBSPOT_RATE_PER_10_SECONDS": ("hubspot_rate_per_10_seconds", int, 1),
    "PIPEDRIVE_RATE_PER_2_SECONDS": ("pipedrive_rate_per_2_seconds", int, 1),
}


def database_url(environ: Mapping[str, str] | None = None) -> str:
    """DATABASE_URL, or the default SQLite file: all a migration needs."""
    env = os.environ if environ is None else environ
    return env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise ConfigError naming the first bad one."""
    env = os.environ if environ is None else environ
    for name, meaning in REQUIRED.items():
        if not env.get(name, "").strip():
            raise ConfigError(f"{name} is not set: {meaning}")
    on = [switch for switch in SOURCES if env.get(switch, "").strip()]
    if not on:
        raise ConfigError(NO_SOURCE)
    for switch in on:
        for name, meaning in SOURCES[switch].items():
            if not env.get(name, "").strip():
                raise ConfigError(f"{name} is not set (needed because {switch} is): {meaning}")
    values: dict = {
        "docspace_url": _url(env, "DOCSPACE_URL"),
        "docspace_api_key": env["DOCSPACE_API_KEY"].strip(),
        "admin_token": _long_enough(env, "ADMIN_TOKEN"),
        "public_base_url": _url(env, "PUBLIC_BASE_URL"),
        "secret_key": _long_enough(env, "SECRET_KEY"),
        "database_url": database_url(env),
        "account_manager_id": env.get("ACCOUNT_MANAGER_ID", "").strip() or None,
        "notify_failures": _flag(env, "NOTIFY_FAILURES"),
    }
    if "WEBHOOK_SECRETS" in on:
        values.update(webhook_secrets=_secrets(env, "WEBHOOK_SECRETS"), crm_callback_url=_url(env, "CRM_CALLBACK_URL"),
                      crm_callback_secret=_secrets(env, "CRM_CALLBACK_SECRET")[0])
    if "HUBSPOT_CLIENT_SECRET" in on:
        values.update(hubspot_client_secret=env["HUBSPOT_CLIENT_SECRET"].strip(),
                      hubspot_access_token=env["HUBSPOT_ACCESS_TOKEN"].strip())
        if env.get("HUBSPOT_API_URL", "").strip():
            values["hubspot_api_url"] = _url(env, "HUBSPOT_API_URL")
    if "PIPEDRIVE_WEBHOOK_USER" in on:
        values.update(pipedrive_webhook_user=env["PIPEDRIVE_WEBHOOK_USER"].strip(),
                      pipedrive_webhook_password=env["PIPEDRIVE_WEBHOOK_PASSWORD"].strip(),
                      pipedrive_api_token=env["PIPEDRIVE_API_TOKEN"].strip(),
                      pipedrive_api_url=_url(env, "PIPEDRIVE_API_URL"))
    if env.get("ONBOARDING_PLAN", "").strip():
        values["onboarding_plan"] = Path(env["ONBOARDING_PLAN"].strip())
    for name, (field, kind, lowest) in TUNABLES.items():
        if env.get(name, "").strip():
            values[field] = _number(env, name, kind, lowest)
    return Settings(**values)


def _url(env: Mapping[str, str], name: str) -> str:
    """An http(s) URL without a trailing slash."""
    value = env[name].strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} is not an http(s) URL: expected e.g. https://host.example.com")
    return value


def _secrets(env: Mapping[str, str], name: str) -> tuple[bytes, ...]:
    """One or more whsec_ secrets, decoded."""
    entries = env[name].replace(",", " ").split()
    decoded = []
    for position, entry in enumerate(entries, start=1):
        try:
            decoded.append(parse_secret(entry))
        except SecretError as error:
            raise ConfigError(f"{name}: entry {position} is malformed ({error})") from None
    return tuple(decoded)


def _long_enough(env: Mapping[str, str], name: str) -> str:
    """A token of at least 16 characters."""
    value = env[name].strip()
    if len(value) < 16:
        raise ConfigError(f"{name} is too short: use at least 16 random characters")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A boolean written as 1/0, true/false, yes/no or on/off."""
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} is not a boolean: use true or false")


def _number(env: Mapping[str, str], name: str, kind: type, lowest: float) -> float:
    """A number of the given kind, no lower than lowest."""
    raw = env[name].strip()
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} is not a{'n integer' if kind is int else ' number'}: {raw!r}") from None
    if value < lowest:
        raise ConfigError(f"{name} must be at least {lowest}, got {raw}")
    return value

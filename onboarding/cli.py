"""Command-line tools: flask --app wsgi <command>. The same actions as the admin API, for a shell."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import shlex
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from onboarding import operations
from onboarding.audit import cli_actor
from onboarding.crm.hubspot.source import PATH as HUBSPOT_PATH
from onboarding.crm.hubspot.source import v3_signature, v3_uri
from onboarding.errors import ServiceError
from onboarding.signatures import signed_headers
from onboarding.views import OnboardingFilter, list_events, list_onboardings, onboarding_summary

db_cli = AppGroup("db", help="Create or upgrade the database schema.")
hubspot_cli = AppGroup("hubspot", help="HubSpot: prepare the account for the write-back.")
pipedrive_cli = AppGroup("pipedrive", help="Pipedrive: prepare the company for the write-back.")

STATUS = click.Choice(["queued", "running", "completed", "failed"])


def _services():
    """The wired services of the current app."""
    return current_app.extensions["onboarding"]


def _print_json(value) -> None:
    """Print a value as indented JSON."""
    click.echo(json.dumps(value, indent=2, sort_keys=True))


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply the migrations (creates the schema on an empty database)."""
    database = current_app.extensions["onboarding.db"]
    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
    database.upgrade(revision)
    current, head = database.schema_state()
    # A log line (JSON, like every line of the processes that run it), not plain text.
    logging.getLogger("onboarding.db").info("database schema at %s (newest: %s)", current, head)


@db_cli.command("current")
def db_current() -> None:
    """Show the schema revision; exit 1 when it is behind the code."""
    current, head = current_app.extensions["onboarding.db"].schema_state()
    click.echo(f"database schema at {current} (newest: {head})")
    sys.exit(0 if current == head else 1)


@click.command("worker")
@click.option("--once", is_flag=True, help="Exit when nothing is left to claim.")
@click.option("--metrics-port", type=int, default=None,
              help="Also serve this process's metrics on 0.0.0.0:PORT/metrics (for workers on hosts without a web).")
def worker_command(once: bool, metrics_port: int | None) -> None:
    """Run a worker: claim onboardings and run their steps until SIGTERM."""
    from onboarding.metrics import serve_worker_metrics
    from onboarding.worker import Worker

    services = _services()
    if metrics_port is not None:
        serve_worker_metrics(metrics_port, services)
    Worker(services).run(once=once)


@click.command("replay")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def replay_command(payload: Path) -> None:
    """Process a saved payload file like a delivery (validation and dedupe, no signature)."""
    services = _services()
    try:
        receipt = operations.replay_file(services, payload, actor=cli_actor())
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    shown = operations.receipt_dict(receipt, services.status_links)
    if receipt.onboarding_id:
        click.echo(f"onboarding {receipt.onboarding_id} {receipt.onboarding_status} ({receipt.outcome})")
    else:
        click.echo(f"{receipt.outcome}: event {receipt.event_id}")
    _print_json(shown)
    sys.exit(1 if receipt.outcome == "rejected" else 0)


@click.command("replay-event")
@click.argument("event_id")
def replay_event_command(event_id: str) -> None:
    """Process a recorded event again (e.g. one refused before the schema or plan was fixed)."""
    services = _services()
    try:
        receipt = operations.replay_event(services, event_id, actor=cli_actor())
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    if receipt is None:
        raise click.ClickException(f"no event {event_id}")
    _print_json(operations.receipt_dict(receipt, services.status_links))
    sys.exit(1 if receipt.outcome == "rejected" else 0)


@click.command("onboardings")
@click.option("--status", type=STATUS)
@click.option("--deal", "deal_id")
@click.option("--client", "client_id")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def onboardings_command(status, deal_id, client_id, limit, as_json) -> None:
    """List onboardings, newest first."""
    page = list_onboardings(_services().db, OnboardingFilter(status, deal_id, client_id), limit=limit)
    if as_json:
        _print_json(page)
        return
    click.echo(f"{'ONBOARDING':32}  {'STATUS':9}  {'ATTEMPTS':>8}  {'DEAL':16}  {'ROOM':>8}  LAST ERROR")
    for item in page["onboardings"]:
        last_error = item["last_error"] if item["status"] != "completed" else None
        error = f"{last_error.get('step') or '-'}: {last_error.get('message', '')}" if last_error else ""
        room = str((item["room"] or {}).get("id") or "-")
        click.echo(f"{item['onboarding_id']:32}  {item['status']:9}  {item['attempts']:>8}  "
                   f"{item['deal']['id'][:16]:16}  {room:>8}  {error}")


@click.command("show")
@click.argument("onboarding_id")
def show_command(onboarding_id: str) -> None:
    """Show one onboarding: steps, attempts, errors, DocSpace ids, events."""
    services = _services()
    summary = onboarding_summary(services.db, onboarding_id, services.step_names)
    if summary is None:
        raise click.ClickException(f"no onboarding {onboarding_id}")
    _print_json(summary)


@click.command("retry")
@click.argument("onboarding_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Retry every failed onboarding matching --deal/--client.")
@click.option("--deal", "deal_id")
@click.option("--client", "client_id")
def retry_command(onboarding_ids, all_failed, deal_id, client_id) -> None:
    """Resume failed onboardings from their failed step."""
    db = _services().db
    if all_failed:
        retried = operations.retry_matching(db, OnboardingFilter("failed", deal_id, client_id), actor=cli_actor())
        click.echo(f"retried {len(retried)} onboarding(s)")
        for onboarding_id in retried:
            click.echo(onboarding_id)
        return
    if not onboarding_ids:
        raise click.UsageError("name onboarding ids, or use --all-failed")
    for onboarding_id in onboarding_ids:
        outcome = operations.retry_one(db, onboarding_id, actor=cli_actor())
        click.echo(f"{onboarding_id}: {outcome.action}: {outcome.message}")


@click.command("resend")
@click.argument("onboarding_ids", nargs=-1, required=True)
def resend_command(onboarding_ids) -> None:
    """Tell the CRM again that completed onboardings' rooms are ready (same callback id; a write-back finds its
    note)."""
    services = _services()
    for onboarding_id in onboarding_ids:
        outcome = operations.resend(services, onboarding_id, actor=cli_actor())
        click.echo(f"{onboarding_id}: {outcome.action}: {outcome.message}")


@click.command("events")
@click.option("--outcome", type=click.Choice(["accepted", "duplicate", "ignored", "pending", "rejected"]))
@click.option("--deal", "deal_id")
@click.option("--limit", default=50, show_default=True)
def events_command(outcome, deal_id, limit) -> None:
    """List recorded events, newest first (find refused ones to replay)."""
    _print_json(list_events(_services().db, outcome=outcome, deal_id=deal_id, limit=limit))


@hubspot_cli.command("setup")
def hubspot_setup_command() -> None:
    """Create the deal properties docspace_room_id and docspace_room_url (group "DocSpace") unless they exist."""
    _run_setup("hubspot", "set HUBSPOT_CLIENT_SECRET and HUBSPOT_ACCESS_TOKEN")


@pipedrive_cli.command("setup")
def pipedrive_setup_command() -> None:
    """Create the deal fields "DocSpace room ID" and "DocSpace room link" (text) unless they exist."""
    _run_setup("pipedrive", "set PIPEDRIVE_WEBHOOK_USER, PIPEDRIVE_WEBHOOK_PASSWORD, PIPEDRIVE_API_TOKEN and "
                            "PIPEDRIVE_API_URL")


def _run_setup(name: str, how: str) -> None:
    """Run a CRM's setup and print what it did, or fail with the CRM's own words."""
    crm = _services().crms.get(name)
    if crm is None:
        raise click.ClickException(f"{name} is not configured: {how}")
    try:
        for line in crm.setup():
            click.echo(line)
    except ServiceError as error:
        raise click.ClickException(error.message) from None


@click.command("sample-request")
@click.option("--url", help="Where to send it (default: PUBLIC_BASE_URL/webhooks/<source's path>).")
@click.option("--deal", "deal_id", default=None, help="The deal id (default: a random one).")
@click.option("--source", type=click.Choice(["generic", "hubspot", "pipedrive"]), default="generic",
              show_default=True, help="Which sender to imitate.")
@click.option("--account", default=None, help="HubSpot portalId or Pipedrive company_id (default: the sandbox's).")
def sample_request_command(url, deal_id, source, account) -> None:
    """Print a ready-to-paste curl command with a correctly signed sample "deal won" (valid for 5 minutes)."""
    services = _services()
    settings = services.settings
    if source not in services.crms:
        raise click.ClickException(f"the {source} source is not on: set its settings first (README.md)")
    if source == "hubspot":
        body, headers, path = _hubspot_sample(settings, deal_id or "30000000001", account or "62515", url)
    elif source == "pipedrive":
        body, headers, path = _pipedrive_sample(settings, deal_id or "1001", account or "7788001")
    else:
        body, headers, path = _generic_sample(settings, deal_id)
    target = url or f"{settings.public_base_url}{path}"
    parts = ["curl", "-sS", "-X", "POST", target, "-H", "Content-Type: application/json"]
    for name, value in headers.items():
        parts += ["-H", f"{name}: {value}"]
    parts += ["--data-binary", body.decode()]
    click.echo(" ".join(shlex.quote(part) for part in parts))


def _generic_sample(settings, deal_id: str | None) -> tuple[bytes, dict, str]:
    """A generic "deal.won", Standard Webhooks signed."""
    body = json.dumps({
        "type": "deal.won",
        "deal": {"id": deal_id or f"D-{secrets.randbelow(90000) + 10000}", "title": "Acme annual plan"},
        "client": {"id": "C-10045", "name": "Acme Corporation", "email": "contact@acme.example.com"},
        "account_manager": {"docspace_user_id": settings.account_manager_id},
    }).encode()
    return body, signed_headers(settings.webhook_secrets[0], f"msg_{secrets.token_hex(8)}", body), "/webhooks/deal-won"


def _hubspot_sample(settings, deal_id: str, portal: str, url: str | None) -> tuple[bytes, dict, str]:
    """A HubSpot batch holding one deal moved to closedwon, signed with signature v3 for the URL it goes to."""
    now_ms = int(time.time() * 1000)
    body = json.dumps([{"eventId": secrets.randbelow(10**9), "subscriptionId": 1001, "portalId": int(portal),
                        "appId": 2002, "occurredAt": now_ms, "subscriptionType": "deal.propertyChange",
                        "attemptNumber": 0, "objectId": int(deal_id), "propertyName": "dealstage",
                        "propertyValue": "closedwon", "changeSource": "CRM_UI"}]).encode()
    timestamp = str(now_ms)
    base, _, query = (url or settings.public_base_url + HUBSPOT_PATH).partition("?")
    signature = v3_signature(settings.hubspot_client_secret, "POST", v3_uri(base, query.encode()), body, timestamp)
    return body, {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}, HUBSPOT_PATH


def _pipedrive_sample(settings, deal_id: str, company: str) -> tuple[bytes, dict, str]:
    """A Pipedrive webhook v2 of a deal changed to won, with the webhook's Basic credentials."""
    body = json.dumps({
        "meta": {"action": "change", "entity": "deal", "entity_id": deal_id, "id": str(uuid.uuid4()),
                 "company_id": company, "version": "2.0", "attempt": 1,
                 "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")},
        "data": {"id": int(deal_id), "status": "won"},
        "previous": {"status": "open"}}).encode()
    credentials = f"{settings.pipedrive_webhook_user}:{settings.pipedrive_webhook_password}".encode()
    return body, {"Authorization": "Basic " + base64.b64encode(credentials).decode()}, "/webhooks/pipedrive"


def init_app(app) -> None:
    """Register the commands on the app's CLI."""
    app.cli.add_command(db_cli)
    app.cli.add_command(hubspot_cli)
    app.cli.add_command(pipedrive_cli)
    for command in (worker_command, replay_command, replay_event_command, onboardings_command, show_command,
                    retry_command, resend_command, events_command, sample_request_command):
        app.cli.add_command(command)

"""`flask --app wsgi check`: a preflight of what the service needs from the outside world, before it takes traffic.

Each check prints one line: ok, or FAILED with the reason and the fix; the command exits 0 only when every check
passed. A check that cannot run because one it depends on failed (ACCOUNT_MANAGER_ID and the templates, when
DocSpace does not answer or refuses the API key) is "skipped" and says why, so that the one FAILED line names the
culprit. The checks call out through the service's own clients (services.docspace, each CRM's write-back), with
their timeouts and limits. Nothing secret is printed: the lines quote what DocSpace and the CRMs answered, and
every configured secret is masked in them as a last line of defence.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlsplit

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from onboarding.bootstrap import Services
from onboarding.config import Settings
from onboarding.crm.hubspot.steps import PROPERTIES
from onboarding.crm.hubspot.steps import SETUP_COMMAND as HUBSPOT_SETUP
from onboarding.crm.pipedrive.steps import FIELDS, field_keys
from onboarding.crm.pipedrive.steps import SETUP_COMMAND as PIPEDRIVE_SETUP
from onboarding.errors import PermanentError, ServiceError, TransientError
from onboarding.lookup import FILES_COMMAND, PEOPLE_COMMAND
from onboarding.plan import ROLES, ROOM_TYPES, Template
from onboarding.steps import account_type, may_manage_rooms

LABELS = {True: "ok", False: "FAILED", None: "skipped"}
DOCSPACE, API_KEY, ROOMS = "DocSpace", "DocSpace API key", "DocSpace API key's user may create rooms"
MANAGER, PLAN, CALLBACK, TEST_EVENT = "ACCOUNT_MANAGER_ID", "plan", "CRM_CALLBACK_URL", "CRM callback test event"
HUBSPOT_TOKEN, HUBSPOT_PROPERTIES = "HubSpot token", "HubSpot deal properties"
PIPEDRIVE_TOKEN, PIPEDRIVE_FIELDS = "Pipedrive token", "Pipedrive deal fields"
FIX_DOCSPACE_URL = ("set DOCSPACE_URL to the portal's address (e.g. https://example.onlyoffice.com, without /api/2.0) "
                    "and check that this machine can reach it")
FIX_API_KEY = ("set DOCSPACE_API_KEY to a valid key (DocSpace: Settings > Developer Tools > API keys) with "
               "rooms:write, files:write and accounts:read")
FIX_AGAIN = "run the check again; if it keeps failing, check the network between this machine and {service}"


@dataclass(frozen=True)
class Outcome:
    """One check's outcome: ok is True (passed), False (failed) or None (skipped because another check failed)."""

    check: str
    ok: bool | None
    detail: str
    fix: str | None = None


def passed(check: str, detail: str) -> Outcome:
    """A check that passed."""
    return Outcome(check, True, detail)


def failed(check: str, detail: str, fix: str) -> Outcome:
    """A check that failed, and what to do about it."""
    return Outcome(check, False, detail, fix)


def skipped(check: str, because: str) -> Outcome:
    """A check that could not run because another one failed."""
    return Outcome(check, None, f"not checked, because {because}")


@click.command("check")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {check, ok, detail, fix} (ok: true, false, or null when skipped).")
@click.option("--send-test", is_flag=True, help="Also POST a signed onboarding.test event to CRM_CALLBACK_URL.")
@with_appcontext
def check_command(as_json: bool, send_test: bool) -> None:
    """Check the database, DocSpace, ACCOUNT_MANAGER_ID, the plan and every CRM that is on; exit 1 unless all pass."""
    services: Services = current_app.extensions["onboarding"]
    if send_test and "generic" not in services.crms:
        raise click.UsageError("--send-test needs the generic webhook on (WEBHOOK_SECRETS, CRM_CALLBACK_URL)")
    mask = _masker(services.settings)
    with _logs_on_stderr() if as_json else nullcontext():
        outcomes = [replace(outcome, detail=mask(outcome.detail), fix=outcome.fix and mask(outcome.fix))
                    for outcome in run_checks(services, send_test=send_test)]
    if as_json:
        click.echo(json.dumps([asdict(outcome) for outcome in outcomes], indent=2))
    else:
        for outcome in outcomes:
            fix = f"; fix: {outcome.fix}" if outcome.fix else ""
            click.echo(f"{LABELS[outcome.ok]:<7}  {outcome.check}: {outcome.detail}{fix}")
    sys.exit(0 if all(outcome.ok for outcome in outcomes) else 1)


def run_checks(services: Services, *, send_test: bool = False) -> list[Outcome]:
    """Every check, in the order an operator would fix what they find."""
    outcomes = [check_database(services)]
    docspace_outcomes, unusable = check_docspace(services)
    outcomes += docspace_outcomes
    if unusable is None:
        outcomes.append(check_account_manager(services))
        outcomes += check_templates(services)
    else:
        outcomes.append(skipped(MANAGER, unusable))
        outcomes += [skipped(template_name(position, template), unusable)
                     for position, template in enumerate(services.plan.templates, start=1)]
    outcomes.append(check_plan(services))
    for name, check in CRM_CHECKS.items():
        if name in services.crms:
            outcomes += check(services, send_test)
    return outcomes


# -- the database and DocSpace -------------------------------------------------------------------------------------


def check_database(services: Services) -> Outcome:
    """The database answers and its schema is the one the code expects."""
    try:
        current, head = services.db.schema_state()
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        return failed("database", f"does not answer: {_first_line(cause)}",
                      "check DATABASE_URL, and that the database server runs and accepts connections from here")
    if current != head:
        return failed("database", f"answers, but its schema is at {current or 'nothing (an empty database)'} and the "
                                  f"code needs {head}", "run `flask --app wsgi db upgrade`")
    return passed("database", f"answers; its schema is at {head}, the newest")


def check_docspace(services: Services) -> tuple[list[Outcome], str | None]:
    """DocSpace answers at DOCSPACE_URL, takes the API key, and lets its user create rooms; and, when the checks that
    need the key cannot run, why not."""
    docspace, where = services.docspace, _where(services.settings.docspace_url)
    try:
        version: dict | None = docspace.version()
    except ServiceError:
        version = None  # any portal answers it without a key; people/@self decides whether DocSpace is there
    try:
        user = docspace.me()
    except ServiceError as error:
        if version is None:
            because = "DocSpace does not answer at DOCSPACE_URL"
            return [failed(DOCSPACE, f"no DocSpace API answers at {where}: {error.message}", FIX_DOCSPACE_URL),
                    skipped(API_KEY, because), skipped(ROOMS, because)], because
        because = "DocSpace did not accept the API key"
        return [passed(DOCSPACE, f"answers at {where} ({_version(version)})"),
                failed(API_KEY, error.message, _key_fix(error)),
                skipped(ROOMS, because)], because
    who = _who(user)
    outcomes = [passed(DOCSPACE, f"answers at {where} ({_version(version)})"),
                passed(API_KEY, f"valid: it acts as {who}")]
    if may_manage_rooms(user):
        outcomes.append(passed(ROOMS, f"{user.get('displayName')} is {_a(account_type(user))}"))
    else:
        outcomes.append(failed(ROOMS, f"{who} is {_a(account_type(user))}, who cannot create rooms (only the owner, "
                                      "DocSpace admins and room admins can)",
                               "make them a room admin or DocSpace admin in DocSpace (Accounts), or create the API key "
                               "as such a user"))
    return outcomes, None


def check_account_manager(services: Services) -> Outcome:
    """ACCOUNT_MANAGER_ID, when set, is a DocSpace user who may manage rooms."""
    manager_id = services.settings.account_manager_id
    if manager_id is None:
        return passed(MANAGER, "not set (it is optional): generic payloads must then name "
                               "account_manager.docspace_user_id, and a CRM deal whose owner cannot manage rooms fails")
    find = f"find the id of a room admin or DocSpace admin with `{PEOPLE_COMMAND}`"
    try:
        user = services.docspace.user(manager_id)
    except ServiceError as error:
        return failed(MANAGER, f"{manager_id}: DocSpace would not say who this is: {error.message}",
                      f"set ACCOUNT_MANAGER_ID to a DocSpace user id; {find}")
    if user is None:
        return failed(MANAGER, f"{manager_id}: no DocSpace user has this id", f"set ACCOUNT_MANAGER_ID; {find}")
    if not may_manage_rooms(user):
        return failed(MANAGER, f"{manager_id} is {_who(user)}, {_a(account_type(user))}, who cannot manage rooms "
                               "(only the owner, DocSpace admins and room admins can)",
                      f"make them a room admin in DocSpace, or set ACCOUNT_MANAGER_ID to someone who is; {find}")
    return passed(MANAGER, f"{manager_id} is {_who(user)}, {_a(account_type(user))}, who may manage rooms")


def template_name(position: int, template: Template) -> str:
    """How a check names a template: by its place in the plan, e.g. [[templates]] #2 file_id = 9001 ("Welcome.pdf")."""
    return f'[[templates]] #{position} file_id = {template.file_id} ("{template.title}")'


def check_templates(services: Services) -> list[Outcome]:
    """Every template of the plan exists and the API key's user can read it."""
    if not services.plan.templates:
        return [passed("[[templates]]", "the plan copies no templates")]
    fix = (f"in {services.settings.onboarding_plan}, set file_id to a file the API key's user can read; list them "
           f"with `{FILES_COMMAND}`")
    outcomes = []
    for position, template in enumerate(services.plan.templates, start=1):
        name = template_name(position, template)
        try:
            found = services.docspace.file_info(template.file_id)
        except PermanentError as error:
            outcomes.append(failed(name, f"not readable: {error.message}", fix))
        except TransientError as error:
            outcomes.append(failed(name, f"could not ask DocSpace: {error.message}",
                                   FIX_AGAIN.format(service="DocSpace")))
        else:
            outcomes.append(passed(name, f'readable: DocSpace file "{found.get("title")}" in folder '
                                         f'{found.get("folderId")}'))
    return outcomes


def check_plan(services: Services) -> Outcome:
    """The plan's room type allows its roles and link, which loading it at start-up already proved."""
    plan = services.plan
    link = ("no external link" if plan.link_kind == "none"
            else f"an external link giving {_named(ROLES, plan.link_access)}")
    return passed(PLAN, f"{services.settings.onboarding_plan}: a {_named(ROOM_TYPES, plan.room_type)} room, the "
                        f"account manager {_named(ROLES, plan.manager_access)}, the client "
                        f"{_named(ROLES, plan.client_access)}, {link}: DocSpace allows these (checked when the plan "
                        "was loaded at start-up)")


# -- the CRMs ------------------------------------------------------------------------------------------------------


def check_callback(services: Services, send_test: bool) -> list[Outcome]:
    """CRM_CALLBACK_URL's host resolves and answers; with send_test, the CRM accepts a signed onboarding.test."""
    callback = services.crms["generic"].write_back
    parts, where = urlsplit(callback.url), _where(callback.url)
    because = "CRM_CALLBACK_URL does not answer"
    try:
        socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                           type=socket.SOCK_STREAM)
    except OSError as error:
        outcome = failed(CALLBACK, f"{parts.hostname} does not resolve ({error.strerror or error})",
                         "set CRM_CALLBACK_URL to an address this machine can resolve")
        return [outcome, *([skipped(TEST_EVENT, because)] if send_test else [])]
    try:
        status = callback.api.send("HEAD", callback.url, endpoint="HEAD callback", allow_redirects=False).status_code
    except TransientError as error:
        if error.status is None:
            outcome = failed(CALLBACK, f"{where} does not answer: {error.message}",
                             "check that the CRM's receiver runs and that this machine can reach it")
            return [outcome, *([skipped(TEST_EVENT, because)] if send_test else [])]
        status = error.status  # a 5xx, 429 or 408 is an answer too: something listens there
    outcomes = [passed(CALLBACK, f"{parts.hostname} resolves and {where} answers (HTTP {status} to HEAD)")]
    if send_test:
        try:
            accepted = callback.send_test()
        except ServiceError as error:
            outcomes.append(failed(TEST_EVENT, f"the CRM did not accept a signed onboarding.test: {error.message}",
                                   "give the receiver CRM_CALLBACK_SECRET to verify signatures with, and have it "
                                   "answer 2xx to event types it does not handle"))
        else:
            outcomes.append(passed(TEST_EVENT, f"the CRM accepted a signed onboarding.test (HTTP {accepted})"))
    return outcomes


def check_hubspot(services: Services, _send_test: bool) -> list[Outcome]:
    """HubSpot takes the token, and the two deal properties of the write-back exist."""
    api, where = services.crms["hubspot"].write_back.api, _where(services.settings.hubspot_api_url)
    try:
        pipelines = api.pipelines()
    except ServiceError as error:
        return [failed(HUBSPOT_TOKEN, f"HubSpot at {where} did not take HUBSPOT_ACCESS_TOKEN: {error.message}",
                       _crm_token_fix(error, "HubSpot", "HUBSPOT_ACCESS_TOKEN to the app's access token",
                                      "the scopes README.md lists under HubSpot")),
                skipped(HUBSPOT_PROPERTIES, "HubSpot did not take the token")]
    outcomes = [passed(HUBSPOT_TOKEN, f"valid: HubSpot at {where} shows {len(pipelines)} deal pipeline(s)")]
    names = [definition["name"] for definition in PROPERTIES]
    try:
        missing = [name for name in names if api.deal_property(name) is None]
    except ServiceError as error:
        outcomes.append(failed(HUBSPOT_PROPERTIES, f"HubSpot would not show them: {error.message}",
                               "give the app's token the crm.schemas.deals.read and crm.schemas.deals.write scopes"))
        return outcomes
    if missing:
        outcomes.append(failed(HUBSPOT_PROPERTIES, f"missing: {', '.join(missing)}", f"run `{HUBSPOT_SETUP}`"))
    else:
        outcomes.append(passed(HUBSPOT_PROPERTIES, f"{' and '.join(names)} exist"))
    return outcomes


def check_pipedrive(services: Services, _send_test: bool) -> list[Outcome]:
    """Pipedrive takes the token, and the two deal fields of the write-back exist."""
    api, where = services.crms["pipedrive"].write_back.api, _where(services.settings.pipedrive_api_url)
    try:
        fields = api.deal_fields()
    except ServiceError as error:
        return [failed(PIPEDRIVE_TOKEN, f"Pipedrive at {where} did not take PIPEDRIVE_API_TOKEN: {error.message}",
                       _crm_token_fix(error, "Pipedrive", "PIPEDRIVE_API_TOKEN to a user's API token (Personal "
                                                          "preferences > API)", "a user who may add deal fields")),
                skipped(PIPEDRIVE_FIELDS, "Pipedrive did not take the token")]
    outcomes = [passed(PIPEDRIVE_TOKEN, f"valid: Pipedrive at {where} shows {len(fields)} deal fields")]
    keys = field_keys(fields)
    missing = [name for name in FIELDS if name not in keys]
    if missing:
        outcomes.append(failed(PIPEDRIVE_FIELDS, "missing: " + ", ".join(f'"{name}"' for name in missing),
                               f"run `{PIPEDRIVE_SETUP}`"))
    else:
        outcomes.append(passed(PIPEDRIVE_FIELDS, " and ".join(f'"{name}"' for name in FIELDS) + " exist"))
    return outcomes


CRM_CHECKS: dict[str, Callable[[Services, bool], list[Outcome]]] = {
    "generic": check_callback, "hubspot": check_hubspot, "pipedrive": check_pipedrive}


# -- wording -------------------------------------------------------------------------------------------------------


def _key_fix(error: ServiceError) -> str:
    """What to do when DocSpace refused the API key with this error."""
    if error.status == 403:
        return "give the key the accounts:read scope (and rooms:write, files:write), or make a new one that has them"
    if isinstance(error, TransientError):
        return FIX_AGAIN.format(service="DocSpace")
    return FIX_API_KEY


def _crm_token_fix(error: ServiceError, service: str, set_token: str, rights: str) -> str:
    """What to do when a CRM refused its token with this error."""
    if isinstance(error, TransientError):
        return FIX_AGAIN.format(service=service)
    if error.status == 403:
        return f"give the token {rights}"
    return f"set {set_token}"


def _version(version: dict | None) -> str:
    """The versions DocSpace reported, in words."""
    if not version or not version.get("docSpace"):
        return "it does not say its version"
    docs = f", ONLYOFFICE Docs {version['documentServer']}" if version.get("documentServer") else ""
    return f"DocSpace {version['docSpace']}{docs}"


def _who(user: dict) -> str:
    """A DocSpace user's name and e-mail address."""
    return f"{user.get('displayName') or user.get('id')} ({user.get('email') or 'no e-mail'})"


def _a(kind: str) -> str:
    """An account type with its article: the owner, a room admin..."""
    return "the owner" if kind == "owner" else f"a {kind}"


def _named(choices: dict[str, int], number: int) -> str:
    """The plan's name for a DocSpace number."""
    return next((name for name, value in choices.items() if value == number), str(number))


def _where(url: str | None) -> str:
    """A URL without what may hold a secret (user:password@, the query string)."""
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _first_line(error: BaseException) -> str:
    """An error's first line, short."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:300]


@contextmanager
def _logs_on_stderr() -> Iterator[None]:
    """Send the log lines written meanwhile to stderr instead of stdout, which must hold nothing but the JSON (a
    database that does not answer, for one, makes the fleet limiter say so)."""
    moved = [handler for handler in logging.getLogger().handlers
             if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout]
    for handler in moved:
        handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(sys.stdout)


def _masker(settings: Settings) -> Callable[[str], str]:
    """A function that replaces every configured secret in a text, in any form it could appear in."""
    secrets = [settings.docspace_api_key, settings.admin_token, settings.secret_key, settings.hubspot_client_secret,
               settings.hubspot_access_token, settings.pipedrive_webhook_password, settings.pipedrive_api_token,
               make_url(settings.database_url).password]
    for key in (*settings.webhook_secrets, *([settings.crm_callback_secret] if settings.crm_callback_secret else [])):
        secrets.append(base64.b64encode(key).decode())
    # Longest first, so that a secret holding another is masked whole; very short ones would mask ordinary words.
    secrets = sorted({str(secret) for secret in secrets if secret and len(str(secret)) >= 4}, key=len, reverse=True)

    def mask(text: str) -> str:
        """The text with the secrets replaced."""
        for secret in secrets:
            text = text.replace(secret, "[secret]")
        return text

    return mask


def init_app(app: Flask) -> None:
    """Register `flask --app wsgi check`."""
    app.cli.add_command(check_command)

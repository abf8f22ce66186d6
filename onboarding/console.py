"""The operator console under /console: find an onboarding, read why it failed, retry, re-send, replay.

Server-rendered pages (templates/console/), usable without JavaScript. Signing in with the admin token starts a
console session (Flask's signed session cookie: HttpOnly, SameSite=Lax, Secure behind https); the token itself is
never stored in it. Every state-changing request carries the session's CSRF token in a hidden `csrf_token` field,
and at most SIGN_IN_ATTEMPTS failed sign-ins a minute are allowed per client address, counted in the database so
the limit holds for every web process. Every action goes through operations.py, which records it in the audit.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from onboarding import audit, operations
from onboarding.models import Event, utcnow
from onboarding.queue import queue_stats
from onboarding.status import step_title
from onboarding.views import OnboardingFilter, list_events, list_onboardings, onboarding_summary

bp = Blueprint("console", __name__, url_prefix="/console")

PAGE = 50
STATUSES = ("queued", "running", "completed", "failed")
OUTCOMES = ("accepted", "duplicate", "ignored", "pending", "rejected")
SIGN_IN_ATTEMPTS = 10
SESSION_HOURS = 12
SHOWN_BODY_CHARACTERS = 20_000
HIDDEN_HEADER_WORDS = ("signature", "authorization", "token", "secret")


def _services():
    """The wired services of this app."""
    return current_app.extensions["onboarding"]


def csrf_token() -> str:
    """The session's CSRF token, made on first use (a template global: every form puts it in a hidden field)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def actor() -> str:
    """The audit's name for this console session."""
    return f"console:{session.get('operator', 'unknown')}"


@bp.before_request
def guard():
    """Refuse a POST without the session's CSRF token; send anyone not signed in to the sign-in page."""
    if request.method == "POST":
        offered = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(offered.encode(), expected.encode()):
            abort(400, "The form was missing its security token or it has expired: go back, reload the page and "
                       "try again.")
    if request.endpoint == "console.sign_in":
        return None
    signed_in = session.get("signed_in_at", 0)
    if not session.get("operator") or time.time() - signed_in > SESSION_HOURS * 3600:
        session.pop("operator", None)
        return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
    return None


@bp.errorhandler(HTTPException)
def page_error(error: HTTPException):
    """Errors as a page, for a person."""
    return render_template("console/error.html", error=error), error.code


@bp.route("/login", methods=["GET", "POST"])
def sign_in():
    """The sign-in form, and signing in with the admin token."""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("console/sign_in.html", next=target)
    services = _services()
    address = f"address:{request.remote_addr or 'unknown'}"
    since = utcnow() - timedelta(minutes=1)
    if audit.recent_count(services.db, address, "sign-in", "refused", since) >= SIGN_IN_ATTEMPTS:
        return render_template("console/sign_in.html", next=target,
                               error="Too many failed sign-ins from this address: wait a minute."), 429
    offered = request.form.get("token", "")
    if not hmac.compare_digest(offered.encode(), services.settings.admin_token.encode()):
        audit.record(services.db, actor=address, action="sign-in", outcome="refused")
        return render_template("console/sign_in.html", next=target, error="That is not the admin token."), 401
    session.clear()  # a new session: a fresh id and CSRF token, nothing carried over from before signing in
    session["operator"] = secrets.token_hex(4)
    session["signed_in_at"] = time.time()
    audit.record(services.db, actor=actor(), action="sign-in", outcome="signed-in",
                 details={"address": request.remote_addr})
    return redirect(target)


@bp.post("/logout")
def sign_out():
    """End the console session."""
    session.clear()
    return redirect(url_for("console.sign_in"))


@bp.get("")
def onboardings():
    """Counts by status, and a page of onboardings matching the filter and search, newest first."""
    services = _services()
    where = _filter(request.args)
    offset = _int(request.args.get("offset"), 0)
    started = time.perf_counter()
    page = list_onboardings(services.db, where, limit=PAGE, offset=offset)
    counts = queue_stats(services.db)["by_status"]
    return render_template("console/onboardings.html", page=page, counts=counts, args=request.args,
                           base_args=_filter_args(request.args), statuses=STATUSES, sources=sorted(services.crms),
                           offset=offset, page_size=PAGE, query_ms=(time.perf_counter() - started) * 1000)


@bp.post("/retry-failed")
def retry_failed():
    """Retry every failed onboarding matching the list's current filter (all of them, not a page)."""
    where = _filter(request.form, status="failed")
    retried = operations.retry_matching(_services().db, where, actor=actor())
    flash(f"Queued {len(retried)} failed onboarding(s) again.")
    return redirect(url_for("console.onboardings", **_filter_args(request.form)))


@bp.get("/onboardings/<onboarding_id>")
def onboarding(onboarding_id: str):
    """One onboarding: its steps as a timeline, DocSpace ids, write-back, events and audit."""
    services = _services()
    summary = onboarding_summary(services.db, onboarding_id, services.step_names)
    if summary is None:
        abort(404, f"No onboarding {onboarding_id}.")
    events = summary["events"]
    bodies = _event_bodies(services, [event["event_id"] for event in events])
    entries = audit.entries_for(services.db, onboarding_id, [event["event_id"] for event in events])
    return render_template("console/onboarding.html", onboarding=summary, events=events, bodies=bodies,
                           audit=entries, links=_portal_links(services.settings.docspace_url, summary))


@bp.post("/onboardings/<onboarding_id>/retry")
def retry(onboarding_id: str):
    """Resume a failed onboarding from its failed step."""
    outcome = operations.retry_one(_services().db, onboarding_id, actor=actor())
    flash(outcome.message)
    return redirect(url_for("console.onboarding", onboarding_id=onboarding_id))


@bp.post("/onboardings/<onboarding_id>/resend")
def resend(onboarding_id: str):
    """Tell the CRM again that the room is ready (the same message; a write-back finds its note)."""
    outcome = operations.resend(_services(), onboarding_id, actor=actor())
    flash(outcome.message)
    return redirect(url_for("console.onboarding", onboarding_id=onboarding_id))


@bp.get("/events")
def events():
    """Every recorded delivery, newest first, by outcome and deal id."""
    services = _services()
    outcome = request.args.get("outcome") if request.args.get("outcome") in OUTCOMES else None
    deal_id = (request.args.get("deal_id") or "").strip() or None
    offset = _int(request.args.get("offset"), 0)
    page = list_events(services.db, outcome=outcome, deal_id=deal_id, limit=PAGE, offset=offset)
    base_args = {name: request.args[name] for name in ("outcome", "deal_id") if request.args.get(name)}
    return render_template("console/events.html", page=page, args=request.args, base_args=base_args,
                           outcomes=OUTCOMES, offset=offset, page_size=PAGE)


@bp.post("/events/<event_id>/replay")
def replay(event_id: str):
    """Process a recorded event again (never a second room: dedupe holds)."""
    services = _services()
    try:
        receipt = operations.replay_event(services, event_id, actor=actor())
    except LookupError as error:
        flash(str(error))
        return redirect(_safe_next(request.form.get("next"), url_for("console.events")))
    if receipt is None:
        abort(404, f"No event {event_id}.")
    said = {"created": "a new onboarding was created", "duplicate": "it names an existing onboarding (no new room)",
            "ignored": "it is ignored", "pending": "it waits for the worker to ask the CRM",
            "rejected": "it is still refused"}
    flash(f"Replayed event {event_id}: {said.get(receipt.outcome, receipt.outcome)}.")
    if receipt.onboarding_id:
        return redirect(url_for("console.onboarding", onboarding_id=receipt.onboarding_id))
    return redirect(_safe_next(request.form.get("next"), url_for("console.events")))


@bp.app_template_global("error_lines")
def error_lines(errors: dict | list | str | None, prefix: str = "") -> list[str]:
    """A verdict's errors (marshmallow's nested messages, or a reason) as lines: "client.email: Not a valid ..."."""
    if isinstance(errors, dict):
        return [line for field, value in errors.items()
                for line in error_lines(value, prefix if field.startswith("_") else f"{prefix}{field}.")]
    if isinstance(errors, list):
        return [line for value in errors for line in error_lines(value, prefix)]
    text = str(errors or "")
    return [f"{prefix.rstrip('.')}: {text}" if prefix else text] if text else []


def _filter(args, status: str | None = None) -> OnboardingFilter:
    """The list's filter from query parameters or a form."""
    return OnboardingFilter(status=status or (args.get("status") if args.get("status") in STATUSES else None),
                            source=(args.get("source") or "").strip() or None,
                            text=(args.get("q") or "").strip()[:300] or None,
                            created_after=_day(args.get("from")),
                            created_before=_day(args.get("to"), next_day=True))


def _filter_args(args) -> dict:
    """The filter's fields to carry into a link."""
    return {name: args[name] for name in ("status", "source", "q", "from", "to") if args.get(name)}


def _day(value: str | None, next_day: bool = False) -> datetime | None:
    """A YYYY-MM-DD date as the start of that day (or of the next, for an inclusive end); None if not a date."""
    try:
        day = datetime.strptime((value or "").strip(), "%Y-%m-%d")
    except ValueError:
        return None
    return day + timedelta(days=1) if next_day else day


def _int(value: str | None, default: int) -> int:
    """A non-negative integer parameter."""
    return int(value) if value and value.isdigit() else default


def _safe_next(target: str | None, default: str | None = None) -> str:
    """Where to go after an action: a console path of this site only (never another host)."""
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and parts.path.startswith("/console"):
        return target
    return default or url_for("console.onboardings")


def _event_bodies(services, event_ids: list[str]) -> dict[str, dict]:
    """Each event's body pretty-printed and its kept headers without anything secret; purged ones say so."""
    if not event_ids:
        return {}
    shown = {}
    with services.db.reading() as db_session:
        for event in db_session.scalars(select(Event).where(Event.id.in_(event_ids))):
            headers = {name: value for name, value in (event.headers or {}).items()
                       if not any(word in name.lower() for word in HIDDEN_HEADER_WORDS)}
            purged = event.body is None
            shown[event.id] = {"headers": headers, "purged": purged, "body": None if purged else _pretty(event.body)}
    return shown


def _pretty(body: bytes) -> str:
    """A body as indented JSON when it is JSON, else as text; cut to a readable length."""
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = body.decode("utf-8", errors="replace")
    return text[:SHOWN_BODY_CHARACTERS] + ("\n…" if len(text) > SHOWN_BODY_CHARACTERS else "")


def _portal_links(portal: str, summary: dict) -> list[dict]:
    """The DocSpace objects an onboarding made, with links into the portal's web client."""
    steps = {step["name"]: step.get("result") or {} for step in summary["steps"] if step["status"] == "done"}
    room_id = (steps.get("room") or {}).get("room_id")
    if room_id is None:
        return []
    links = [{"what": "Room", "id": room_id, "url": f"{portal}/rooms/shared/{room_id}/filter?folder={room_id}"}]
    for name, result in steps.items():
        if name.startswith("folder:"):
            links.append({"what": step_title(name), "id": result["folder_id"],
                          "url": f"{portal}/rooms/shared/{room_id}/filter?folder={result['folder_id']}"})
        elif name.startswith("copy:"):
            links.append({"what": step_title(name), "id": result["file_id"],
                          "url": f"{portal}/doceditor?fileId={result['file_id']}"})
    return links


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the console's pages only: every other request (a webhook above all)
    skips reading and signing a cookie it never uses."""

    def open_session(self, app, request):
        """The console's session; None (Flask's null session) anywhere else."""
        if not request.path.startswith(bp.url_prefix):
            return None
        return super().open_session(app, request)


def init_app(app) -> None:
    """Register the console and set up its session cookie."""
    settings = app.extensions["onboarding"].settings
    app.secret_key = settings.secret_key
    app.session_interface = ConsoleSessions()
    app.config.update(SESSION_COOKIE_NAME="onboarding_console", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_PATH="/console",
                      SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"))
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(bp)

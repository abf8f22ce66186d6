"""The operators' API, behind Authorization: Bearer $ADMIN_TOKEN: list, inspect, retry, replay.

Every action answers with what it did. The same actions exist as CLI commands (cli.py); both call the
functions in operations.py.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime

from flask import Blueprint, current_app, jsonify, request

from onboarding import operations
from onboarding.audit import API_ACTOR
from onboarding.views import OnboardingFilter, list_events, list_onboardings, onboarding_summary

bp = Blueprint("admin", __name__, url_prefix="/api")

STATUSES = ("queued", "running", "completed", "failed")
OUTCOMES = ("accepted", "duplicate", "ignored", "pending", "rejected")


class BadQuery(ValueError):
    """A query parameter or body field an operator got wrong."""


@bp.before_request
def require_admin_token():
    """Refuse every request without the admin token."""
    expected = current_app.extensions["onboarding"].settings.admin_token
    offered = request.headers.get("Authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {expected}".encode()):
        return jsonify(error="This endpoint needs Authorization: Bearer <ADMIN_TOKEN>."), 401
    return None


@bp.errorhandler(BadQuery)
def bad_query(error: BadQuery):
    """A 400 naming what was wrong."""
    return jsonify(error=str(error)), 400


@bp.get("/onboardings")
def onboardings():
    """A page of onboardings, filtered by status, deal_id, client_id, created_after, created_before."""
    where = _filter(request.args)
    return jsonify(list_onboardings(_services().db, where, limit=_int("limit", 50), offset=_int("offset", 0)))


@bp.get("/onboardings/<onboarding_id>")
def onboarding(onboarding_id: str):
    """One onboarding: steps, attempts, errors, DocSpace ids, timings and the events that named it."""
    services = _services()
    summary = onboarding_summary(services.db, onboarding_id, services.step_names)
    if summary is None:
        return jsonify(error=f"No onboarding {onboarding_id}."), 404
    return jsonify(summary)


@bp.post("/onboardings/<onboarding_id>/retry")
def retry_one(onboarding_id: str):
    """Resume a failed onboarding from its failed step."""
    services = _services()
    outcome = operations.retry_one(services.db, onboarding_id, actor=API_ACTOR)
    return _outcome(outcome, onboarding_id)


@bp.post("/onboardings/<onboarding_id>/resend")
def resend(onboarding_id: str):
    """Tell the CRM again that a completed onboarding's room is ready."""
    return _outcome(operations.resend(_services(), onboarding_id, actor=API_ACTOR), onboarding_id)


def _outcome(outcome: operations.Outcome, onboarding_id: str):
    """An action's outcome with the onboarding as it is now."""
    services = _services()
    status = {"retried": 200, "sent": 200, "missing": 404, "failed": 502}.get(outcome.action, 409)
    summary = onboarding_summary(services.db, onboarding_id, services.step_names, detailed=False)
    return jsonify(action=outcome.action, message=outcome.message, onboarding=summary), status


@bp.post("/onboardings/retry")
def retry_many():
    """Resume every failed onboarding matching a filter (status defaults to failed; all matches, not a page)."""
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise BadQuery("The body must be a JSON object of filters.")
    where = _filter({"status": "failed", **{k: v for k, v in body.items() if v is not None}})
    retried = operations.retry_matching(_services().db, where, actor=API_ACTOR)
    return jsonify(action="retried", count=len(retried), onboarding_ids=retried)


@bp.get("/workers")
def workers():
    """The live workers of the fleet (host, pid, started, last heartbeat, onboardings running) and the state of
    the fleet-wide limits of every outside API."""
    services = _services()
    limits = {}
    for service, limiter in services.limiters.items():
        state = limiter.state()
        limits[service] = {"writes_in_flight": state.writes_in_flight,
                           "max_concurrent_writes": limiter.max_concurrent_writes,
                           "calls_in_window": state.calls_in_window, "rate": limiter.rate,
                           "window_seconds": limiter.window_seconds,
                           "paused_for_seconds": round(max(0.0, state.paused_until - time.time()), 3)}
    return jsonify(workers=services.registry.live(), limits=limits)


@bp.get("/events")
def events():
    """A page of recorded events, filtered by outcome and deal_id."""
    outcome = request.args.get("outcome")
    if outcome and outcome not in OUTCOMES:
        raise BadQuery(f"outcome must be one of {', '.join(OUTCOMES)}.")
    return jsonify(list_events(_services().db, outcome=outcome, deal_id=request.args.get("deal_id"),
                               limit=_int("limit", 50), offset=_int("offset", 0)))


@bp.post("/events/<event_id>/replay")
def replay_event(event_id: str):
    """Process a recorded event again, with the current schema and settings."""
    services = _services()
    try:
        receipt = operations.replay_event(services, event_id, actor=API_ACTOR)
    except LookupError as error:
        return jsonify(error=str(error)), 409
    if receipt is None:
        return jsonify(error=f"No event {event_id}."), 404
    return jsonify(operations.receipt_dict(receipt, services.status_links))


def _services():
    """The wired services of this app."""
    return current_app.extensions["onboarding"]


def _filter(args) -> OnboardingFilter:
    """An OnboardingFilter from query parameters or a JSON body."""
    unknown = set(args) - {"status", "deal_id", "client_id", "created_after", "created_before", "limit", "offset"}
    if unknown:
        raise BadQuery(f"Unknown filter {', '.join(sorted(unknown))}.")
    status = args.get("status")
    if status and status not in STATUSES:
        raise BadQuery(f"status must be one of {', '.join(STATUSES)}.")
    return OnboardingFilter(status=status, deal_id=_text(args, "deal_id"), client_id=_text(args, "client_id"),
                            created_after=_moment(args, "created_after"),
                            created_before=_moment(args, "created_before"))


def _text(args, name: str) -> str | None:
    """An optional string filter."""
    value = args.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)):
        raise BadQuery(f"{name} must be a string.")
    return str(value)


def _moment(args, name: str) -> datetime | None:
    """An optional ISO-8601 UTC timestamp filter."""
    value = args.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name} must be an ISO-8601 timestamp, e.g. 2026-11-28T10:00:00Z.") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _int(name: str, default: int) -> int:
    """A non-negative integer query parameter."""
    value = request.args.get(name, str(default))
    if not value.isdigit():
        raise BadQuery(f"{name} must be a non-negative integer.")
    return int(value)

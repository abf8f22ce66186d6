"""The /_sandbox control API: inspect the portal, reset it, stage faults and change settings (no auth).

/_sandbox/hubspot/... and /_sandbox/pipedrive/... seed and inspect the two CRM imitations.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, Response, jsonify, request

from . import crm, docspace, faults, hubspot, pipedrive
from .state import ARCHIVE_ID, USER_TYPES, ApiError, Folder, Portal, User

bp = Blueprint("control", __name__, url_prefix="/_sandbox")
T = TypeVar("T")


class ControlError(Exception):
    """A malformed control request, answered with 400 and a plain message."""


@bp.errorhandler(ControlError)
def render_control_error(error: ControlError) -> tuple[Response, int]:
    """Plain JSON error for control requests."""
    return jsonify(error=str(error)), 400


@bp.errorhandler(ApiError)
def render_portal_error(error: ApiError) -> tuple[Response, int]:
    """Portal errors (e.g. an unknown room) keep their status."""
    return jsonify(error=error.message), error.status


def _json_object() -> dict:
    """The request body, which must be a JSON object."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


# --- inspection ------------------------------------------------------------------------------------------


@bp.get("/state")
def state() -> Response:
    """Rooms with members, links, folders and files; users; write concurrency; call and callback counts."""
    portal, traffic = docspace.portal(), faults.traffic()
    rooms = sorted(portal.rooms(2, set(), "", set()), key=lambda room: room.id)
    return jsonify({
        "rooms": [_room(portal, room) for room in rooms],
        "users": [_user(user) for user in portal.users()],
        "config": _config(),
        "peak_concurrent_writes": traffic.peak_concurrent_writes,
        "in_flight_writes": traffic.in_flight_writes,
        "calls": docspace.calls().counts(),
        "crm_callbacks": len(crm.callbacks().all()),
    })


def _room(portal: Portal, room: Folder) -> dict:
    """A room as the state report shows it."""
    _, files = portal.contents(room.id)
    return {
        "id": room.id, "title": room.title, "roomType": room.room_type, "tags": list(room.tags),
        "archived": room.parent_id == ARCHIVE_ID,
        "members": [{"id": user.id, "access": access, "email": user.email, "displayName": user.display_name,
                     "isOwner": user.id == room.created_by} for user, access in portal.members(room.id)],
        "links": [{"id": link.id, "title": link.title, "access": link.access, "linkType": link.link_type,
                   "primary": link.primary, "shareLink": link.url(request.host_url)}
                  for link in portal.links(room.id)],
        "folders": _folders_below(portal, room.id),
        "files": [{"id": file.id, "title": file.title} for file in files],
    }


def _folders_below(portal: Portal, folder_id: int) -> list[dict]:
    """Every folder under folder_id, flattened depth-first, each with its files."""
    found = []
    subfolders, _ = portal.contents(folder_id)
    for folder in sorted(subfolders, key=lambda entry: entry.id):
        _, files = portal.contents(folder.id)
        found.append({"id": folder.id, "title": folder.title, "parentId": folder.parent_id,
                      "files": [{"id": file.id, "title": file.title} for file in files]})
        found.extend(_folders_below(portal, folder.id))
    return found


def _user(user: User) -> dict:
    """A user as the control API shows it."""
    return {"id": user.id, "displayName": user.display_name, "email": user.email, "type": user.type,
            "hidden": user.hidden, "activationStatus": user.activation_status}


@bp.get("/calls")
def calls() -> Response:
    """The api calls after `since` (a seq number), oldest first."""
    return jsonify(docspace.calls().since(request.args.get("since", 0, type=int)))


@bp.get("/crm/callbacks")
def crm_callbacks() -> Response:
    """The callbacks the fake CRM received."""
    return jsonify(crm.callbacks().all())


# --- changes ---------------------------------------------------------------------------------------------


@bp.post("/reset")
def reset() -> Response:
    """Back to the seed: portal, both CRMs, calls, callbacks, faults, counters and settings (the keys stay)."""
    docspace.portal().reset()
    docspace.calls().clear()
    crm.callbacks().clear()
    hubspot.state().reset()
    hubspot.calls().clear()
    pipedrive.state().reset()
    pipedrive.calls().clear()
    faults.traffic().reset()
    return jsonify(ok=True)


@bp.route("/faults", methods=["GET", "PUT", "DELETE"])
def fault_rules() -> Response:
    """List, replace (body {"rules": [...]}) or clear the fault rules."""
    traffic = faults.traffic()
    if request.method == "PUT":
        rules = _json_object().get("rules")
        if not isinstance(rules, list):
            raise ControlError('the body must be {"rules": [...]}')
        try:
            traffic.set_rules([faults.Rule.from_json(rule) for rule in rules])
        except (ValueError, TypeError) as exc:
            raise ControlError(str(exc)) from None
    elif request.method == "DELETE":
        traffic.set_rules([])
    return jsonify(rules=traffic.describe_rules())


def _config() -> dict:
    """All sandbox settings."""
    return {**faults.traffic().config(), "allow_guests": docspace.portal().allow_guests}


@bp.route("/config", methods=["GET", "PUT"])
def config() -> Response:
    """Read or change latency_ms, allow_guests, max_concurrent_writes and rate_per_minute."""
    if request.method == "PUT":
        current = _config()
        changes = _json_object()
        unknown = set(changes) - set(current)
        if unknown:
            raise ControlError(f"unknown settings: {sorted(unknown)}")
        merged = {**current, **changes}
        if not _is_int(merged["latency_ms"], 0):
            raise ControlError("latency_ms must be an integer >= 0")
        if not isinstance(merged["allow_guests"], bool):
            raise ControlError("allow_guests must be a boolean")
        for name in ("max_concurrent_writes", "rate_per_minute"):
            if merged[name] is not None and not _is_int(merged[name], 1):
                raise ControlError(f"{name} must be null or an integer >= 1")
        faults.traffic().configure(merged["latency_ms"], merged["max_concurrent_writes"], merged["rate_per_minute"])
        docspace.portal().allow_guests = merged["allow_guests"]
    return jsonify(_config())


def _is_int(value: object, minimum: int) -> bool:
    """Whether value is an integer (not a bool) of at least minimum."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@bp.post("/users")
def add_user() -> tuple[Response, int]:
    """Create an account: {email, displayName?, type?, hidden?, id?}."""
    body = _json_object()
    email, user_type = body.get("email"), body.get("type", "User")
    if not isinstance(email, str) or "@" not in email:
        raise ControlError("email is required")
    if user_type not in USER_TYPES:
        raise ControlError(f"type must be one of {USER_TYPES}")
    try:
        user_id = str(uuid.UUID(body["id"])) if body.get("id") else None
    except (TypeError, ValueError):
        raise ControlError("id must be a uuid") from None
    portal = docspace.portal()
    if any(user.email.lower() == email.lower() or user.id == user_id for user in portal.users()):
        raise ControlError("a user with that email or id exists")
    user = portal.add_user(email, body.get("displayName") or email, user_type, bool(body.get("hidden")), user_id)
    return jsonify(_user(user)), 201


@bp.post("/rooms/<int:id>/archive")
def archive_room(id: int) -> Response:
    """Move a room to the archive."""
    portal = docspace.portal()
    return jsonify(_room(portal, portal.archive(id)))


# --- HubSpot ---------------------------------------------------------------------------------------------------


def _seeded(seed: Callable[[], T]) -> T:
    """Run a seeding function, turning its ValueError into a control error."""
    try:
        return seed()
    except ValueError as exc:
        raise ControlError(str(exc)) from None


@bp.post("/hubspot/deals")
def hubspot_add_deal() -> tuple[Response, int]:
    """Create a deal with its company and contacts; answers {id, company_id, contact_ids}.

    Body: {dealname, dealstage?, pipeline?, hubspot_owner_id?, amount?, closedate?, properties?,
    company: {name, domain?}?, contacts: [{email, firstname?, lastname?, label?}]?}.
    """
    body, portal = _json_object(), hubspot.state()
    with portal.lock:
        return jsonify(_seeded(lambda: portal.seed_deal(body))), 201


@bp.post("/hubspot/owners")
def hubspot_add_owner() -> tuple[Response, int]:
    """Create an owner: {email, firstName?, lastName?} -> the owner as /crm/v3/owners shows it."""
    body, portal = _json_object(), hubspot.state()
    with portal.lock:
        return jsonify(_seeded(lambda: portal.add_owner(body)).to_json()), 201


@bp.get("/hubspot/state")
def hubspot_state() -> Response:
    """portal_id, config, deals (all properties, notes), custom deal properties, groups, owners and calls."""
    portal = hubspot.state()
    with portal.lock:
        return jsonify(portal.snapshot(hubspot.calls().since(0)))


@bp.route("/hubspot/config", methods=["GET", "PUT"])
def hubspot_config() -> Response:
    """Read or change {max_per_10s: int | null}."""
    portal = hubspot.state()
    with portal.lock:
        if request.method == "PUT":
            body = _json_object()
            return jsonify(_seeded(lambda: portal.configure(body)))
        return jsonify(portal.config())


# --- Pipedrive -------------------------------------------------------------------------------------------------


@bp.post("/pipedrive/users")
def pipedrive_add_user() -> tuple[Response, int]:
    """Create a user: {name, email, active_flag?} -> the user as /v1/users shows it."""
    body, company = _json_object(), pipedrive.state()
    with company.lock:
        return jsonify(_seeded(lambda: company.add_user(body)).to_json()), 201


@bp.post("/pipedrive/deals")
def pipedrive_add_deal() -> tuple[Response, int]:
    """Create a deal with its person and organization; answers {id, person_id, org_id}.

    Body: {title, owner_id?, status?, value?, currency?, stage_id?, custom_fields?,
    person: {name, emails: [{value, primary?, label?}]?, phones?}?, organization: {name}?}.
    """
    body, company = _json_object(), pipedrive.state()
    with company.lock:
        return jsonify(_seeded(lambda: company.seed_deal(body))), 201


@bp.get("/pipedrive/state")
def pipedrive_state() -> Response:
    """company_id, config, deals (v2 shape plus notes), custom deal fields, users and calls."""
    company = pipedrive.state()
    with company.lock:
        return jsonify(company.snapshot(pipedrive.calls().since(0)))


@bp.route("/pipedrive/config", methods=["GET", "PUT"])
def pipedrive_config() -> Response:
    """Read or change {max_per_2s: int | null, daily_budget: int}."""
    company = pipedrive.state()
    with company.lock:
        if request.method == "PUT":
            body = _json_object()
            return jsonify(_seeded(lambda: company.configure(body)))
        return jsonify(company.config())

"""The /pipedrive blueprint: the Pipedrive endpoints a "deal won" adapter uses, in Pipedrive's wire format.

Facts imitated (v2 for deals, persons and organizations with plain integer ids; v1 for users, dealFields and notes;
custom fields keyed by random 40-hex hashes; the x-api-token header; a rolling 2-second burst limit and a daily
token budget) come from /work/shared/reference/crm-apis.md §7-§8. Everything lives in memory;
/_sandbox/pipedrive/... (control.py) seeds users and deals and shows what a client wrote.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http import HTTPStatus

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from . import faults
from .state import CallLog

PREFIX = "/pipedrive/"
COMPANY_ID = 7788001
COMPANY_NAME = "Sandbox Company"
WINDOW_SECONDS = 2
DEFAULT_MAX_PER_2S = 20  # Lite plan, api_token
DEFAULT_DAILY_BUDGET = 30000  # 30,000 tokens x Lite multiplier 1 x 1 seat
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_CUSTOM_FIELDS_PARAM = 15
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
ADMIN_USER_ID = 15000001  # the seeded user the API token belongs to
PERMISSION_SET_ID = "f07d229d-088a-4144-a40f-1fe64295d180"
PIPELINE_ID = 1
STAGES = {1: "Qualified", 2: "Contact Made", 3: "Demo Scheduled", 4: "Proposal Made", 5: "Negotiations Started"}
STATUSES = ("open", "won", "lost")
FIELD_TYPES = ("address", "date", "daterange", "double", "enum", "monetary", "org", "people", "phone", "set", "text",
               "time", "timerange", "user", "varchar", "varchar_auto", "visible_to")
TEXT_LIMITS = {"varchar": 255, "varchar_auto": 255, "phone": 255, "text": 65536}
# Endpoint costs against the daily budget (x-token-cost in Pipedrive's OpenAPI files).
COSTS = {"pipedrive.get_deal": 1, "pipedrive.update_deal": 5, "pipedrive.get_person": 1,
         "pipedrive.get_organization": 1, "pipedrive.get_user": 2, "pipedrive.current_user": 2,
         "pipedrive.list_deal_fields": 20, "pipedrive.add_deal_field": 10, "pipedrive.list_notes": 20,
         "pipedrive.add_note": 10}
# Built-in deal fields as GET /v1/dealFields lists them: short keys, not editable.
BUILTIN_FIELDS = (("id", "ID", "int"), ("title", "Title", "varchar"), ("creator_user_id", "Creator", "user"),
                  ("user_id", "Owner", "user"), ("value", "Value", "monetary"),
                  ("currency", "Currency", "varchar_options"), ("weighted_value", "Weighted value", "monetary"),
                  ("probability", "Probability", "double"), ("org_id", "Organization", "org"),
                  ("pipeline_id", "Pipeline", "double"), ("person_id", "Contact person", "people"),
                  ("stage_id", "Stage", "stage"), ("status", "Status", "status"),
                  ("add_time", "Deal created", "date"), ("update_time", "Update time", "date"),
                  ("stage_change_time", "Last stage change", "date"), ("won_time", "Won time", "date"),
                  ("lost_time", "Lost time", "date"), ("close_time", "Deal closed on", "date"),
                  ("lost_reason", "Lost reason", "varchar"), ("visible_to", "Visible to", "visible_to"),
                  ("expected_close_date", "Expected close date", "date"), ("label", "Label", "set"))
# Fields PATCH /api/v2/deals/{id} accepts, with the JSON types each may have (None is allowed where listed).
PATCHABLE = {"title": (str,), "owner_id": (int,), "person_id": (int, type(None)), "org_id": (int, type(None)),
             "pipeline_id": (int,), "stage_id": (int,), "value": (int, float), "currency": (str,),
             "status": (str,), "probability": (int, float, type(None)), "lost_reason": (str, type(None)),
             "visible_to": (int,), "close_time": (str, type(None)), "won_time": (str,), "lost_time": (str,),
             "expected_close_date": (str, type(None)), "label_ids": (list,), "custom_fields": (dict,)}
SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.IGNORECASE | re.DOTALL)

bp = Blueprint("pipedrive", __name__, url_prefix=PREFIX.rstrip("/"))


# --- errors ---------------------------------------------------------------------------------------------------


class PipedriveError(Exception):
    """A failure answered with Pipedrive's error envelope."""

    def __init__(self, status: int, error: str, error_info: str = ERROR_INFO) -> None:
        """Keep what the envelope needs."""
        super().__init__(error)
        self.status, self.error, self.error_info = status, error, error_info

    def response(self) -> Response:
        """The envelope as a response."""
        response = jsonify({"success": False, "error": self.error, "error_info": self.error_info, "data": None,
                            "additional_data": None})
        response.status_code = self.status
        return response


def unauthorized() -> Response:
    """Pipedrive's 401 for a missing or wrong API token; its body differs from the other errors'."""
    response = jsonify({"success": False, "error": "unauthorized access", "errorCode": 401,
                        "error_info": ERROR_INFO})
    response.status_code = 401
    return response


def not_found(entity: str) -> PipedriveError:
    """A 404 naming the entity, e.g. "Deal not found"."""
    return PipedriveError(404, f"{entity} not found")


def bad_request(error: str) -> PipedriveError:
    """A 400 with Pipedrive's envelope."""
    return PipedriveError(400, error)


def rate_limited(quota: faults.Quota | None, limit: int, retry_after: int | None = None) -> Response:
    """The burst limit's 429: Pipedrive's body, x-ratelimit-* headers, Retry-After only when a fault sets one."""
    response = PipedriveError(429, "Request over limit").response()
    reset = retry_after or (quota.reset_seconds if quota is not None else WINDOW_SECONDS)
    response.headers.update(_rate_headers(limit, 0, reset))
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def canned(status: int, retry_after: int | None) -> Response:
    """A fault rule's failure for target "pipedrive", in Pipedrive's envelope."""
    if status == 429:
        return rate_limited(None, state().limiter.limit or DEFAULT_MAX_PER_2S, retry_after)
    response = unauthorized() if status == 401 else PipedriveError(status, HTTPStatus(status).phrase).response()
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _rate_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    """The burst-limit headers."""
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining), "x-ratelimit-reset": str(reset)}


# --- state ----------------------------------------------------------------------------------------------------


def _v2_time(moment: datetime | None) -> str | None:
    """API v2's timestamp format (RFC 3339, UTC, seconds)."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _v1_time(moment: datetime | None) -> str | None:
    """API v1's timestamp format ("YYYY-MM-DD HH:MM:SS", UTC)."""
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _now() -> datetime:
    """The current time, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class User:
    """A Pipedrive user (a deal owner)."""

    id: int
    name: str
    email: str
    active_flag: bool = True
    created: datetime = field(default_factory=_now)

    def to_json(self) -> dict:
        """The user as GET /v1/users/{id} shows it."""
        admin = self.id == ADMIN_USER_ID
        return {"id": self.id, "name": self.name, "default_currency": "EUR", "locale": "en_US", "lang": 1,
                "email": self.email, "phone": None, "activated": True, "last_login": _v1_time(self.created),
                "created": _v1_time(self.created), "modified": _v1_time(self.created), "has_created_company": admin,
                "access": [{"app": "sales", "admin": admin, "permission_set_id": PERMISSION_SET_ID}],
                "active_flag": self.active_flag, "timezone_name": "Europe/Tallinn", "timezone_offset": "+02:00",
                "role_id": 1, "icon_url": None, "is_you": admin, "is_deleted": False}


@dataclass
class Organization:
    """An organization."""

    id: int
    name: str
    owner_id: int
    add_time: datetime = field(default_factory=_now)

    def to_json(self) -> dict:
        """The organization as API v2 shows it."""
        return {"id": self.id, "name": self.name, "owner_id": self.owner_id, "add_time": _v2_time(self.add_time),
                "update_time": _v2_time(self.add_time), "address": None, "is_deleted": False, "visible_to": 3,
                "label_ids": [], "custom_fields": {}}


@dataclass
class Person:
    """A person (contact)."""

    id: int
    name: str
    owner_id: int
    org_id: int | None
    emails: list[dict]
    phones: list[dict]
    add_time: datetime = field(default_factory=_now)

    def to_json(self) -> dict:
        """The person as API v2 shows it."""
        first, _, last = self.name.partition(" ")
        return {"id": self.id, "name": self.name, "first_name": first, "last_name": last or None,
                "owner_id": self.owner_id, "org_id": self.org_id, "add_time": _v2_time(self.add_time),
                "update_time": _v2_time(self.add_time), "emails": self.emails, "phones": self.phones,
                "is_deleted": False, "visible_to": 3, "label_ids": [], "picture_id": None, "custom_fields": {}}


@dataclass
class DealField:
    """A deal field; custom ones have a 40-hex key."""

    id: int
    key: str
    name: str
    field_type: str
    order_nr: int
    custom: bool
    options: list[dict] | None = None
    add_visible_flag: bool = True
    add_time: datetime = field(default_factory=_now)

    def to_json(self) -> dict:
        """The field as /v1/dealFields shows it."""
        return {"id": self.id, "key": self.key, "name": self.name, "order_nr": self.order_nr,
                "field_type": self.field_type, "add_time": _v1_time(self.add_time),
                "update_time": _v1_time(self.add_time), "last_updated_by_user_id": ADMIN_USER_ID,
                "created_by_user_id": ADMIN_USER_ID, "active_flag": True, "edit_flag": self.custom,
                "index_visible_flag": True, "details_visible_flag": True, "add_visible_flag": self.add_visible_flag,
                "important_flag": False, "bulk_edit_allowed": True, "searchable_flag": False,
                "filtering_allowed": True, "sortable_flag": True, "options": self.options,
                "mandatory_flag": self.key == "title"}


@dataclass
class Deal:
    """A deal; `custom` holds custom field values by key."""

    id: int
    title: str
    owner_id: int
    person_id: int | None
    org_id: int | None
    value: float = 0
    currency: str = "EUR"
    status: str = "open"
    stage_id: int = 1
    pipeline_id: int = PIPELINE_ID
    add_time: datetime = field(default_factory=_now)
    update_time: datetime = field(default_factory=_now)
    stage_change_time: datetime | None = None
    won_time: datetime | None = None
    lost_time: datetime | None = None
    close_time: datetime | None = None
    lost_reason: str | None = None
    probability: float | None = None
    visible_to: int = 3
    expected_close_date: str | None = None
    label_ids: list[int] = field(default_factory=list)
    custom: dict[str, object] = field(default_factory=dict)

    def set_status(self, status: str, moment: datetime) -> None:
        """Change the status; won and lost stamp their times, reopening clears them (the stage stays)."""
        if status == self.status:
            return
        self.status = status
        self.won_time = moment if status == "won" else None
        self.lost_time = moment if status == "lost" else None
        self.close_time = moment if status in ("won", "lost") else None


@dataclass
class Note:
    """A note on a deal, person or organization."""

    id: int
    content: str
    user_id: int
    deal_id: int | None
    person_id: int | None
    org_id: int | None
    add_time: datetime = field(default_factory=_now)


class PipedriveState:
    """One Pipedrive company in memory; callers hold `lock` around reads and changes."""

    def __init__(self) -> None:
        """A company with the seed data and the default limits."""
        self.lock = threading.RLock()
        self.limiter = faults.RollingWindow(WINDOW_SECONDS, DEFAULT_MAX_PER_2S)
        self.reset()

    def reset(self) -> None:
        """Back to the seed: the admin user, the built-in deal fields, no deals, full budget."""
        with self.lock:
            self.users = {ADMIN_USER_ID: User(ADMIN_USER_ID, "Sandbox Admin", "admin@sandbox.example.com")}
            self.organizations: dict[int, Organization] = {}
            self.persons: dict[int, Person] = {}
            self.deals: dict[int, Deal] = {}
            self.notes: dict[int, Note] = {}
            self._field_ids = itertools.count(12451)
            self.fields = [DealField(next(self._field_ids), key, name, field_type, order, custom=False)
                           for order, (key, name, field_type) in enumerate(BUILTIN_FIELDS)]
            self._ids = {kind: itertools.count(first) for kind, first in
                         (("users", ADMIN_USER_ID + 1), ("organizations", 3001), ("persons", 2001), ("deals", 1001),
                          ("notes", 4001), ("options", 101))}
            self.daily_budget = DEFAULT_DAILY_BUDGET
            self.daily_left = DEFAULT_DAILY_BUDGET
            self.limiter.configure(DEFAULT_MAX_PER_2S)
            self.limiter.clear()

    def custom_fields(self) -> list[DealField]:
        """The custom deal fields, oldest first."""
        return [f for f in self.fields if f.custom]

    def add_field(self, name: str, field_type: str, options: list | None, add_visible_flag: bool) -> DealField:
        """A new custom deal field with a fresh random key (two fields may share a name, as in Pipedrive)."""
        numbered = None
        if options is not None:
            numbered = [{"id": next(self._ids["options"]), "label": str(option["label"])} for option in options]
        new = DealField(next(self._field_ids), secrets.token_hex(20), name, field_type, len(self.fields), True,
                        numbered, add_visible_flag)
        self.fields.append(new)
        return new

    def add_note(self, content: str, deal_id: int | None, person_id: int | None, org_id: int | None) -> Note:
        """A new note by the token's user."""
        note = Note(next(self._ids["notes"]), content, ADMIN_USER_ID, deal_id, person_id, org_id)
        self.notes[note.id] = note
        return note

    def deal(self, deal_id: int) -> Deal:
        """A deal, or 404."""
        found = self.deals.get(deal_id)
        if found is None:
            raise not_found("Deal")
        return found

    def deal_json(self, deal: Deal, only_keys: list[str] | None = None) -> dict:
        """A deal as API v2 shows it; custom_fields holds every custom field (null when empty) or only_keys."""
        keys = [f.key for f in self.custom_fields()] if only_keys is None else only_keys
        return {"id": deal.id, "title": deal.title, "creator_user_id": ADMIN_USER_ID, "owner_id": deal.owner_id,
                "value": deal.value, "person_id": deal.person_id, "org_id": deal.org_id, "stage_id": deal.stage_id,
                "pipeline_id": deal.pipeline_id, "currency": deal.currency, "archive_time": None,
                "add_time": _v2_time(deal.add_time), "update_time": _v2_time(deal.update_time),
                "stage_change_time": _v2_time(deal.stage_change_time), "status": deal.status, "is_archived": False,
                "is_deleted": False, "probability": deal.probability, "lost_reason": deal.lost_reason,
                "visible_to": deal.visible_to, "close_time": _v2_time(deal.close_time),
                "won_time": _v2_time(deal.won_time), "lost_time": _v2_time(deal.lost_time),
                "expected_close_date": deal.expected_close_date, "label_ids": list(deal.label_ids),
                "origin": "API", "origin_id": None, "channel": None, "channel_id": None,
                "custom_fields": {key: deal.custom.get(key) for key in keys}}

    def note_json(self, note: Note) -> dict:
        """A note as API v1 shows it."""
        deal = self.deals.get(note.deal_id) if note.deal_id is not None else None
        person = self.persons.get(note.person_id) if note.person_id is not None else None
        org = self.organizations.get(note.org_id) if note.org_id is not None else None
        user = self.users[note.user_id]
        return {"id": note.id, "user_id": note.user_id, "deal_id": note.deal_id, "person_id": note.person_id,
                "org_id": note.org_id, "lead_id": None, "project_id": None, "content": note.content,
                "add_time": _v1_time(note.add_time), "update_time": _v1_time(note.add_time), "active_flag": True,
                "pinned_to_deal_flag": False, "pinned_to_person_flag": False, "pinned_to_organization_flag": False,
                "pinned_to_lead_flag": False, "pinned_to_project_flag": False, "last_update_user_id": None,
                "organization": {"name": org.name} if org else None,
                "person": {"name": person.name} if person else None,
                "deal": {"title": deal.title} if deal else None, "lead": None,
                "user": {"email": user.email, "name": user.name, "icon_url": None, "is_you": True}}

    def check_custom_values(self, values: dict) -> dict[str, object]:
        """Custom field values checked against their fields' types; PipedriveError for an unknown key or bad value."""
        fields = {f.key: f for f in self.custom_fields()}
        for key, value in values.items():
            found = fields.get(key)
            if found is None:
                raise bad_request(f"Custom field with key '{key}' does not exist")
            if value is not None and not _valid_custom_value(found, value):
                raise bad_request(f"Invalid value for custom field '{key}' of type '{found.field_type}'")
        return dict(values)

    # -- seeding from the control API --

    def add_user(self, body: dict) -> User:
        """A new user from {name, email, active_flag?}; ValueError when malformed."""
        _only(body, {"name", "email", "active_flag"})
        name, email = body.get("name"), body.get("email")
        if not isinstance(name, str) or not name.strip() or not isinstance(email, str) or "@" not in email:
            raise ValueError("name and email are required")
        if not isinstance(body.get("active_flag", True), bool):
            raise ValueError("active_flag must be a boolean")
        user = User(next(self._ids["users"]), name, email, body.get("active_flag", True))
        self.users[user.id] = user
        return user

    def seed_deal(self, body: dict) -> dict:
        """A deal, with its person and organization (reused by primary email or name); ValueError if malformed."""
        _only(body, {"title", "owner_id", "person", "organization", "status", "value", "currency", "stage_id",
                     "custom_fields"})
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ValueError("title is required")
        owner_id = body.get("owner_id", ADMIN_USER_ID)
        if not isinstance(owner_id, int) or isinstance(owner_id, bool):  # it need not exist: tests of a gone owner
            raise ValueError("owner_id must be an integer")
        status = body.get("status", "open")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        stage_id = body.get("stage_id", 1)
        if stage_id not in STAGES:
            raise ValueError(f"stage_id must be one of {sorted(STAGES)}")
        value = body.get("value", 0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError("value must be a number")
        try:
            custom = self.check_custom_values(body.get("custom_fields") or {})
        except PipedriveError as error:
            raise ValueError(error.error) from None
        org_id = self._seed_organization(body["organization"], owner_id) if body.get("organization") else None
        person_id = self._seed_person(body["person"], owner_id, org_id) if body.get("person") else None
        moment = _now()
        deal = Deal(next(self._ids["deals"]), title, owner_id, person_id, org_id, value,
                    str(body.get("currency", "EUR")), stage_id=stage_id, add_time=moment, update_time=moment,
                    stage_change_time=moment, custom=custom)
        deal.set_status(status, moment)
        self.deals[deal.id] = deal
        return {"id": deal.id, "person_id": person_id, "org_id": org_id}

    def _seed_organization(self, org: object, owner_id: int) -> int:
        """The id of the organization with this name, created if new."""
        if not isinstance(org, dict) or not isinstance(org.get("name"), str) or not org["name"]:
            raise ValueError("organization must be {name}")
        _only(org, {"name"})
        for existing in self.organizations.values():
            if existing.name.lower() == org["name"].lower():
                return existing.id
        new = Organization(next(self._ids["organizations"]), org["name"], owner_id)
        self.organizations[new.id] = new
        return new.id

    def _seed_person(self, person: object, owner_id: int, org_id: int | None) -> int:
        """The id of the person with this primary email, created if new."""
        if not isinstance(person, dict) or not isinstance(person.get("name"), str) or not person["name"]:
            raise ValueError("person must be {name, emails?, phones?}")
        _only(person, {"name", "emails", "phones"})
        emails = [_labelled(entry, "email") for entry in person.get("emails") or []]
        phones = [_labelled(entry, "phone") for entry in person.get("phones") or []]
        primary = next((e["value"].lower() for e in emails if e["primary"]), None)
        for existing in self.persons.values():
            if primary and any(e["primary"] and e["value"].lower() == primary for e in existing.emails):
                return existing.id
        new = Person(next(self._ids["persons"]), person["name"], owner_id, org_id, emails, phones)
        self.persons[new.id] = new
        return new.id

    def configure(self, changes: dict) -> dict:
        """Change max_per_2s (integer >= 1 or null: no limit) and daily_budget (integer >= 0, refills the day)."""
        _only(changes, {"max_per_2s", "daily_budget"})
        if "max_per_2s" in changes:
            limit = changes["max_per_2s"]
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
                raise ValueError("max_per_2s must be null or an integer >= 1")
            self.limiter.configure(limit)
        if "daily_budget" in changes:
            budget = changes["daily_budget"]
            if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
                raise ValueError("daily_budget must be an integer >= 0")
            self.daily_budget = self.daily_left = budget
        return self.config()

    def config(self) -> dict:
        """The settings the control API may change, and what is left of the day's budget."""
        return {"max_per_2s": self.limiter.limit, "daily_budget": self.daily_budget, "daily_left": self.daily_left}

    def snapshot(self, calls: list[dict]) -> dict:
        """What the control API's state shows: deals with custom fields and notes, custom fields, users, calls."""
        deals = []
        for deal in self.deals.values():
            notes = [{"id": note.id, "content": note.content} for note in self.notes.values()
                     if note.deal_id == deal.id]
            deals.append({**self.deal_json(deal), "notes": notes})
        return {"company_id": COMPANY_ID, "config": self.config(), "deals": deals,
                "deal_fields": [{"key": f.key, "name": f.name, "field_type": f.field_type}
                                for f in self.custom_fields()],
                "users": [user.to_json() for user in self.users.values()], "calls": calls}


def _labelled(entry: object, kind: str) -> dict:
    """An email or phone entry {value, primary, label}; ValueError when malformed."""
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
        raise ValueError(f"each {kind} must be {{value, primary?, label?}}")
    return {"value": entry["value"], "primary": bool(entry.get("primary", False)),
            "label": str(entry.get("label", "work"))}


def _valid_custom_value(found: DealField, value: object) -> bool:
    """Whether API v2 would take this value for a custom field (plain values for text, numbers and dates)."""
    kind = found.field_type
    if kind in TEXT_LIMITS:
        return isinstance(value, str) and len(value) <= TEXT_LIMITS[kind]
    if kind == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "date":
        try:
            return isinstance(value, str) and date.fromisoformat(value).isoformat() == value
        except ValueError:
            return False
    option_ids = {option["id"] for option in found.options or []}
    if kind == "enum":
        return isinstance(value, int) and value in option_ids
    if kind == "set":
        return isinstance(value, list) and all(isinstance(item, int) and item in option_ids for item in value)
    if kind == "monetary":
        return isinstance(value, dict) and isinstance(value.get("value"), int | float)
    if kind in ("user", "org", "people"):
        return isinstance(value, int) and not isinstance(value, bool)
    return True


def _only(body: dict, allowed: set[str]) -> None:
    """Refuse a control body with fields the control API does not know (a typo would otherwise pass silently)."""
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")


# --- app wiring -----------------------------------------------------------------------------------------------


def init_app(app: Flask, token: str) -> None:
    """Attach the company, its call log and the accepted token; register the blueprint and its fault envelope."""
    app.extensions["sandbox.pipedrive"] = PipedriveState()
    app.extensions["sandbox.pipedrive.calls"] = CallLog()
    app.extensions["sandbox.pipedrive.token"] = token
    faults.register_envelope(app, "pipedrive", canned)
    app.register_blueprint(bp)


def state() -> PipedriveState:
    """The current app's Pipedrive company."""
    return current_app.extensions["sandbox.pipedrive"]


def calls() -> CallLog:
    """The current app's Pipedrive call log (its query strings show any api_token a client leaked)."""
    return current_app.extensions["sandbox.pipedrive.calls"]


# --- request pipeline: record, faults, burst limit, authenticate, charge the budget ---------------------------


@bp.before_request
def open_call() -> Response | None:
    """Record the call, apply latency and pipedrive faults, the burst limit, the token, then the daily budget."""
    path = request.path.removeprefix(PREFIX)
    g.pipedrive_call = calls().start(request.method, _route(path), path, request.query_string.decode(),
                                     request.get_json(force=True, silent=True))
    response = faults.before("pipedrive", path, limited=False)
    if response is not None:
        return response
    company = state()
    quota = company.limiter.hit()
    g.pipedrive_quota = quota
    if quota is not None and not quota.allowed:
        return rate_limited(quota, quota.limit)
    token = current_app.extensions["sandbox.pipedrive.token"]
    # The header is what Pipedrive documents; the api_token query parameter still works there (and leaks into logs).
    if token not in (request.headers.get("x-api-token"), request.args.get("api_token")):
        return unauthorized()
    cost = COSTS.get(request.endpoint or "", 1)
    with company.lock:
        if company.daily_left < cost:
            return PipedriveError(429, "Daily API token budget exceeded").response()
        company.daily_left -= cost
    return None


@bp.after_request
def close_call(response: Response) -> Response:
    """Add the rate-limit headers, apply an after_* fault and record how the call was answered."""
    quota = g.pop("pipedrive_quota", None)
    if quota is not None and "x-ratelimit-limit" not in response.headers:
        response.headers.update(_rate_headers(quota.limit, quota.remaining, quota.reset_seconds))
    response.headers["x-daily-requests-left"] = str(state().daily_left)
    response = faults.after(response)
    dropped = isinstance(response, faults.DroppedResponse)
    calls().finish(g.pipedrive_call, None if dropped else response.status_code)
    return response


@bp.errorhandler(PipedriveError)
def render_error(error: PipedriveError) -> Response:
    """Pipedrive's error envelope."""
    return error.response()


def _route(path: str) -> str:
    """The matched route as a template (api/v2/deals/{id}); the path itself if unknown."""
    rule = request.url_rule
    if rule is None or rule.endpoint == "pipedrive.unknown_route":
        return path
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(PREFIX))


def _entity_id(value: str) -> int:
    """A path id, which must be a positive integer."""
    if not value.isdigit() or int(value) < 1:
        raise bad_request(f"Validation failed: id: Expected a positive integer, got '{value}'")
    return int(value)


def _v2_body() -> dict:
    """API v2 takes JSON objects only."""
    if request.mimetype != "application/json":
        raise bad_request("Validation failed: body: Content-Type must be application/json")
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError:
        raise bad_request("Validation failed: body: invalid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("Validation failed: body: Expected an object")
    return body


def _v1_body() -> dict:
    """API v1 takes a JSON object or a form."""
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise bad_request("Bad request: invalid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("Bad request: the body must be a JSON object")
        return body
    return request.form.to_dict()


def _optional_int(body: dict, name: str) -> int | None:
    """An optional integer field (forms give digit strings)."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    return value


def _page() -> tuple[int, int]:
    """start and limit from the query; limit defaults to 100 and is capped at 500."""
    try:
        start = int(request.args.get("start", 0))
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise bad_request("start and limit must be integers") from None
    if start < 0 or limit < 1:
        raise bad_request("start must be >= 0 and limit >= 1")
    return start, min(limit, MAX_LIMIT)


def _listing(items: list[dict]) -> Response:
    """A v1 list page: data (null when the page is empty, as Pipedrive answers) and pagination."""
    start, limit = _page()
    page = items[start:start + limit]
    more = start + limit < len(items)
    pagination = {"start": start, "limit": limit, "more_items_in_collection": more}
    if more:
        pagination["next_start"] = start + limit
    return jsonify({"success": True, "data": page or None, "additional_data": {"pagination": pagination}})


def _data(data: dict, status: int = 200) -> tuple[Response, int]:
    """A success envelope."""
    return jsonify({"success": True, "data": data}), status


# --- API v2: deals, persons, organizations --------------------------------------------------------------------


@bp.get("/api/v2/deals/<deal_id>")
def get_deal(deal_id: str) -> tuple[Response, int]:
    """A deal; ?custom_fields=k1,k2 (at most 15 keys) limits which custom fields come back."""
    company = state()
    with company.lock:
        deal = company.deal(_entity_id(deal_id))
        only = None
        if "custom_fields" in request.args:
            only = [key for key in request.args["custom_fields"].split(",") if key]
            if len(only) > MAX_CUSTOM_FIELDS_PARAM:
                raise bad_request(f"Validation failed: custom_fields: at most {MAX_CUSTOM_FIELDS_PARAM} keys")
            known = {f.key for f in company.custom_fields()}
            only = [key for key in only if key in known]
        return _data(company.deal_json(deal, only))


@bp.patch("/api/v2/deals/<deal_id>")
def update_deal(deal_id: str) -> tuple[Response, int]:
    """Change a deal: known fields only, typed as API v2 types them, custom fields by existing key."""
    company = state()
    body = _v2_body()
    for name, value in body.items():
        if name not in PATCHABLE:
            raise bad_request(f"Validation failed: {name}: Unknown parameter")
        if not isinstance(value, PATCHABLE[name]) or isinstance(value, bool):
            raise bad_request(f"Validation failed: {name}: Invalid type")
    with company.lock:
        deal = company.deal(_entity_id(deal_id))
        custom = company.check_custom_values(body.get("custom_fields", {}))
        if "status" in body and body["status"] not in STATUSES:
            raise bad_request(f"Validation failed: status: must be one of {', '.join(STATUSES)}")
        if "owner_id" in body and body["owner_id"] not in company.users:
            raise bad_request("User not found")
        if body.get("person_id") is not None and body["person_id"] not in company.persons:
            raise bad_request("Person not found")
        if body.get("org_id") is not None and body["org_id"] not in company.organizations:
            raise bad_request("Organization not found")
        if "stage_id" in body and body["stage_id"] not in STAGES:
            raise bad_request("Stage not found")
        if "pipeline_id" in body and body["pipeline_id"] != PIPELINE_ID:
            raise bad_request("Pipeline not found")
        moment = _now()
        for name in ("title", "owner_id", "person_id", "org_id", "pipeline_id", "value", "currency", "probability",
                     "lost_reason", "visible_to", "expected_close_date", "label_ids"):
            if name in body:
                setattr(deal, name, body[name])
        if "stage_id" in body and body["stage_id"] != deal.stage_id:
            deal.stage_id, deal.stage_change_time = body["stage_id"], moment
        if "status" in body:
            deal.set_status(body["status"], moment)
        deal.custom.update(custom)
        deal.update_time = moment
        return _data(company.deal_json(deal))


@bp.get("/api/v2/persons/<person_id>")
def get_person(person_id: str) -> tuple[Response, int]:
    """A person."""
    company = state()
    with company.lock:
        person = company.persons.get(_entity_id(person_id))
        if person is None:
            raise not_found("Person")
        return _data(person.to_json())


@bp.get("/api/v2/organizations/<org_id>")
def get_organization(org_id: str) -> tuple[Response, int]:
    """An organization."""
    company = state()
    with company.lock:
        org = company.organizations.get(_entity_id(org_id))
        if org is None:
            raise not_found("Organization")
        return _data(org.to_json())


# --- API v1: users, deal fields, notes (no v2 twins) ----------------------------------------------------------


@bp.get("/v1/users/me")
@bp.get("/api/v1/users/me")
def current_user() -> tuple[Response, int]:
    """The user the token belongs to, with the company."""
    company = state()
    with company.lock:
        return _data({**company.users[ADMIN_USER_ID].to_json(), "company_id": COMPANY_ID,
                      "company_name": COMPANY_NAME, "company_domain": "sandbox", "company_country": "EE",
                      "language": {"language_code": "en", "country_code": "US"}})


@bp.get("/v1/users/<user_id>")
@bp.get("/api/v1/users/<user_id>")
def get_user(user_id: str) -> tuple[Response, int]:
    """A user."""
    company = state()
    with company.lock:
        user = company.users.get(_entity_id(user_id))
        if user is None:
            raise not_found("User")
        return _data(user.to_json())


@bp.get("/v1/dealFields")
@bp.get("/api/v1/dealFields")
def list_deal_fields() -> Response:
    """Every deal field, built-in then custom, paged with start and limit."""
    company = state()
    with company.lock:
        return _listing([f.to_json() for f in company.fields])


@bp.post("/v1/dealFields")
@bp.post("/api/v1/dealFields")
def add_deal_field() -> tuple[Response, int]:
    """A custom deal field from {name, field_type, options?, add_visible_flag?}; its key is a new 40-hex hash."""
    body = _v1_body()
    name, field_type = body.get("name"), body.get("field_type")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("Field name is required")
    if field_type not in FIELD_TYPES:
        raise bad_request(f"Invalid field_type '{field_type}'; expected one of {', '.join(FIELD_TYPES)}")
    options = body.get("options")
    if isinstance(options, str):  # a form sends the JSON-encoded array
        try:
            options = json.loads(options)
        except ValueError:
            raise bad_request("options must be a JSON array of {label}") from None
    if field_type in ("enum", "set"):
        if not isinstance(options, list) or not options or not all(
                isinstance(option, dict) and isinstance(option.get("label"), str) for option in options):
            raise bad_request(f"Options are required for a field of type '{field_type}'")
    else:
        options = None
    add_visible = body.get("add_visible_flag", True)
    company = state()
    with company.lock:
        created = company.add_field(name, field_type, options, add_visible not in (False, "false", "0"))
        return _data(created.to_json(), 201)


@bp.get("/v1/notes")
@bp.get("/api/v1/notes")
def list_notes() -> Response:
    """Notes, filtered by deal_id, person_id or org_id, oldest first, paged with start and limit."""
    filters = {}
    for name in ("deal_id", "person_id", "org_id"):
        if name in request.args:
            value = request.args[name]
            if not value.isdigit():
                raise bad_request(f"{name} must be an integer")
            filters[name] = int(value)
    company = state()
    with company.lock:
        notes = [note for note in company.notes.values()
                 if all(getattr(note, name) == value for name, value in filters.items())]
        return _listing([company.note_json(note) for note in notes])


@bp.post("/v1/notes")
@bp.post("/api/v1/notes")
def add_note() -> tuple[Response, int]:
    """A note from {content, deal_id | person_id | org_id}; content is required and sanitized."""
    body = _v1_body()
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise bad_request("Note content is required")
    deal_id, person_id, org_id = (_optional_int(body, name) for name in ("deal_id", "person_id", "org_id"))
    if deal_id is None and person_id is None and org_id is None:
        raise bad_request("The note must be attached to a deal, person, organization, lead or project")
    company = state()
    with company.lock:
        for value, known, entity in ((deal_id, company.deals, "Deal"), (person_id, company.persons, "Person"),
                                     (org_id, company.organizations, "Organization")):
            if value is not None and value not in known:
                raise bad_request(f"{entity} not found")
        # Pipedrive sanitizes the HTML it stores; scripts are the part a client would notice missing.
        note = company.add_note(SCRIPT.sub("", content), deal_id, person_id, org_id)
        return _data(company.note_json(note), 201)


@bp.route("/<path:unknown>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown_route(unknown: str) -> Response:
    """Any other path, answered as Pipedrive answers an unknown method."""
    raise PipedriveError(404, "Unknown method .")

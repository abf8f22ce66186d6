"""The /hubspot blueprint: the HubSpot CRM endpoints a "deal won" adapter uses, in HubSpot's wire format.

Facts imitated (ids are numeric strings in v3 but integers in v4, stage metadata values are strings, a deal's
company is listed twice, 429s carry no Retry-After, undefined properties are refused) come from
/work/shared/reference/crm-apis.md §2-§5. Everything lives in memory; /_sandbox/hubspot/... (control.py) seeds
deals and owners and shows what a client wrote.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from . import faults
from .state import CallLog

PREFIX = "/hubspot/"
PORTAL_ID = 62515
WINDOW_SECONDS = 10
DEFAULT_MAX_PER_10S = 100  # Free/Starter burst limit for a private app
DEFAULT_PIPELINE_ID = "default"
CUSTOM_PIPELINE_ID = "12345678"
CUSTOM_OPEN_STAGE = "1001"
CUSTOM_WON_STAGE = "1002"
CUSTOM_LOST_STAGE = "1003"
DEFAULT_GROUP = "dealinformation"
NOTE_BODY_MAX = 65536
AUTH_MESSAGE = ("Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
                "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")
RATE_LIMIT_MESSAGE = "You have reached your ten_secondly_rolling limit."
OBJECT_TYPES = ("deals", "companies", "contacts", "notes")
FIRST_IDS = {"deals": 30000000001, "companies": 201, "contacts": 101, "notes": 50000000001}
PROPERTY_TYPES = ("string", "number", "date", "datetime", "enumeration", "bool")
FIELD_TYPES = ("textarea", "text", "date", "file", "number", "select", "radio", "checkbox", "booleancheckbox",
               "calculation_equation")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
# A category per status for canned failures; HubSpot's bodies carry one, and clients may branch on it.
CATEGORIES = {400: "VALIDATION_ERROR", 401: "INVALID_AUTHENTICATION", 403: "MISSING_SCOPES", 404: "OBJECT_NOT_FOUND",
              409: "CONFLICT", 423: "LOCKED", 429: "RATE_LIMITS"}

# Properties every object read returns whatever was asked for, and the default set when nothing was asked.
ALWAYS = {
    "deals": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
    "companies": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": ("createdate", "lastmodifieddate", "hs_object_id"),  # contacts use lastmodifieddate, no hs_ prefix
    "notes": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
}
DEFAULTS = {
    "deals": ("amount", "closedate", "dealname", "dealstage", "pipeline"),
    "companies": ("domain", "name"),
    "contacts": ("email", "firstname", "lastname"),
    "notes": (),
}
# Properties of the object types whose definitions cannot be changed here (deals have the properties API).
FIXED_PROPERTIES = {
    "companies": {"name", "domain", "city", "phone", "industry", "hubspot_owner_id"},
    "contacts": {"email", "firstname", "lastname", "phone", "company", "jobtitle", "hubspot_owner_id"},
    "notes": {"hs_note_body", "hs_timestamp", "hubspot_owner_id", "hs_attachment_ids"},
}
READ_ONLY = {"hs_object_id", "hs_lastmodifieddate", "lastmodifieddate", "hs_createdate", "hs_is_closed",
             "hs_is_closed_won", "hs_deal_stage_probability"}
# Association types between the objects imitated: (name, typeId, label) per direction, as v3 and v4 report them.
# A deal's company has two: the primary one and the unlabeled one, so it is listed twice.
ASSOCIATIONS = {
    ("deals", "companies"): (("deal_to_company", 5, "Primary"), ("deal_to_company_unlabeled", 341, None)),
    ("companies", "deals"): (("company_to_deal", 6, "Primary"), ("company_to_deal_unlabeled", 342, None)),
    ("deals", "contacts"): (("deal_to_contact", 3, None),),
    ("contacts", "deals"): (("contact_to_deal", 4, None),),
    ("deals", "notes"): (("deal_to_note", 213, None),),
    ("notes", "deals"): (("note_to_deal", 214, None),),
    ("contacts", "notes"): (("contact_to_note", 201, None),),
    ("notes", "contacts"): (("note_to_contact", 202, None),),
    ("companies", "notes"): (("company_to_note", 189, None),),
    ("notes", "companies"): (("note_to_company", 190, None),),
}
# The association a new note may ask for, by HUBSPOT_DEFINED type id: the object type it points at.
NOTE_ASSOCIATION_TARGETS = {214: "deals", 202: "contacts", 190: "companies"}

bp = Blueprint("hubspot", __name__, url_prefix=PREFIX.rstrip("/"))


# --- errors ---------------------------------------------------------------------------------------------------


class HubSpotError(Exception):
    """A failure answered with HubSpot's error envelope."""

    def __init__(self, status: int, message: str, category: str, **extra: object) -> None:
        """Keep what the envelope needs; `extra` adds fields such as `context`."""
        super().__init__(message)
        self.status, self.message, self.category, self.extra = status, message, category, extra

    def response(self) -> Response:
        """The envelope as a response."""
        response = jsonify({"status": "error", "message": self.message, "correlationId": str(uuid.uuid4()),
                            "category": self.category, **self.extra})
        response.status_code = self.status
        return response


def not_found() -> HubSpotError:
    """What HubSpot answers for an object, owner, property or group that does not exist."""
    return HubSpotError(404, "resource not found", "OBJECT_NOT_FOUND")


def invalid_json(detail: str) -> HubSpotError:
    """A body HubSpot's JSON binding rejects."""
    return HubSpotError(400, f"Invalid input JSON on line 1, column 1: {detail}", "VALIDATION_ERROR")


def invalid_properties(errors: list[dict]) -> HubSpotError:
    """Property values HubSpot refuses, listed inside the message as compact JSON (as the real API does)."""
    listed = json.dumps(errors, separators=(",", ":"))
    return HubSpotError(400, f"Property values were not valid: {listed}", "VALIDATION_ERROR")


def property_error(name: str, error: str, message: str) -> dict:
    """One entry of a "Property values were not valid" list."""
    return {"isValid": False, "message": message, "error": error, "name": name}


def rate_limited(limit: int, retry_after: int | None = None) -> Response:
    """The ten-secondly limit's 429: HubSpot's body and headers, no Retry-After unless a fault sets one."""
    response = jsonify({"status": "error", "message": RATE_LIMIT_MESSAGE, "errorType": "RATE_LIMIT",
                        "correlationId": str(uuid.uuid4()), "policyName": "TEN_SECONDLY_ROLLING",
                        "requestId": str(uuid.uuid4())})
    response.status_code = 429
    response.headers.update(_rate_headers(limit, 0))
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def canned(status: int, retry_after: int | None) -> Response:
    """A fault rule's failure for target "hubspot", in HubSpot's envelope."""
    if status == 429:
        return rate_limited(state().limiter.limit or DEFAULT_MAX_PER_10S, retry_after)
    if status == 401:
        response = HubSpotError(401, AUTH_MESSAGE, "INVALID_AUTHENTICATION").response()
    else:
        response = HubSpotError(status, HTTPStatus(status).phrase, CATEGORIES.get(status, "INTERNAL_ERROR")).response()
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _rate_headers(limit: int, remaining: int) -> dict[str, str]:
    """The burst-limit headers HubSpot sends with every authenticated answer."""
    return {"X-HubSpot-RateLimit-Max": str(limit), "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(WINDOW_SECONDS * 1000)}


# --- state ----------------------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    """HubSpot's timestamp format: UTC, milliseconds, Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> str:
    """The current time in HubSpot's format."""
    return _iso(datetime.now(UTC))


@dataclass
class CrmObject:
    """A deal, company, contact or note: its id and its property values (strings, or None when cleared)."""

    id: str
    object_type: str
    properties: dict[str, str | None]
    created_at: str
    updated_at: str


@dataclass
class Owner:
    """A HubSpot user who can own records; `id` is what hubspot_owner_id holds, `user_id` is another number."""

    id: str
    email: str
    first_name: str
    last_name: str
    user_id: int
    created_at: str

    def to_json(self) -> dict:
        """The owner as GET /crm/v3/owners/{id} shows it."""
        return {"id": self.id, "email": self.email, "firstName": self.first_name, "lastName": self.last_name,
                "userId": self.user_id, "userIdIncludingInactive": self.user_id, "type": "PERSON", "teams": [],
                "createdAt": self.created_at, "updatedAt": self.created_at, "archived": False}


@dataclass
class Property:
    """A deal property definition."""

    name: str
    label: str
    type: str
    field_type: str
    group_name: str = DEFAULT_GROUP
    description: str = ""
    hubspot_defined: bool = False
    calculated: bool = False
    display_order: int = -1
    has_unique_value: bool = False
    hidden: bool = False
    options: list = field(default_factory=list)
    created_at: str = field(default_factory=_now)

    def to_json(self) -> dict:
        """The property as the properties API shows it."""
        body = {"updatedAt": self.created_at, "createdAt": self.created_at, "name": self.name, "label": self.label,
                "type": self.type, "fieldType": self.field_type, "description": self.description,
                "groupName": self.group_name, "options": self.options, "displayOrder": self.display_order,
                "calculated": self.calculated, "externalOptions": False, "hasUniqueValue": self.has_unique_value,
                "hidden": self.hidden,
                "modificationMetadata": {"archivable": not self.hubspot_defined,
                                         "readOnlyDefinition": self.hubspot_defined,
                                         "readOnlyValue": self.name in READ_ONLY},
                "formField": False, "archived": False}
        if self.hubspot_defined:
            body["hubspotDefined"] = True
        return body


@dataclass
class Group:
    """A property group."""

    name: str
    label: str
    display_order: int = -1

    def to_json(self) -> dict:
        """The group as the property groups API shows it."""
        return {"name": self.name, "label": self.label, "displayOrder": self.display_order, "archived": False}


@dataclass(frozen=True)
class Edge:
    """One association, stored once and read from both ends; `label` is a USER_DEFINED label, if any."""

    from_type: str
    from_id: str
    to_type: str
    to_id: str
    label: str | None = None


def _builtin_deal_properties() -> dict[str, Property]:
    """The HubSpot-defined deal properties a client may read (and, unless read-only, write)."""
    builtins = [
        Property("dealname", "Deal Name", "string", "text", hubspot_defined=True),
        Property("dealstage", "Deal Stage", "enumeration", "radio", hubspot_defined=True),
        Property("pipeline", "Pipeline", "enumeration", "select", hubspot_defined=True),
        Property("amount", "Amount", "number", "number", hubspot_defined=True),
        Property("hubspot_owner_id", "Deal owner", "enumeration", "select", hubspot_defined=True),
        Property("closedate", "Close Date", "datetime", "date", hubspot_defined=True),
        Property("createdate", "Create Date", "datetime", "date", hubspot_defined=True),
        Property("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", hubspot_defined=True),
        Property("hs_object_id", "Record ID", "number", "number", hubspot_defined=True),
        Property("hs_is_closed", "Is Deal Closed?", "bool", "booleancheckbox", hubspot_defined=True,
                 calculated=True),
        Property("hs_is_closed_won", "Is Closed Won", "bool", "booleancheckbox", hubspot_defined=True,
                 calculated=True),
        Property("hs_deal_stage_probability", "Deal probability", "number", "number", hubspot_defined=True,
                 calculated=True),
    ]
    return {prop.name: prop for prop in builtins}


def _stage(stage_id: str, label: str, order: int, probability: str, closed: bool, created: str) -> dict:
    """A pipeline stage as the pipelines API shows it; metadata values are strings."""
    return {"id": stage_id, "label": label, "displayOrder": order,
            "metadata": {"isClosed": "true" if closed else "false", "probability": probability},
            "archived": False, "createdAt": created, "updatedAt": created, "writePermissions": "CRUD_ALL"}


def _seed_pipelines() -> list[dict]:
    """The default Sales Pipeline (named stage ids) and one custom pipeline (numeric-string ids)."""
    created = "2024-01-15T09:30:00.000Z"
    default = [("appointmentscheduled", "Appointment Scheduled", "0.2", False),
               ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
               ("presentationscheduled", "Presentation Scheduled", "0.6", False),
               ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
               ("contractsent", "Contract Sent", "0.9", False),
               ("closedwon", "Closed Won", "1.0", True),
               ("closedlost", "Closed Lost", "0.0", True)]
    custom = [(CUSTOM_OPEN_STAGE, "Negotiation", "0.5", False), (CUSTOM_WON_STAGE, "Signed", "1.0", True),
              (CUSTOM_LOST_STAGE, "Dropped", "0.0", True)]
    return [
        {"label": "Sales Pipeline", "displayOrder": 0, "id": DEFAULT_PIPELINE_ID,
         "stages": [_stage(*stage, created) for stage in _ordered(default)],
         "createdAt": created, "updatedAt": created, "archived": False},
        {"label": "Enterprise", "displayOrder": 1, "id": CUSTOM_PIPELINE_ID,
         "stages": [_stage(*stage, created) for stage in _ordered(custom)],
         "createdAt": created, "updatedAt": created, "archived": False},
    ]


def _ordered(stages: list[tuple[str, str, str, bool]]) -> list[tuple[str, str, int, str, bool]]:
    """Stage tuples with their display order inserted."""
    return [(stage_id, label, order, probability, closed)
            for order, (stage_id, label, probability, closed) in enumerate(stages)]


def _coerce(name: str, value: object) -> str | None:
    """A property value as HubSpot stores it: a string (numbers and booleans converted), or None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # Property values bind to Map<String, String>: an object or array fails binding of the whole body.
    raise invalid_json(f"Cannot deserialize value of type `java.lang.String` from {type(value).__name__} "
                       f"value (property {name!r})")


def _timestamp(value: str) -> str | None:
    """hs_timestamp as HubSpot keeps it (ISO, UTC) from epoch milliseconds or an ISO string; None if neither."""
    if value.isdigit():
        return _iso(datetime.fromtimestamp(int(value) / 1000, UTC))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return _iso(moment.astimezone(UTC))


class HubSpotState:
    """One HubSpot portal in memory; callers hold `lock` around reads and changes."""

    def __init__(self) -> None:
        """A portal with the seed data and the default burst limit."""
        self.lock = threading.RLock()
        self.limiter = faults.RollingWindow(WINDOW_SECONDS, DEFAULT_MAX_PER_10S)
        self.reset()

    def reset(self) -> None:
        """Back to the seed: two pipelines, the built-in deal properties, one group, no records or owners."""
        with self.lock:
            self.objects: dict[str, dict[str, CrmObject]] = {object_type: {} for object_type in OBJECT_TYPES}
            self.owners: dict[str, Owner] = {}
            self.edges: list[Edge] = []
            self.labels: dict[str, int] = {}
            self.pipelines = _seed_pipelines()
            self.properties = _builtin_deal_properties()
            self.groups = {DEFAULT_GROUP: Group(DEFAULT_GROUP, "Deal information", 0)}
            self._ids = {object_type: itertools.count(first) for object_type, first in FIRST_IDS.items()}
            self._owner_ids = itertools.count(41000001)
            self._user_ids = itertools.count(9000001)
            self.limiter.configure(DEFAULT_MAX_PER_10S)
            self.limiter.clear()

    # -- records --

    def get(self, object_type: str, object_id: str) -> CrmObject:
        """A record, or HubSpot's 404."""
        found = self.objects[object_type].get(object_id)
        if found is None:
            raise not_found()
        return found

    def create(self, object_type: str, properties: dict[str, str | None]) -> CrmObject:
        """A new record with its automatic properties."""
        object_id, now = str(next(self._ids[object_type])), _now()
        created, modified, _ = ALWAYS[object_type]
        values = {**properties, created: properties.get(created) or now, modified: now, "hs_object_id": object_id}
        record = CrmObject(object_id, object_type, values, now, now)
        self.objects[object_type][object_id] = record
        return record

    def values(self, record: CrmObject) -> dict[str, str | None]:
        """Every property value of a record, the calculated deal ones included."""
        values = dict(record.properties)
        if record.object_type == "deals":
            stage = self.stage(values.get("pipeline"), values.get("dealstage"))
            if stage is not None:
                probability = float(stage["metadata"]["probability"])
                closed = stage["metadata"]["isClosed"] == "true"
                values["hs_deal_stage_probability"] = f"{probability:g}"
                values["hs_is_closed"] = "true" if closed else "false"
                values["hs_is_closed_won"] = "true" if closed and probability == 1.0 else "false"
        return values

    def defined(self, object_type: str) -> set[str]:
        """The property names a record of this type may carry."""
        if object_type == "deals":
            return set(self.properties)
        return FIXED_PROPERTIES[object_type] | set(ALWAYS[object_type])

    def validate(self, record: CrmObject | None, object_type: str, changes: dict[str, str | None]) -> list[dict]:
        """Why HubSpot would refuse these property values (an empty list: it would not)."""
        errors = []
        defined = self.defined(object_type)
        for name, value in changes.items():
            if name not in defined:
                errors.append(property_error(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            elif name in READ_ONLY:
                errors.append(property_error(name, "READ_ONLY_VALUE",
                                             f'"{name}" is a read only property; its value cannot be set.'))
            elif name == "hs_timestamp" and (value is None or _timestamp(value) is None):
                errors.append(property_error(name, "INVALID_DATE", f"{value} is not a valid timestamp"))
            elif name == "hs_note_body" and value is not None and len(value) > NOTE_BODY_MAX:
                errors.append(property_error(name, "INVALID_STRING",
                                             f"Value exceeds the maximum length of {NOTE_BODY_MAX} characters"))
            elif name == "hubspot_owner_id" and value and value not in self.owners:
                errors.append(property_error(name, "INVALID_OWNER_ID", f"{value} is not a valid owner id"))
        if object_type == "deals" and ("pipeline" in changes or "dealstage" in changes):
            current = record.properties if record is not None else {}
            pipeline_id = changes.get("pipeline", current.get("pipeline"))
            stage_id = changes.get("dealstage", current.get("dealstage"))
            pipeline = self.pipeline(pipeline_id)
            if pipeline is None:
                errors.append(property_error("pipeline", "INVALID_OPTION",
                                             f"{pipeline_id} was not one of the allowed options: "
                                             f"[{', '.join(p['id'] for p in self.pipelines)}]"))
            elif self.stage(pipeline_id, stage_id) is None:
                errors.append(property_error("dealstage", "INVALID_OPTION",
                                             f"{stage_id} was not one of the allowed options: "
                                             f"[{', '.join(s['id'] for s in pipeline['stages'])}]"))
        return errors

    def update(self, record: CrmObject, changes: dict[str, str | None]) -> None:
        """Apply validated property values; a deal entering a closed stage gets its close date."""
        was_closed = self.values(record).get("hs_is_closed") == "true"
        if "hs_timestamp" in changes and changes["hs_timestamp"] is not None:
            changes = {**changes, "hs_timestamp": _timestamp(changes["hs_timestamp"])}
        record.properties.update(changes)
        now = _now()
        if record.object_type == "deals" and not was_closed and "closedate" not in changes \
                and self.values(record).get("hs_is_closed") == "true":
            record.properties["closedate"] = now
        record.properties[ALWAYS[record.object_type][1]] = now
        record.updated_at = now

    # -- pipelines --

    def pipeline(self, pipeline_id: str | None) -> dict | None:
        """A deal pipeline by id."""
        return next((p for p in self.pipelines if p["id"] == pipeline_id), None)

    def stage(self, pipeline_id: str | None, stage_id: str | None) -> dict | None:
        """A stage of a pipeline, by id."""
        pipeline = self.pipeline(pipeline_id)
        if pipeline is None:
            return None
        return next((s for s in pipeline["stages"] if s["id"] == stage_id), None)

    # -- associations --

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, label: str | None = None) -> None:
        """Link two records (again linking the same pair with the same label changes nothing)."""
        edge = Edge(from_type, from_id, to_type, to_id, label)
        if edge not in self.edges:
            self.edges.append(edge)
        if label is not None:
            self.label_type_id(label)

    def associated(self, object_type: str, object_id: str, to_type: str) -> dict[str, list[tuple[str, bool]]]:
        """The ids of `to_type` records linked to a record, in link order, each with its labels.

        A label comes with True when the link was made from this record's side (the label's own type id applies)
        and False when made from the other side (the reverse type id applies).
        """
        found: dict[str, list[tuple[str, bool]]] = {}
        for edge in self.edges:
            if (edge.from_type, edge.from_id, edge.to_type) == (object_type, object_id, to_type):
                other, forward = edge.to_id, True
            elif (edge.to_type, edge.to_id, edge.from_type) == (object_type, object_id, to_type):
                other, forward = edge.from_id, False
            else:
                continue
            labels = found.setdefault(other, [])
            if edge.label is not None and (edge.label, forward) not in labels:
                labels.append((edge.label, forward))
        return found

    def label_type_id(self, label: str) -> int:
        """The USER_DEFINED type id of a label (the reverse direction is the next number).

        Odd numbers from 1: a client that reads typeIds without their category will mistake the second label for
        HUBSPOT_DEFINED 3 (deal_to_contact), as it could on a real portal.
        """
        if label not in self.labels:
            self.labels[label] = 2 * len(self.labels) + 1
        return self.labels[label]

    # -- seeding from the control API --

    def add_owner(self, body: dict) -> Owner:
        """A new owner from {email, firstName, lastName}; ValueError when malformed."""
        _only(body, {"email", "firstName", "lastName"})
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise ValueError("email is required")
        owner = Owner(str(next(self._owner_ids)), email, str(body.get("firstName") or ""),
                      str(body.get("lastName") or ""), next(self._user_ids), _now())
        self.owners[owner.id] = owner
        return owner

    def seed_deal(self, body: dict) -> dict:
        """A deal (with its company and contacts, reused by name or email); ValueError when malformed."""
        _only(body, {"dealname", "dealstage", "pipeline", "hubspot_owner_id", "amount", "closedate", "company",
                     "contacts", "properties"})
        dealname = body.get("dealname")
        if not isinstance(dealname, str) or not dealname.strip():
            raise ValueError("dealname is required")
        pipeline_id = body.get("pipeline", DEFAULT_PIPELINE_ID)
        pipeline = self.pipeline(pipeline_id)
        if pipeline is None:
            raise ValueError(f"no pipeline {pipeline_id!r}")
        stage_id = body.get("dealstage", pipeline["stages"][0]["id"])
        if self.stage(pipeline_id, stage_id) is None:
            raise ValueError(f"no stage {stage_id!r} in pipeline {pipeline_id!r}")
        extra = body.get("properties", {})
        if not isinstance(extra, dict):
            raise ValueError("properties must be an object")
        unknown = sorted(set(extra) - set(self.properties) | set(extra) & READ_ONLY)
        if unknown:
            raise ValueError(f"undefined or read-only deal properties: {unknown}")
        properties = {"dealname": dealname, "pipeline": pipeline_id, "dealstage": stage_id}
        for name in ("hubspot_owner_id", "amount", "closedate"):
            if body.get(name) is not None:  # an owner id need not exist: tests of a missing owner seed one
                properties[name] = _coerce(name, body[name])
        properties.update({name: _coerce(name, value) for name, value in extra.items()})
        company_id = self._seed_company(body["company"]) if body.get("company") is not None else None
        contacts = body.get("contacts") or []
        if not isinstance(contacts, list):
            raise ValueError("contacts must be a list")
        contact_ids = [self._seed_contact(contact) for contact in contacts]
        deal = self.create("deals", properties)
        if self.values(deal).get("hs_is_closed") == "true" and "closedate" not in properties:
            deal.properties["closedate"] = deal.created_at
        if company_id is not None:
            self.associate("deals", deal.id, "companies", company_id)
        for contact_id, contact in zip(contact_ids, contacts, strict=True):
            self.associate("deals", deal.id, "contacts", contact_id)
            if contact.get("label"):
                self.associate("deals", deal.id, "contacts", contact_id, str(contact["label"]))
        return {"id": deal.id, "company_id": company_id, "contact_ids": contact_ids}

    def _seed_company(self, company: object) -> str:
        """The id of the company with this name, created if new."""
        if not isinstance(company, dict) or not isinstance(company.get("name"), str) or not company["name"]:
            raise ValueError("company must be {name, domain?}")
        _only(company, {"name", "domain"})
        for record in self.objects["companies"].values():
            if (record.properties.get("name") or "").lower() == company["name"].lower():
                return record.id
        properties = {"name": company["name"]}
        if company.get("domain"):
            properties["domain"] = str(company["domain"])
        return self.create("companies", properties).id

    def _seed_contact(self, contact: object) -> str:
        """The id of the contact with this email, created if new."""
        if not isinstance(contact, dict) or not isinstance(contact.get("email"), str) or "@" not in contact["email"]:
            raise ValueError("each contact must be {email, firstname?, lastname?, label?}")
        _only(contact, {"email", "firstname", "lastname", "label"})
        for record in self.objects["contacts"].values():
            if (record.properties.get("email") or "").lower() == contact["email"].lower():
                return record.id
        properties = {name: str(contact[name]) for name in ("email", "firstname", "lastname") if contact.get(name)}
        return self.create("contacts", properties).id

    def configure(self, changes: dict) -> dict:
        """Change max_per_10s (an integer >= 1, or null for no limit); ValueError when malformed."""
        _only(changes, {"max_per_10s"})
        if "max_per_10s" in changes:
            limit = changes["max_per_10s"]
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
                raise ValueError("max_per_10s must be null or an integer >= 1")
            self.limiter.configure(limit)
        return self.config()

    def config(self) -> dict:
        """The settings the control API may change."""
        return {"max_per_10s": self.limiter.limit}

    def snapshot(self, calls: list[dict]) -> dict:
        """What the control API's state shows: deals with all properties and notes, custom properties, calls."""
        deals = []
        for deal in self.objects["deals"].values():
            notes = [self.objects["notes"][note_id] for note_id in self.associated("deals", deal.id, "notes")]
            deals.append({"id": deal.id, "properties": dict(sorted(self.values(deal).items())),
                          "notes": [{"id": note.id, "body": note.properties.get("hs_note_body"),
                                     "timestamp": note.properties.get("hs_timestamp")} for note in notes]})
        return {"portal_id": PORTAL_ID, "config": self.config(), "deals": deals,
                "properties": [prop.name for prop in self.properties.values() if not prop.hubspot_defined],
                "groups": list(self.groups), "owners": [owner.to_json() for owner in self.owners.values()],
                "calls": calls}


def _only(body: dict, allowed: set[str]) -> None:
    """Refuse a control body with fields the control API does not know (a typo would otherwise pass silently)."""
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")


# --- app wiring -----------------------------------------------------------------------------------------------


def init_app(app: Flask, token: str) -> None:
    """Attach the portal, its call log and the accepted token; register the blueprint and its fault envelope."""
    app.extensions["sandbox.hubspot"] = HubSpotState()
    app.extensions["sandbox.hubspot.calls"] = CallLog()
    app.extensions["sandbox.hubspot.token"] = token
    faults.register_envelope(app, "hubspot", canned)
    app.register_blueprint(bp)


def state() -> HubSpotState:
    """The current app's HubSpot portal."""
    return current_app.extensions["sandbox.hubspot"]


def calls() -> CallLog:
    """The current app's HubSpot call log."""
    return current_app.extensions["sandbox.hubspot.calls"]


# --- request pipeline: record, faults, burst limit, authenticate ----------------------------------------------


@bp.before_request
def open_call() -> Response | None:
    """Record the call, apply latency and hubspot faults, then the ten-secondly limit, then check the token."""
    path = request.path.removeprefix(PREFIX)
    g.hubspot_call = calls().start(request.method, _route(path), path, request.query_string.decode(),
                                   request.get_json(force=True, silent=True))
    response = faults.before("hubspot", path, limited=False)
    if response is not None:
        return response
    quota = state().limiter.hit()
    if quota is not None and not quota.allowed:
        return rate_limited(quota.limit)
    if request.headers.get("Authorization") != f"Bearer {current_app.extensions['sandbox.hubspot.token']}":
        raise HubSpotError(401, AUTH_MESSAGE, "INVALID_AUTHENTICATION")
    g.hubspot_quota = quota
    return None


@bp.after_request
def close_call(response: Response) -> Response:
    """Add the burst-limit headers to authenticated answers, apply an after_* fault, record the status."""
    quota = g.pop("hubspot_quota", None)
    if quota is not None:
        response.headers.update(_rate_headers(quota.limit, quota.remaining))
    response = faults.after(response)
    dropped = isinstance(response, faults.DroppedResponse)
    calls().finish(g.hubspot_call, None if dropped else response.status_code)
    return response


@bp.errorhandler(HubSpotError)
def render_error(error: HubSpotError) -> Response:
    """HubSpot's error envelope."""
    return error.response()


def _route(path: str) -> str:
    """The matched route as a template with the object types filled in (crm/v3/objects/deals/{object_id});
    the path itself if unknown."""
    rule = request.url_rule
    if rule is None or rule.endpoint == "hubspot.unknown_route":
        return path
    template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(PREFIX))
    # Tests ask "was this deal patched?", so the object type is part of the route, not a placeholder.
    for name in ("object_type", "to_type"):
        if request.view_args and name in request.view_args:
            template = template.replace(f"{{{name}}}", request.view_args[name])
    return template


def _json_body() -> dict:
    """The JSON object body; HubSpot refuses anything else before looking at it."""
    if request.mimetype != "application/json":
        raise HubSpotError(415, "HTTP 415 Unsupported Media Type", "VALIDATION_ERROR")
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError as exc:
        raise invalid_json(f"Unexpected character: {exc}") from None
    if not isinstance(body, dict):
        raise invalid_json("Cannot deserialize value: expected a JSON object")
    return body


def _listed(name: str) -> list[str]:
    """A list query parameter, given repeated or comma-separated (HubSpot accepts both)."""
    return [item.strip() for value in request.args.getlist(name) for item in value.split(",") if item.strip()]


def _object_type(object_type: str) -> str:
    """A supported object type from the path, or HubSpot's refusal."""
    if object_type not in OBJECT_TYPES:
        raise HubSpotError(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
    return object_type


def _object_json(record: CrmObject, names: list[str] | None, association_types: Sequence[str] = ()) -> dict:
    """A record as v3 shows it: the asked-for properties (null when empty) plus the automatic ones, sorted."""
    portal = state()
    values = portal.values(record)
    wanted = set(ALWAYS[record.object_type])
    if names is None:
        wanted |= set(DEFAULTS[record.object_type])
    else:  # unknown names are ignored, as HubSpot does
        wanted |= set(names) & portal.defined(record.object_type)
    body = {"id": record.id, "properties": {name: values.get(name) for name in sorted(wanted)},
            "createdAt": record.created_at, "updatedAt": record.updated_at, "archived": False}
    associations = {}
    for to_type in dict.fromkeys(association_types):
        kinds = ASSOCIATIONS.get((record.object_type, to_type))
        if kinds is None:
            continue  # unknown association types are ignored too
        results = [{"id": other_id, "type": name}
                   for other_id in portal.associated(record.object_type, record.id, to_type)
                   for name, _, _ in kinds]
        if results:  # HubSpot leaves out association types with no results
            associations[to_type] = {"results": results}
    if associations:
        body["associations"] = associations
    return body


# --- account and pipelines ------------------------------------------------------------------------------------


@bp.get("/account-info/v3/details")
def account_details() -> Response:
    """The portal the token belongs to."""
    return jsonify({"portalId": PORTAL_ID, "accountType": "STANDARD", "timeZone": "US/Eastern",
                    "companyCurrency": "USD", "additionalCurrencies": [], "utcOffset": "-05:00",
                    "utcOffsetMilliseconds": -18000000, "uiDomain": "app.hubspot.com", "dataHostingLocation": "na1"})


@bp.get("/crm/v3/pipelines/deals")
def list_pipelines() -> Response:
    """Every deal pipeline with its stages (not paged, as HubSpot does for pipelines)."""
    with state().lock:
        return jsonify({"results": state().pipelines})


@bp.get("/crm/v3/pipelines/deals/<pipeline_id>")
def get_pipeline(pipeline_id: str) -> Response:
    """One deal pipeline."""
    with state().lock:
        pipeline = state().pipeline(pipeline_id)
        if pipeline is None:
            raise not_found()
        return jsonify(pipeline)


# --- records --------------------------------------------------------------------------------------------------


@bp.get("/crm/v3/objects/<object_type>/<object_id>")
def get_object(object_type: str, object_id: str) -> Response:
    """A deal, company, contact or note with ?properties= and ?associations=."""
    portal = state()
    with portal.lock:
        record = portal.get(_object_type(object_type), object_id)
        names = _listed("properties") if "properties" in request.args else None
        return jsonify(_object_json(record, names, _listed("associations")))


@bp.patch("/crm/v3/objects/<object_type>/<object_id>")
def update_object(object_type: str, object_id: str) -> Response:
    """Change property values; every one must be defined and writable, or nothing changes."""
    portal = state()
    body = _json_body()
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise invalid_json("Cannot build SimplePublicObjectInput, some of required attributes are not set "
                           "[properties]")
    changes = {name: _coerce(name, value) for name, value in properties.items()}
    with portal.lock:
        record = portal.get(_object_type(object_type), object_id)
        errors = portal.validate(record, object_type, changes)
        if errors:
            raise invalid_properties(errors)
        portal.update(record, changes)
        return jsonify(_object_json(record, list(changes)))


@bp.post("/crm/v3/objects/notes")
def create_note() -> tuple[Response, int]:
    """A note with hs_timestamp, associated with the deals, contacts or companies it names."""
    portal = state()
    body = _json_body()
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise invalid_json("Cannot build SimplePublicObjectInputForCreate, some of required attributes are not "
                           "set [properties]")
    changes = {name: _coerce(name, value) for name, value in properties.items()}
    associations = body.get("associations") or []
    if not isinstance(associations, list):
        raise invalid_json("associations must be an array")
    with portal.lock:
        errors = portal.validate(None, "notes", changes)
        if "hs_timestamp" not in changes:
            errors.append(property_error("hs_timestamp", "REQUIRED_PROPERTY",
                                         'Property "hs_timestamp" is required'))
        if errors:
            raise invalid_properties(errors)
        targets = [_note_target(association) for association in associations]
        note = portal.create("notes", {})
        portal.update(note, changes)
        for to_type, to_id in targets:
            portal.associate("notes", note.id, to_type, to_id)
        return jsonify(_object_json(note, list(changes))), 201


def _note_target(association: object) -> tuple[str, str]:
    """The (object type, id) a note association points at; HubSpot's 400 when malformed, unknown or missing."""
    if not isinstance(association, dict) or not isinstance(association.get("to"), dict) \
            or not isinstance(association.get("types"), list) or not association["types"]:
        raise invalid_json("Cannot build PublicAssociationsForObject, some of required attributes are not set "
                           "[to, types]")
    to_id = str(association["to"].get("id", ""))
    target_types = set()
    for kind in association["types"]:
        if not isinstance(kind, dict):
            raise invalid_json("Cannot build AssociationSpec, some of required attributes are not set")
        category, type_id = kind.get("associationCategory"), kind.get("associationTypeId")
        target = NOTE_ASSOCIATION_TARGETS.get(type_id) if category == "HUBSPOT_DEFINED" else None
        if target is None:
            raise HubSpotError(400, f"{category} {type_id} is not a valid association type from notes",
                               "VALIDATION_ERROR")
        target_types.add(target)
    if len(target_types) != 1:
        raise HubSpotError(400, "association types of one association point at different object types",
                           "VALIDATION_ERROR")
    to_type = target_types.pop()
    if to_id not in state().objects[to_type]:
        raise HubSpotError(400, f"One or more associations are invalid: no {to_type} record with id {to_id}",
                           "VALIDATION_ERROR", context={"ids": [to_id]})
    return to_type, to_id


@bp.get("/crm/v4/objects/<object_type>/<object_id>/associations/<to_type>")
def list_associations(object_type: str, object_id: str, to_type: str) -> Response:
    """The v4 associations of a record: integer ids, every type with its category and label."""
    portal = state()
    with portal.lock:
        record = portal.get(_object_type(object_type), object_id)
        kinds = ASSOCIATIONS.get((object_type, _object_type(to_type)), ())
        results = []
        for other_id, labels in portal.associated(object_type, record.id, to_type).items():
            types = [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": label}
                     for _, type_id, label in kinds]
            types += [{"category": "USER_DEFINED", "typeId": portal.label_type_id(label) + (0 if forward else 1),
                       "label": label} for label, forward in labels]
            results.append({"toObjectId": int(other_id), "associationTypes": types})
        return jsonify({"results": results})


@bp.get("/crm/v3/owners/<owner_id>")
def get_owner(owner_id: str) -> Response:
    """An owner by id (or by userId with ?idProperty=userId)."""
    portal = state()
    with portal.lock:
        if request.args.get("idProperty", "id") == "userId":
            owner = next((o for o in portal.owners.values() if str(o.user_id) == owner_id), None)
        else:
            owner = portal.owners.get(owner_id)
        if owner is None:
            raise not_found()
        return jsonify(owner.to_json())


# --- deal properties and groups -------------------------------------------------------------------------------


@bp.get("/crm/v3/properties/deals")
def list_properties() -> Response:
    """Every deal property."""
    with state().lock:
        return jsonify({"results": [prop.to_json() for prop in state().properties.values()]})


@bp.get("/crm/v3/properties/deals/<name>")
def get_property(name: str) -> Response:
    """One deal property."""
    with state().lock:
        prop = state().properties.get(name)
        if prop is None:
            raise not_found()
        return jsonify(prop.to_json())


@bp.post("/crm/v3/properties/deals")
def create_property() -> tuple[Response, int]:
    """A custom deal property; name, label, type, fieldType and an existing groupName are required."""
    body = _json_body()
    _require(body, ("name", "label", "type", "fieldType", "groupName"), "PropertyCreate")
    _enum(body["type"], PROPERTY_TYPES, "PropertyType")
    _enum(body["fieldType"], FIELD_TYPES, "FieldType")
    name = body["name"]
    if not NAME_PATTERN.fullmatch(name):
        raise HubSpotError(400, f"Property name '{name}' is invalid: use lowercase letters, digits and "
                                "underscores, starting with a letter", "VALIDATION_ERROR")
    portal = state()
    with portal.lock:
        if name in portal.properties:
            raise HubSpotError(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        if body["groupName"] not in portal.groups:
            raise HubSpotError(400, f"Property group '{body['groupName']}' does not exist.", "VALIDATION_ERROR")
        prop = Property(name, body["label"], body["type"], body["fieldType"], body["groupName"],
                        str(body.get("description") or ""), display_order=_int(body, "displayOrder", -1),
                        has_unique_value=bool(body.get("hasUniqueValue")), hidden=bool(body.get("hidden")),
                        options=list(body.get("options") or []))
        portal.properties[name] = prop
        return jsonify(prop.to_json()), 201


@bp.get("/crm/v3/properties/deals/groups")
def list_groups() -> Response:
    """Every deal property group."""
    with state().lock:
        return jsonify({"results": [group.to_json() for group in state().groups.values()]})


@bp.get("/crm/v3/properties/deals/groups/<name>")
def get_group(name: str) -> Response:
    """One deal property group."""
    with state().lock:
        group = state().groups.get(name)
        if group is None:
            raise not_found()
        return jsonify(group.to_json())


@bp.post("/crm/v3/properties/deals/groups")
def create_group() -> tuple[Response, int]:
    """A deal property group from {name, label, displayOrder?}."""
    body = _json_body()
    _require(body, ("name", "label"), "PropertyGroupCreate")
    name = body["name"]
    if not NAME_PATTERN.fullmatch(name):
        raise HubSpotError(400, f"Property group name '{name}' is invalid", "VALIDATION_ERROR")
    portal = state()
    with portal.lock:
        if name in portal.groups:
            raise HubSpotError(409, f"Property group named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        group = Group(name, body["label"], _int(body, "displayOrder", -1))
        portal.groups[name] = group
        return jsonify(group.to_json()), 201


def _require(body: dict, names: tuple[str, ...], model: str) -> None:
    """HubSpot's binding error when required string fields are missing or empty."""
    missing = [name for name in names if not isinstance(body.get(name), str) or not body[name]]
    if missing:
        raise invalid_json(f"Cannot build {model}, some of required attributes are not set [{', '.join(missing)}]")


def _enum(value: str, allowed: tuple[str, ...], enum: str) -> None:
    """HubSpot's binding error for a value outside an enum."""
    if value not in allowed:
        raise invalid_json(f'Cannot deserialize value of type `{enum}` from String "{value}": not one of the '
                           f"values accepted for Enum class: [{', '.join(allowed)}]")


def _int(body: dict, name: str, default: int) -> int:
    """An optional integer field."""
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_json(f"{name} must be an integer")
    return value


@bp.route("/<path:unknown>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown_route(unknown: str) -> Response:
    """Any other path (the sandbox imitates only what the adapters use)."""
    raise HubSpotError(404, f"sandbox: no HubSpot route for {request.method} {unknown}", "OBJECT_NOT_FOUND")

"""Pipedrive's enrichment steps (its ids -> a client and an owner) and its write-back onto the deal.

Enrichment reads the deal (v2: title, owner, person, organization), then in parallel the client (the
organization's name, else the person's; the person's primary e-mail) and the owner's e-mail (v1 users). A deal
whose person has no e-mail fails with that reason, and a retry after the CRM is fixed picks it up.

The write-back sets the deal's custom fields named "DocSpace room ID" and "DocSpace room link" (made by `flask
--app wsgi pipedrive setup`; their keys are per-company 40-character hashes, found by name and cached) and adds
a note with the room's link, looked for on the deal first on a retry (notes have no idempotency key).
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING

from onboarding.crm.pipedrive.api import PipedriveApi
from onboarding.domain import CLIENT_STEP, OWNER_STEP, Room
from onboarding.errors import PermanentError
from onboarding.steps import RunContext, Step

if TYPE_CHECKING:
    from onboarding.queue import Work

DEAL_STEP = "pipedrive:deal"
ROOM_ID_FIELD = "DocSpace room ID"
ROOM_LINK_FIELD = "DocSpace room link"
FIELDS = (ROOM_ID_FIELD, ROOM_LINK_FIELD)
FIELD_TYPE = "varchar"
SETUP_COMMAND = "flask --app wsgi pipedrive setup"


def enrichment(api: PipedriveApi) -> tuple[Step, ...]:
    """The steps that find a Pipedrive deal's client and owner."""

    def read_deal(ctx: RunContext) -> dict:
        """The deal's title, owner, person and organization."""
        deal = api.deal(ctx.work.deal.deal_id)
        return {"title": deal.get("title"), "owner_id": deal.get("owner_id"), "person_id": deal.get("person_id"),
                "org_id": deal.get("org_id")}

    def find_client(ctx: RunContext) -> dict:
        """The client: the organization's name (else the person's) and the person's primary e-mail."""
        deal_id, deal = ctx.work.deal.deal_id, _deal(ctx)
        person = api.person(deal["person_id"]) if deal["person_id"] else None
        email = _primary_email(person)
        if email is None:
            who = f"its person ({person.get('name')})" if person else "it has no person"
            raise PermanentError(f"Pipedrive deal {deal_id} has no contact e-mail address ({who}): link a person "
                                 "with an e-mail address to the deal in Pipedrive, then retry",
                                 "GET v2 persons/{id}")
        organization = api.organization(deal["org_id"]) if deal["org_id"] else None
        org_name = (organization or {}).get("name")
        name = (org_name or person.get("name") or email).strip()
        client_id = f"org-{organization['id']}" if org_name else f"person-{person['id']}"
        return {"id": client_id, "name": name[:300], "email": email, "person_id": person["id"],
                "deal_title": (deal.get("title") or "")[:300] or None}

    def find_owner(ctx: RunContext) -> dict:
        """The deal owner's e-mail address (None when the deal has no owner Pipedrive knows)."""
        owner_id = ctx.results[DEAL_STEP]["owner_id"]
        user = api.user(owner_id) if owner_id else None
        if user is None:
            return {"email": None, "name": None, "owner_id": owner_id}
        return {"email": (user.get("email") or "").strip().lower() or None, "name": user.get("name"),
                "owner_id": owner_id}

    def _deal(ctx: RunContext) -> dict:
        """The deal as read by the deal step; read again on a retry, as the CRM may have been fixed since."""
        return ctx.results[DEAL_STEP] if ctx.first_try(CLIENT_STEP) else read_deal(ctx)

    return (Step(DEAL_STEP, (), read_deal), Step(CLIENT_STEP, (DEAL_STEP,), find_client),
            Step(OWNER_STEP, (DEAL_STEP,), find_owner))


def _primary_email(person: dict | None) -> str | None:
    """A person's primary e-mail address, else their first one."""
    emails = [entry for entry in (person or {}).get("emails") or [] if (entry.get("value") or "").strip()]
    emails.sort(key=lambda entry: not entry.get("primary"))
    return emails[0]["value"].strip().lower() if emails else None


class DealWriteBack:
    """Puts the room on the Pipedrive deal: two custom fields and a note with the link."""

    step = "write-back"
    looks_before_creating = True

    def __init__(self, api: PipedriveApi) -> None:
        """A write-back through api."""
        self.api = api
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def room_ready(self, onboarding: Work, room: Room, *, first_try: bool) -> dict:
        """Set the two custom fields, then add the note unless an earlier attempt did."""
        deal_id = onboarding.deal.deal_id
        keys = self.field_keys()
        self.api.update_deal(deal_id, {keys[ROOM_ID_FIELD]: str(room.id), keys[ROOM_LINK_FIELD]: room.url or ""})
        marker = f"DocSpace room {room.id}"
        note_id = None if first_try else next((note["id"] for note in self.api.deal_notes(deal_id)
                                               if marker in (note.get("content") or "")), None)
        found = note_id is not None
        if note_id is None:
            note_id = self.api.create_note(deal_id, _note(room, marker))["id"]
        return {"deal_id": deal_id, "fields": keys, "note_id": note_id, "note_found": found}

    def onboarding_failed(self, onboarding: Work, error: dict) -> None:
        """A note on the deal saying the room could not be prepared, and why."""
        step = f" at step {error['step']}" if error.get("step") else ""
        self.api.create_note(onboarding.deal.deal_id, f"<p>The DocSpace client room could not be prepared"
                                                      f"{html.escape(step)}: {html.escape(error['message'])}</p>")

    def field_keys(self) -> dict[str, str]:
        """The keys of the two custom fields, by name (read once; again while one is missing)."""
        with self._lock:
            if len(self._keys) < len(FIELDS):
                self._keys = field_keys(self.api.deal_fields())
            missing = [name for name in FIELDS if name not in self._keys]
        if missing:
            raise PermanentError(f"the Pipedrive deal fields {', '.join(repr(name) for name in missing)} do not "
                                 f"exist: run `{SETUP_COMMAND}`, then retry", "GET v1 dealFields")
        return dict(self._keys)


def field_keys(fields: list[dict]) -> dict[str, str]:
    """The key of each of our fields among a company's deal fields (the oldest, if a name is there twice)."""
    keys: dict[str, str] = {}
    for entry in sorted(fields, key=lambda entry: entry.get("id") or 0):
        if entry.get("name") in FIELDS and entry["name"] not in keys:
            keys[entry["name"]] = entry["key"]
    return keys


def _note(room: Room, marker: str) -> str:
    """The note's HTML: the room's title and link."""
    title = html.escape(room.title or "the client room")
    link = f'<a href="{html.escape(room.url)}">{title}</a>' if room.url else title
    return f"<p>{marker} is ready: {link}.</p>"


def setup(api: PipedriveApi) -> list[str]:
    """Create the deal fields the write-back needs unless they exist (Pipedrive allows two fields of one name:
    look before creating); say what was done."""
    existing = field_keys(api.deal_fields())
    done = []
    for name in FIELDS:
        if name in existing:
            done.append(f'the deal field "{name}" exists ({existing[name]})')
        else:
            created = api.create_deal_field(name, FIELD_TYPE)
            done.append(f'created the deal field "{name}" ({created["key"]})')
    return done

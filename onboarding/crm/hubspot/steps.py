"""HubSpot's enrichment steps (its ids -> a client and an owner) and its write-back onto the deal.

Enrichment reads the deal (name, owner, associated companies and contacts), then in parallel the client (the
company's name, else the contact's; the e-mail of the contact labelled primary, else of the lowest contact id
that has one) and the owner's e-mail. A deal without any contact e-mail fails with that reason, and a retry
after the CRM is fixed picks it up.

The write-back sets the deal's docspace_room_id and docspace_room_url properties (made by `flask --app wsgi
hubspot setup`) and adds a note with the room's link. Setting properties is idempotent; creating a note is not,
so a retry looks for the note on the deal before creating it again.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from onboarding.crm.hubspot.api import HubSpotApi, associated
from onboarding.domain import CLIENT_STEP, OWNER_STEP, Room
from onboarding.errors import PermanentError
from onboarding.steps import RunContext, Step

if TYPE_CHECKING:
    from onboarding.queue import Work

DEAL_STEP = "hubspot:deal"
PRIMARY_LABEL = "primary"
MOST_CONTACTS_READ = 10
ROOM_ID_PROPERTY = "docspace_room_id"
ROOM_URL_PROPERTY = "docspace_room_url"
PROPERTY_GROUP = ("docspace", "DocSpace")
PROPERTIES = ({"name": ROOM_ID_PROPERTY, "label": "DocSpace room ID"},
              {"name": ROOM_URL_PROPERTY, "label": "DocSpace room link"})
SETUP_COMMAND = "flask --app wsgi hubspot setup"


def enrichment(api: HubSpotApi) -> tuple[Step, ...]:
    """The steps that find a HubSpot deal's client and owner."""

    def read_deal(ctx: RunContext) -> dict:
        """The deal's name, owner id, companies (each once: HubSpot lists the primary one twice) and contacts."""
        deal = api.deal(ctx.work.deal.deal_id)
        properties = deal.get("properties") or {}
        return {"title": properties.get("dealname"), "owner_id": properties.get("hubspot_owner_id") or None,
                "company_ids": _ids(associated(deal, "companies"), first="deal_to_company"),
                "contact_ids": _ids(associated(deal, "contacts"))}

    def find_client(ctx: RunContext) -> dict:
        """The client: the company's name (else the contact's) and the primary contact's e-mail."""
        # On a retry the deal is read again: its contacts may have been fixed in HubSpot since.
        deal = ctx.results[DEAL_STEP] if ctx.first_try(CLIENT_STEP) else read_deal(ctx)
        contact = _contact_with_email(api, ctx.work.deal.deal_id, deal["contact_ids"])
        if contact is None:
            raise PermanentError(f"HubSpot deal {ctx.work.deal.deal_id} has no contact with an e-mail address: "
                                 "associate a contact with an e-mail address to the deal in HubSpot, then retry",
                                 "GET objects/contacts/{id}")
        person = " ".join(part for part in (contact.get("firstname"), contact.get("lastname")) if part)
        company = api.company(deal["company_ids"][0]) if deal["company_ids"] else None
        company_name = ((company or {}).get("properties") or {}).get("name")
        name = (company_name or person or contact["email"]).strip()
        client_id = f"company-{company['id']}" if company_name else f"contact-{contact['id']}"
        return {"id": client_id, "name": name[:300], "email": contact["email"].strip().lower(),
                "deal_title": (deal.get("title") or "")[:300] or None, "contact_id": contact["id"]}

    def find_owner(ctx: RunContext) -> dict:
        """The deal owner's e-mail address (None when the deal has no owner HubSpot knows)."""
        owner_id = ctx.results[DEAL_STEP]["owner_id"]
        owner = api.owner(owner_id) if owner_id else None
        if owner is None:
            return {"email": None, "name": None, "owner_id": owner_id}
        name = " ".join(part for part in (owner.get("firstName"), owner.get("lastName")) if part)
        return {"email": (owner.get("email") or "").strip().lower() or None, "name": name or None,
                "owner_id": owner_id}

    return (Step(DEAL_STEP, (), read_deal), Step(CLIENT_STEP, (DEAL_STEP,), find_client),
            Step(OWNER_STEP, (DEAL_STEP,), find_owner))


def _ids(entries: list[dict], first: str | None = None) -> list[str]:
    """Associated ids, each once, those of type first (the primary one) before the others, then by number."""
    primary = {str(entry["id"]) for entry in entries if entry.get("type") == first}
    return sorted({str(entry["id"]) for entry in entries}, key=lambda id_: (id_ not in primary, int(id_)))


def _contact_with_email(api: HubSpotApi, deal_id: str, contact_ids: list[str]) -> dict | None:
    """The deal's primary contact (labelled primary, else the lowest id) among those with an e-mail address."""
    if not contact_ids:
        return None
    labelled = set()
    if len(contact_ids) > 1:
        for entry in api.deal_contacts(deal_id):
            labels = {str(kind.get("label") or "").lower() for kind in entry.get("associationTypes") or []}
            if PRIMARY_LABEL in labels:
                labelled.add(str(entry["toObjectId"]))
    ordered = sorted(contact_ids, key=lambda id_: (id_ not in labelled, int(id_)))
    for contact_id in ordered[:MOST_CONTACTS_READ]:
        contact = api.contact(contact_id)
        properties = contact.get("properties") or {}
        if (properties.get("email") or "").strip():
            return {"id": contact_id, **properties}
    return None


class DealWriteBack:
    """Puts the room on the HubSpot deal: two properties and a note with the link."""

    step = "write-back"
    looks_before_creating = True

    def __init__(self, api: HubSpotApi) -> None:
        """A write-back through api."""
        self.api = api

    def room_ready(self, onboarding: Work, room: Room, *, first_try: bool) -> dict:
        """Set docspace_room_id and docspace_room_url, then add the note unless an earlier attempt did."""
        deal_id = onboarding.deal.deal_id
        url = room.url or ""
        try:
            self.api.update_deal(deal_id, {ROOM_ID_PROPERTY: str(room.id), ROOM_URL_PROPERTY: url})
        except PermanentError as error:
            if error.status == 400 and ("PROPERTY_DOESNT_EXIST" in error.message
                                        or "does not exist" in error.message):
                raise PermanentError(f"the HubSpot deal properties {ROOM_ID_PROPERTY} and {ROOM_URL_PROPERTY} do "
                                     f"not exist: run `{SETUP_COMMAND}`, then retry ({error.message})",
                                     error.endpoint, error.status) from None
            raise
        marker = room_marker(room.id)
        note_id = None if first_try else self._note_with(deal_id, marker)
        found = note_id is not None
        if note_id is None:
            note_id = self.api.create_note(deal_id, _note(room, marker), datetime.now(UTC))["id"]
        return {"deal_id": deal_id, "properties": [ROOM_ID_PROPERTY, ROOM_URL_PROPERTY], "note_id": note_id,
                "note_found": found}

    def onboarding_failed(self, onboarding: Work, error: dict) -> None:
        """A note on the deal saying the room could not be prepared, and why."""
        step = f" at step {error['step']}" if error.get("step") else ""
        self.api.create_note(onboarding.deal.deal_id,
                             f"<p>The DocSpace client room could not be prepared{html.escape(step)}: "
                             f"{html.escape(error['message'])}</p>", datetime.now(UTC))

    def _note_with(self, deal_id: str, marker: str) -> str | None:
        """The id of a note on the deal that holds the marker, if an earlier attempt made one."""
        for note_id in self.api.deal_notes(deal_id):
            body = (self.api.note(note_id).get("properties") or {}).get("hs_note_body") or ""
            if marker in body:
                return note_id
        return None


def room_marker(room_id: int) -> str:
    """The words a room's note always holds, by which a retry finds it."""
    return f"DocSpace room {room_id}"


def _note(room: Room, marker: str) -> str:
    """The note's HTML: the room's title and link."""
    title = html.escape(room.title or "the client room")
    link = f'<a href="{html.escape(room.url)}">{title}</a>' if room.url else title
    return f"<p>{marker} is ready: {link}.</p>"


def setup(api: HubSpotApi) -> list[str]:
    """Create the deal properties the write-back needs (and their group), unless they exist; say what was done."""
    done = []
    group, label = PROPERTY_GROUP
    if api.property_group(group) is None:
        api.create_property_group(group, label)
        done.append(f'created the deal property group "{group}"')
    else:
        done.append(f'the deal property group "{group}" exists')
    for definition in PROPERTIES:
        if api.deal_property(definition["name"]) is None:
            api.create_deal_property({**definition, "type": "string", "fieldType": "text", "groupName": group,
                                      "description": "Set by the DocSpace onboarding service"})
            done.append(f"created the deal property {definition['name']}")
        else:
            done.append(f"the deal property {definition['name']} exists")
    return done

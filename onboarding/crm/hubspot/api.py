"""HubSpot's CRM API: the calls the adapter makes, through the shared outside-call wrapper, with typed errors.

Facts behind each call: ../shared/reference/crm-apis.md, sections 2-5. A private app (or static) token is sent as
a Bearer token. HubSpot counts requests in a rolling 10-second window per account (100 by default); its 429 names
a policyName and often has no Retry-After, so the wait is read from the policy: the window for
TEN_SECONDLY_ROLLING, a second for SECONDLY, the next day for DAILY. 423 (a locked record) and 477 (a portal
being migrated) pass; other 4xx answers fail with HubSpot's own message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from onboarding.errors import PermanentError, TransientError, retry_after_seconds
from onboarding.limiter import Limiter
from onboarding.limits import FleetLimiter
from onboarding.outside import OutsideApi

WINDOW_SECONDS = 10.0
# HubSpot has no concurrency cap; the window's rate is what holds.
UNLIMITED_WRITES = 1000
NOTE_TO_DEAL = 214  # HUBSPOT_DEFINED association type (hubspot/crm/association_type.py in HubSpot's client)
POLICY_WAITS = {"TEN_SECONDLY_ROLLING": WINDOW_SECONDS, "SECONDLY": 1.0}
LOCKED_WAIT_SECONDS = 2.0


class HubSpotApi:
    """A client for one HubSpot account; safe to share between threads."""

    def __init__(self, base_url: str, token: str, *, timeout: float, limiter: Limiter | FleetLimiter,
                 pool_size: int = 16) -> None:
        """A client with its own session, kept inside the account's 10-second window by limiter."""
        self.limiter = limiter
        self.api = OutsideApi("HubSpot", "hubspot", base_url, timeout=(min(5.0, timeout), timeout),
                              limiter=self.limiter, pool_size=pool_size,
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                              rate_limit_wait=rate_limit_wait, describe=message)

    # -- reading -----------------------------------------------------------------------------------------------

    def pipelines(self) -> list[dict]:
        """Every deal pipeline with its stages."""
        return self.call("GET", "crm/v3/pipelines/deals", "GET pipelines/deals")["results"]

    def deal(self, deal_id: str) -> dict:
        """A deal's name, owner and associated companies, contacts and notes."""
        return self.call("GET", f"crm/v3/objects/deals/{deal_id}", "GET objects/deals/{id}",
                         params={"properties": "dealname,hubspot_owner_id",
                                 "associations": "companies,contacts"})

    def deal_notes(self, deal_id: str) -> list[str]:
        """The ids of the notes on a deal."""
        answer = self.call("GET", f"crm/v3/objects/deals/{deal_id}", "GET objects/deals/{id}",
                           params={"properties": "dealname", "associations": "notes"})
        return [entry["id"] for entry in associated(answer, "notes")]

    def deal_contacts(self, deal_id: str) -> list[dict]:
        """A deal's contacts with their association labels (v4): [{"toObjectId", "associationTypes"}]."""
        return self.call("GET", f"crm/v4/objects/deals/{deal_id}/associations/contacts",
                         "GET v4 deals/{id}/associations/contacts")["results"]

    def company(self, company_id: str) -> dict:
        """A company's name."""
        return self.call("GET", f"crm/v3/objects/companies/{company_id}", "GET objects/companies/{id}",
                         params={"properties": "name"})

    def contact(self, contact_id: str) -> dict:
        """A contact's e-mail address and name."""
        return self.call("GET", f"crm/v3/objects/contacts/{contact_id}", "GET objects/contacts/{id}",
                         params={"properties": "email,firstname,lastname"})

    def owner(self, owner_id: str) -> dict | None:
        """An owner (the deal's hubspot_owner_id), or None when HubSpot knows no such owner."""
        try:
            return self.call("GET", f"crm/v3/owners/{owner_id}", "GET owners/{id}")
        except PermanentError as error:
            if error.status == 404:
                return None
            raise

    def note(self, note_id: str) -> dict:
        """A note's body."""
        return self.call("GET", f"crm/v3/objects/notes/{note_id}", "GET objects/notes/{id}",
                         params={"properties": "hs_note_body"})

    # -- writing -----------------------------------------------------------------------------------------------

    def update_deal(self, deal_id: str, properties: dict[str, str]) -> dict:
        """Set properties of a deal (idempotent: the same values again change nothing)."""
        return self.call("PATCH", f"crm/v3/objects/deals/{deal_id}", "PATCH objects/deals/{id}",
                         body={"properties": properties})

    def create_note(self, deal_id: str, html: str, at: datetime) -> dict:
        """A note on a deal; HubSpot has no idempotency key, so look with deal_notes first."""
        return self.call("POST", "crm/v3/objects/notes", "POST objects/notes", body={
            "properties": {"hs_timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"), "hs_note_body": html},
            "associations": [{"to": {"id": deal_id}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_DEAL}]}]})

    def deal_property(self, name: str) -> dict | None:
        """A deal property's definition, or None when there is none."""
        return self._or_none("GET", f"crm/v3/properties/deals/{name}", "GET properties/deals/{name}")

    def create_deal_property(self, definition: dict) -> dict:
        """Define a deal property."""
        return self.call("POST", "crm/v3/properties/deals", "POST properties/deals", body=definition)

    def property_group(self, name: str) -> dict | None:
        """A deal property group, or None when there is none."""
        return self._or_none("GET", f"crm/v3/properties/deals/groups/{name}", "GET properties/deals/groups/{name}")

    def create_property_group(self, name: str, label: str) -> dict:
        """Create a deal property group."""
        return self.call("POST", "crm/v3/properties/deals/groups", "POST properties/deals/groups",
                         body={"name": name, "label": label})

    # -- the one place answers are read ------------------------------------------------------------------------

    def call(self, method: str, path: str, endpoint: str, *, params: dict | None = None,
             body: dict | None = None) -> dict:
        """One call; HubSpot's JSON answer, or a TransientError / PermanentError carrying HubSpot's message."""
        answer = self.api.send(method, path, endpoint=endpoint, params=params, json=body)
        code = answer.status_code
        if code == 423:  # HubSpot: "wait at least 2 seconds"
            raise TransientError(f"HubSpot: the record is locked: {message(answer)}", endpoint, code,
                                 LOCKED_WAIT_SECONDS)
        if code == 477:
            raise TransientError(f"HubSpot: the account is being migrated: {message(answer)}", endpoint, code,
                                 retry_after_seconds(answer.headers.get("Retry-After")))
        if code >= 400:
            raise PermanentError(f"HubSpot refused ({code}): {message(answer)}", endpoint, code)
        if code == 204 or not answer.content:
            return {}
        try:
            document = answer.json()
        except ValueError:
            raise TransientError(f"HubSpot answered {code} without JSON", endpoint, code) from None
        if not isinstance(document, dict):
            raise TransientError(f"HubSpot answered {code} with an unexpected body", endpoint, code)
        return document

    def _or_none(self, method: str, path: str, endpoint: str) -> dict | None:
        """A call whose 404 means "there is none"."""
        try:
            return self.call(method, path, endpoint)
        except PermanentError as error:
            if error.status == 404:
                return None
            raise


def associated(record: dict, kind: str) -> list[dict]:
    """The associations of one kind listed inline with a v3 record: [{"id", "type"}]."""
    associations = record.get("associations") or {}
    return list((associations.get(kind) or {}).get("results") or [])


def message(answer: requests.Response) -> str:
    """HubSpot's message in an error answer (its category too, when it names one)."""
    try:
        document = answer.json()
    except ValueError:
        document = None
    if not isinstance(document, dict) or not document.get("message"):
        return f"HTTP {answer.status_code} without a HubSpot error body"
    category = document.get("category") or document.get("policyName")
    text = str(document["message"])
    return (f"{text} ({category})" if category else text)[:500]


def rate_limit_wait(answer: requests.Response, now: datetime | None = None) -> float:
    """How long a 429 asks to wait: its Retry-After, else what its policyName means."""
    offered = retry_after_seconds(answer.headers.get("Retry-After"))
    if offered is not None:
        return offered
    try:
        policy = answer.json().get("policyName")
    except (ValueError, AttributeError):
        policy = None
    if policy == "DAILY":
        # The daily allowance comes back at midnight (the account's time zone, which this client does not know:
        # UTC midnight is at most a few hours off, and the retry's backoff covers the rest).
        now = now or datetime.now(UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - now).total_seconds()
    return POLICY_WAITS.get(policy, WINDOW_SECONDS)

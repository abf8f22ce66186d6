"""The product's nouns, in one place: a won deal, its client, and the room made for it.

A deal is identified by its source (generic, hubspot, pipedrive), the CRM account it belongs to (HubSpot's
portalId, Pipedrive's company_id; empty for the generic webhook) and its id there, so deal 42 of two CRMs, or of
two HubSpot portals, are different deals with different rooms. Its fields are stored as the onboarding row's
columns (DEAL_COLUMNS); nothing else restates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GENERIC = "generic"
# The enrichment steps of a CRM that sends only ids end in these two; the DocSpace steps read their results, and
# the onboarding row is filled in from them (so lists and searches show the client).
CLIENT_STEP = "enrich:client"  # {"id", "name", "email", "deal_title"}
OWNER_STEP = "enrich:owner"  # {"email": the deal owner's e-mail or None, "name"}
MANAGER_STEP = "manager"  # {"user_id", "email", "why"}: the DocSpace user who manages the room, and why
# The onboarding row's columns that hold a Deal, in the order Deal.columns() gives them.
DEAL_COLUMNS = ("source", "account_id", "deal_id", "deal_title", "client_id", "client_name", "client_email",
                "client_user_id", "manager_user_id")


@dataclass(frozen=True)
class Client:
    """Who the room is for: an id in the CRM, a name for the room's title, an e-mail to invite."""

    id: str
    name: str
    email: str
    user_id: str | None = None  # their DocSpace user id, when the sender knows it


@dataclass(frozen=True)
class Deal:
    """A won deal. A CRM that sends only ids leaves client (and manager) None: enrichment steps find them."""

    source: str
    deal_id: str
    title: str | None = None
    account_id: str = ""
    client: Client | None = None
    manager_user_id: str | None = None

    @property
    def tag(self) -> str:
        """The tag that marks this deal's room in DocSpace, so it can be found again: it names all three keys."""
        if self.source == GENERIC:
            return f"deal-{self.deal_id}"
        return f"{self.source}-{self.account_id}-deal-{self.deal_id}"

    def columns(self) -> dict:
        """The deal as the onboarding row's column values."""
        client = self.client
        return {"source": self.source, "account_id": self.account_id, "deal_id": self.deal_id,
                "deal_title": self.title, "client_id": client.id if client else None,
                "client_name": client.name if client else None, "client_email": client.email if client else None,
                "client_user_id": client.user_id if client else None, "manager_user_id": self.manager_user_id}

    @classmethod
    def from_row(cls, row) -> Deal:
        """The deal stored in an onboarding row."""
        client = (Client(row.client_id, row.client_name, row.client_email, row.client_user_id)
                  if row.client_email else None)
        return cls(source=row.source, deal_id=row.deal_id, title=row.deal_title, account_id=row.account_id,
                   client=client, manager_user_id=row.manager_user_id)


@dataclass(frozen=True)
class Room:
    """A client's room, ready: what a write-back tells the CRM."""

    id: int
    title: str | None
    url: str | None
    folders: dict[str, int] = field(default_factory=dict)

"""The onboarding steps, built from the plan: each reads the results it depends on and returns its own.

Every step that creates something in DocSpace first looks for what an earlier attempt may have created (the room
by its deal tag, a folder or file by its title in its parent), because no DocSpace call is idempotent and an
answer can be lost after the server acted. The only exception is a parent this very run created a moment ago,
which nobody else can have filled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onboarding.docspace import DocSpace
from onboarding.domain import CLIENT_STEP, MANAGER_STEP, OWNER_STEP, Client, Room
from onboarding.errors import PermanentError
from onboarding.plan import Plan, Template
from onboarding.queue import Work

if TYPE_CHECKING:
    from onboarding.crm import Crm, WriteBack

ARCHIVED_ROOT = 20


@dataclass
class RunContext:
    """What the steps of one run share: the onboarding, the plan, the clients and the results so far."""

    work: Work
    plan: Plan
    docspace: DocSpace
    write_back: WriteBack
    # The DocSpace user who manages rooms whose deal owner cannot (ACCOUNT_MANAGER_ID), if any.
    default_manager: str | None = None
    # Saves "this step is about to create something" under the run's claim; raises if the claim was lost
    # (set by the Run that executes the steps).
    record_attempt: Callable[[str], None] | None = None
    results: dict[str, dict] = field(default_factory=dict)
    # names of steps whose result this run created (not found from an earlier attempt)
    fresh: set[str] = field(default_factory=set)

    def first_try(self, name: str) -> bool:
        """Whether no earlier run ever started this step (so nothing of it can exist yet)."""
        return self.work.step_attempts.get(name, 0) == 0

    def client(self) -> Client:
        """The client: as the CRM's enrichment found them, else as the payload named them."""
        found = self.results.get(CLIENT_STEP)
        if found is not None:
            return Client(found["id"], found["name"], found["email"])
        return self.work.deal.client

    def deal_title(self) -> str | None:
        """The deal's title: as the CRM's enrichment found it, else as the payload named it."""
        return (self.results.get(CLIENT_STEP) or {}).get("deal_title") or self.work.deal.title

    def manager_user_id(self) -> str:
        """The room manager's DocSpace user id: the one the manager step chose, else the payload's."""
        return (self.results.get(MANAGER_STEP) or {}).get("user_id") or self.work.deal.manager_user_id


@dataclass(frozen=True)
class Step:
    """One unit of onboarding work: runs once its needs are done, returns a JSON-able result."""

    name: str
    needs: tuple[str, ...]
    run: Callable[[RunContext], dict]

    @property
    def kind(self) -> str:
        """room, folder, copy, access, link, callback, write-back, manager, or the CRM's own (hubspot...)."""
        return self.name.split(":", 1)[0]


def plan_steps(plan: Plan, crm: Crm) -> list[Step]:
    """The steps of the plan for a deal from this CRM, in an order where every step comes after its needs.

    A CRM that sends only ids first runs its enrichment steps; the room (whose title names the client), the
    client's lookup and the choice of room manager wait for them.
    """
    steps = list(crm.enrichment)
    found = (CLIENT_STEP,) if steps else ()
    steps += [Step("room", found, create_room), Step("client", found, find_client)]
    if found:
        steps.append(Step(MANAGER_STEP, (OWNER_STEP,), choose_manager))
    steps += [Step(f"folder:{folder.title}", ("room",), folder_step(folder.title)) for folder in plan.folders]
    for template in plan.templates:
        parent = f"folder:{template.folder}" if template.folder else "room"
        steps.append(Step(copy_name(template), (parent,), copy_step(template, parent)))
    steps.append(Step("access", ("room", "client", *((MANAGER_STEP,) if found else ())), grant_access))
    if plan.link_kind != "none":
        steps.append(Step("link", ("room",), share_link))
    steps.append(Step(crm.write_back.step, tuple(step.name for step in steps), tell_the_crm))
    return steps


def copy_name(template: Template) -> str:
    """The step name of a template copy."""
    return f"copy:{template.folder or ''}/{template.title}"


def create_room(ctx: RunContext) -> dict:
    """Find the deal's room by its tag, or create it.

    The search is skipped only when no run ever began this step: the attempt is recorded (under the claim)
    before the room is created, so a create whose answer was lost always leaves a trace that forces the search.
    """
    deal, plan = ctx.work.deal, ctx.plan
    tag = deal.tag
    rooms = [] if ctx.first_try("room") else sorted(ctx.docspace.rooms_tagged(tag), key=lambda room: room["id"])
    if rooms:
        room = rooms[0]
        if room.get("rootFolderType") == ARCHIVED_ROOT:
            raise PermanentError(f"the room of deal {deal.deal_id} ({room['id']}, \"{room.get('title')}\") is "
                                 "archived; restore it in DocSpace, or delete it to have a new one made",
                                 "GET files/rooms")
    else:
        title = plan.render_room_title(deal.deal_id, ctx.deal_title(), ctx.client())
        ctx.record_attempt("room")
        room = ctx.docspace.create_room(title, plan.room_type, [*plan.room_tags, tag])
        ctx.fresh.add("room")
    return {"room_id": room["id"], "title": room.get("title"), "room_type": room.get("roomType"),
            "found": bool(rooms)}


def folder_step(title: str) -> Callable[[RunContext], dict]:
    """A step that finds or creates one folder in the room."""

    def make_folder(ctx: RunContext) -> dict:
        """Find the folder by title in the room, or create it."""
        room_id = ctx.results["room"]["room_id"]
        name = f"folder:{title}"
        if not _parent_is_new(ctx, "room", name):
            existing = _by_title(ctx.docspace.folder_contents(room_id)["folders"], title)
            if existing is not None:
                return {"folder_id": existing["id"], "found": True}
        created = ctx.docspace.create_folder(room_id, title)
        ctx.fresh.add(name)
        return {"folder_id": created["id"], "found": False}

    return make_folder


def copy_step(template: Template, parent: str) -> Callable[[RunContext], dict]:
    """A step that copies one template into its folder unless a file of that title is there."""

    def copy_template(ctx: RunContext) -> dict:
        """Find the copy by title in the folder, or make it."""
        folder_id = ctx.results[parent]["folder_id" if parent != "room" else "room_id"]
        if not _parent_is_new(ctx, parent, copy_name(template)):
            existing = _by_title(ctx.docspace.folder_contents(folder_id)["files"], template.title)
            if existing is not None:
                return {"file_id": existing["id"], "folder_id": folder_id, "found": True}
        copied = ctx.docspace.copy_file(template.file_id, folder_id, template.title)
        return {"file_id": copied["id"], "folder_id": folder_id, "found": False}

    return copy_template


def find_client(ctx: RunContext) -> dict:
    """The client's DocSpace user id: from the payload, else by e-mail address; None if they have no account."""
    client = ctx.client()
    user_id = client.user_id
    if user_id is None:
        user = ctx.docspace.user_by_email(client.email)
        user_id = user["id"] if user else None
    return {"user_id": user_id}


def may_manage_rooms(user: dict) -> bool:
    """Whether a DocSpace user can be a room manager: the owner, a DocSpace admin or a room admin."""
    return bool(user.get("isOwner") or user.get("isAdmin") or user.get("isRoomAdmin"))


def choose_manager(ctx: RunContext) -> dict:
    """The room manager of a CRM deal: its owner's DocSpace account if it may manage rooms, else the default one.

    The result says why, in words an operator reads on the onboarding's page.
    """
    owner = ctx.results[OWNER_STEP]
    email = owner.get("email")
    user = ctx.docspace.user_by_email(email) if email else None
    if user is not None and may_manage_rooms(user):
        return {"user_id": user["id"], "email": email, "why": f"the deal owner ({email}) manages rooms in DocSpace"}
    if email is None:
        reason = "the deal has no owner with an e-mail address in the CRM"
    elif user is None:
        reason = f"the deal owner ({email}) has no DocSpace account"
    else:
        reason = (f"the deal owner ({email}) is a DocSpace {account_type(user)}, who cannot manage rooms (only "
                  "the owner, DocSpace admins and room admins can)")
    if ctx.default_manager is None:
        raise PermanentError(f"{reason}, and no ACCOUNT_MANAGER_ID is set to fall back on: make the owner a room "
                             "admin in DocSpace or set ACCOUNT_MANAGER_ID, then retry", "GET people/email")
    return {"user_id": ctx.default_manager, "email": None, "why": f"ACCOUNT_MANAGER_ID, because {reason}"}


def account_type(user: dict) -> str:
    """A DocSpace user's account type in DocSpace's words: owner, DocSpace admin, room admin, user or guest."""
    if user.get("isOwner"):
        return "owner"
    if user.get("isAdmin"):
        return "DocSpace admin"
    if user.get("isRoomAdmin"):
        return "room admin"
    return "guest" if user.get("isVisitor") else "user"


def grant_access(ctx: RunContext) -> dict:
    """Invite the account manager and the client with the plan's roles, then confirm both are members."""
    plan, client = ctx.plan, ctx.client()
    manager_user_id = ctx.manager_user_id()
    room_id = ctx.results["room"]["room_id"]
    client_user_id = ctx.results["client"]["user_id"]
    invitee = {"id": client_user_id} if client_user_id else {"email": client.email}
    invitations = [{"id": manager_user_id, "access": plan.manager_access},
                   {**invitee, "access": plan.client_access}]
    ctx.docspace.share_room(room_id, invitations, plan.notify, plan.message)

    # The reply lists only people invited by id, and ids DocSpace will not let us see are dropped without an
    # error: only the member list tells whether both are in.
    members = ctx.docspace.room_members(room_id)
    manager = _member(members, user_id=manager_user_id)
    client_member = _member(members, user_id=client_user_id, email=client.email)
    missing = []
    if manager is None or manager.get("access") != plan.manager_access:
        missing.append(_absent("the account manager", manager_user_id, plan.manager_access, manager))
    if client_member is None or client_member.get("access") != plan.client_access:
        missing.append(_absent("the client", client_user_id or client.email, plan.client_access,
                               client_member))
    if missing:
        raise PermanentError(f"room {room_id}: " + "; ".join(missing) + ". DocSpace drops people the API key's "
                             "user may not see, and gives guests and users no room-manager role: check the ids "
                             "and account types", "GET files/rooms/{id}/share")
    client_user = client_member.get("sharedTo") or {}
    return {"manager_user_id": manager_user_id, "client_user_id": client_user.get("id"),
            "client_invited_by": "id" if client_user_id else "email"}


def share_link(ctx: RunContext) -> dict:
    """The room's primary external link, with the plan's access."""
    room_id = ctx.results["room"]["room_id"]
    link = ctx.docspace.primary_external_link(room_id)
    if link.get("access") != ctx.plan.link_access:
        shared = _shared_link(link)
        link = ctx.docspace.set_link_access(room_id, shared.get("id"), ctx.plan.link_access)
    shared = _shared_link(link)
    if not shared.get("shareLink"):
        raise PermanentError(f"room {room_id}: DocSpace returned an external link without a shareLink",
                             "GET files/rooms/{id}/link")
    return {"url": shared["shareLink"], "link_id": shared.get("id"), "access": link.get("access")}


def tell_the_crm(ctx: RunContext) -> dict:
    """Tell the CRM the room is ready, through the onboarding's write-back (a callback, or the deal itself)."""
    write_back = ctx.write_back
    first_try = ctx.first_try(write_back.step)
    if write_back.looks_before_creating:
        ctx.record_attempt(write_back.step)  # what it creates is looked for on the next attempt
    return write_back.room_ready(ctx.work, room_of(ctx.results), first_try=first_try)


def room_of(results: dict[str, dict]) -> Room:
    """The room as the saved results of an onboarding's steps describe it."""
    room = results["room"]
    return Room(id=room["room_id"], title=room["title"], url=(results.get("link") or {}).get("url"),
                folders={name.split(":", 1)[1]: result["folder_id"] for name, result in results.items()
                         if name.startswith("folder:")})


def _parent_is_new(ctx: RunContext, parent: str, name: str) -> bool:
    """Whether this run created the parent just now and never tried this step before: nothing to look for."""
    return parent in ctx.fresh and ctx.first_try(name)


def _by_title(entries: list[dict], title: str) -> dict | None:
    """The oldest entry with exactly this title."""
    matches = sorted((entry for entry in entries if entry.get("title") == title), key=lambda entry: entry["id"])
    return matches[0] if matches else None


def _member(members: list[dict], user_id: str | None = None, email: str | None = None) -> dict | None:
    """The member entry of a user, found by id or by e-mail address."""
    for member in members:
        user = member.get("sharedTo") or member.get("sharedToUser") or {}
        if user_id and str(user.get("id", "")).lower() == user_id.lower():
            return member
        if email and str(user.get("email", "")).lower() == email.lower():
            return member
    return None


def _absent(who: str, ident: str, expected: int, member: dict | None) -> str:
    """Why a person is not a member with the expected access."""
    if member is None:
        return f"{who} ({ident}) is not a member"
    return f"{who} ({ident}) has access {member.get('access')}, not {expected}"


def _shared_link(link: dict) -> dict:
    """The link object: sharedLink since DocSpace 3.5, sharedTo in every version."""
    return link.get("sharedLink") or link.get("sharedTo") or {}

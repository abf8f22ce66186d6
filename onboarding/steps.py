"""The onboarding steps, built from the plan: each reads the results it depends on and returns its own.

Every step that creates something in DocSpace first looks for what an earlier attempt may have created (the room
by its deal tag, a folder or file by its title in its parent), because no DocSpace call is idempotent and an
answer can be lost after the server acted. The only exception is a parent this very run created a moment ago,
which nobody else can have filled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from onboarding.crm import WriteBack
from onboarding.docspace import DocSpace
from onboarding.errors import PermanentError
from onboarding.plan import Plan, Template
from onboarding.queue import Work

ARCHIVED_ROOT = 20


@dataclass
class RunContext:
    """What the steps of one run share: the onboarding, the plan, the clients and the results so far."""

    work: Work
    plan: Plan
    docspace: DocSpace
    crm: WriteBack
    status_url: str
    # Saves "this step is about to create something" under the run's claim; raises if the claim was lost
    # (set by the Run that executes the steps).
    record_attempt: Callable[[str], None] | None = None
    results: dict[str, dict] = field(default_factory=dict)
    # names of steps whose result this run created (not found from an earlier attempt)
    fresh: set[str] = field(default_factory=set)

    def first_try(self, name: str) -> bool:
        """Whether no earlier run ever started this step (so nothing of it can exist yet)."""
        return self.work.step_attempts.get(name, 0) == 0


@dataclass(frozen=True)
class Step:
    """One unit of onboarding work: runs once its needs are done, returns a JSON-able result."""

    name: str
    needs: tuple[str, ...]
    run: Callable[[RunContext], dict]

    @property
    def kind(self) -> str:
        """room, folder, copy, access, link or callback."""
        return self.name.split(":", 1)[0]


def deal_tag(deal_id: str) -> str:
    """The tag that marks a deal's room, so it can be found again."""
    return f"deal-{deal_id}"


def plan_steps(plan: Plan) -> list[Step]:
    """The steps of the plan, in an order where every step comes after its needs."""
    steps = [Step("room", (), create_room), Step("client", (), find_client)]
    steps += [Step(f"folder:{folder.title}", ("room",), folder_step(folder.title)) for folder in plan.folders]
    for template in plan.templates:
        parent = f"folder:{template.folder}" if template.folder else "room"
        steps.append(Step(copy_name(template), (parent,), copy_step(template, parent)))
    steps.append(Step("access", ("room", "client"), grant_access))
    if plan.link_kind != "none":
        steps.append(Step("link", ("room",), share_link))
    steps.append(Step("callback", tuple(step.name for step in steps), call_back))
    return steps


def copy_name(template: Template) -> str:
    """The step name of a template copy."""
    return f"copy:{template.folder or ''}/{template.title}"


def create_room(ctx: RunContext) -> dict:
    """Find the deal's room by its tag, or create it.

    The search is skipped only when no run ever began this step: the attempt is recorded (under the claim)
    before the room is created, so a create whose answer was lost always leaves a trace that forces the search.
    """
    work, plan = ctx.work, ctx.plan
    tag = deal_tag(work.deal_id)
    rooms = [] if ctx.first_try("room") else sorted(ctx.docspace.rooms_tagged(tag), key=lambda room: room["id"])
    if rooms:
        room = rooms[0]
        if room.get("rootFolderType") == ARCHIVED_ROOT:
            raise PermanentError(f"the room of deal {work.deal_id} ({room['id']}, \"{room.get('title')}\") is "
                                 "archived; restore it in DocSpace, or delete it to have a new one made",
                                 "GET files/rooms")
    else:
        title = plan.render_room_title(work.deal_id, work.deal_title, work.client_id, work.client_name,
                                       work.client_email)
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
    user_id = ctx.work.client_user_id
    if user_id is None:
        user = ctx.docspace.user_by_email(ctx.work.client_email)
        user_id = user["id"] if user else None
    return {"user_id": user_id}


def grant_access(ctx: RunContext) -> dict:
    """Invite the account manager and the client with the plan's roles, then confirm both are members."""
    work, plan = ctx.work, ctx.plan
    room_id = ctx.results["room"]["room_id"]
    client_user_id = ctx.results["client"]["user_id"]
    client = {"id": client_user_id} if client_user_id else {"email": work.client_email}
    invitations = [{"id": work.manager_user_id, "access": plan.manager_access},
                   {**client, "access": plan.client_access}]
    ctx.docspace.share_room(room_id, invitations, plan.notify, plan.message)

    # The reply lists only people invited by id, and ids DocSpace will not let us see are dropped without an
    # error: only the member list tells whether both are in.
    members = ctx.docspace.room_members(room_id)
    manager = _member(members, user_id=work.manager_user_id)
    client_member = _member(members, user_id=client_user_id, email=work.client_email)
    missing = []
    if manager is None or manager.get("access") != plan.manager_access:
        missing.append(_absent("the account manager", work.manager_user_id, plan.manager_access, manager))
    if client_member is None or client_member.get("access") != plan.client_access:
        missing.append(_absent("the client", client_user_id or work.client_email, plan.client_access,
                               client_member))
    if missing:
        raise PermanentError(f"room {room_id}: " + "; ".join(missing) + ". DocSpace drops people the API key's "
                             "user may not see, and gives guests and users no room-manager role: check the ids "
                             "and account types", "GET files/rooms/{id}/share")
    client_user = client_member.get("sharedTo") or {}
    return {"manager_user_id": work.manager_user_id, "client_user_id": client_user.get("id"),
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


def call_back(ctx: RunContext) -> dict:
    """Tell the CRM the room is ready: its id, title and link."""
    work, results = ctx.work, ctx.results
    room = results["room"]
    payload = {
        "onboarding_id": work.onboarding_id,
        "deal_id": work.deal_id,
        "client_id": work.client_id,
        "room": {"id": room["room_id"], "title": room["title"], "url": results.get("link", {}).get("url")},
        "folders": {name.split(":", 1)[1]: result["folder_id"] for name, result in results.items()
                    if name.startswith("folder:")},
        "status_url": ctx.status_url,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    status = ctx.crm.deliver("onboarding.completed", f"onb_{work.onboarding_id}_completed", payload)
    return {"http_status": status, "delivered_at": payload["timestamp"]}


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

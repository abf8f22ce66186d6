"""The onboarding plan: the room, folders, template copies, access and link every client gets.

Loaded from TOML and checked against DocSpace's own rules at start-up, so a plan DocSpace would refuse
(e.g. an external link in a collaboration room) stops the service with a message naming the key and the fix.
"""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from onboarding.domain import Client

# RoomType numbers (DocSpace CreateRoomRequestDto.cs)
ROOM_TYPES = {"form-filling": 1, "collaboration": 2, "custom": 5, "public": 6, "virtual-data-room": 8, "ai": 9}

# FileShare numbers (DocSpace FileShare.cs); 1 ReadWrite and 4 Varies are not room roles, so they are not offered
ROLES = {"viewer": 2, "reviewer": 5, "commenter": 6, "form-filler": 7, "room-manager": 9, "editor": 10,
         "content-creator": 11}

# Roles a user may hold in each room type (FileSecurity.AvailableRoomAccesses)
MEMBER_ROLES = {1: {9, 11, 7}, 2: {9, 11, 10, 2}, 5: {9, 11, 10, 5, 6, 2}, 6: {9, 11}, 8: {9, 11, 10, 2, 7},
                9: {9, 11, 2}}

# Access an external link may carry in each room type; absent = the room type has no external links
EXTERNAL_LINK_ROLES = {5: {10, 7, 5, 6, 2}, 6: {10, 7, 5, 6, 2}}

LINK_KINDS = ("external", "none")
TITLE_FIELDS = {"client.id", "client.name", "client.email", "deal.id", "deal.title"}
MAX_ROOM_TITLE = 170
MAX_FOLDER_TITLE = 165
MAX_FILE_TITLE = 200


class PlanError(Exception):
    """The plan file is unreadable or asks for something DocSpace would refuse; the message names key and fix."""


@dataclass(frozen=True)
class Folder:
    """A folder created in every room."""

    title: str


@dataclass(frozen=True)
class Template:
    """A template file copied into every room (folder None = the room itself)."""

    file_id: int
    title: str
    folder: str | None


@dataclass(frozen=True)
class Plan:
    """A validated onboarding plan."""

    room_title: str
    room_type: int
    room_tags: tuple[str, ...]
    folders: tuple[Folder, ...]
    templates: tuple[Template, ...]
    manager_access: int
    client_access: int
    notify: bool
    message: str | None
    link_kind: str
    link_access: int

    def render_room_title(self, deal_id: str, deal_title: str | None, client: Client) -> str:
        """The room title for one deal, cut to DocSpace's 170-character limit."""
        fields = {"client": SimpleNamespace(id=client.id, name=client.name, email=client.email),
                  "deal": SimpleNamespace(id=deal_id, title=deal_title or "")}
        return self.room_title.format_map(fields)[:MAX_ROOM_TITLE].strip()


def load_plan(path: Path) -> Plan:
    """Read and validate a plan file."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanError(f"{path}: cannot read the plan ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:
        raise PlanError(f"{path}: not valid TOML (nested too deeply)") from None
    try:
        return parse_plan(document)
    except PlanError as error:
        raise PlanError(f"{path}: {error}") from None


def parse_plan(document: dict) -> Plan:
    """Validate a parsed plan document."""
    _known(document, "", {"room", "folders", "templates", "access", "link"})
    room = _table(document, "room")
    _known(room, "room", {"title", "type", "tags"})
    room_title = _text(room, "room", "title", default="Client - {client.name}")
    _check_title_template(room_title)
    room_type = _choice(room, "room", "type", ROOM_TYPES, default="custom")
    tags = room.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
        raise PlanError('[room] tags must be a list of non-empty strings, e.g. tags = ["crm-client"]')

    folders = _folders(document)
    templates = _templates(document, {folder.title for folder in folders})

    access = _table(document, "access")
    _known(access, "access", {"account_manager", "client", "notify", "message"})
    manager_access = _choice(access, "access", "account_manager", ROLES, default="room-manager")
    client_access = _choice(access, "access", "client", ROLES, default="viewer")
    for key, value in (("account_manager", manager_access), ("client", client_access)):
        if value not in MEMBER_ROLES[room_type]:
            raise PlanError(f'[access] {key} = "{_name(ROLES, value)}" is not a role a {_name(ROOM_TYPES, room_type)} '
                            f"room gives to members; use one of: {_names(ROLES, MEMBER_ROLES[room_type])}")
    notify = access.get("notify", False)
    if not isinstance(notify, bool):
        raise PlanError("[access] notify must be true or false")
    message = access.get("message")
    if message is not None and not isinstance(message, str):
        raise PlanError("[access] message must be a string")

    link = _table(document, "link")
    _known(link, "link", {"kind", "access"})
    link_kind = _text(link, "link", "kind", default="external")
    if link_kind not in LINK_KINDS:
        raise PlanError(f'[link] kind = "{link_kind}" is unknown; use one of: {", ".join(LINK_KINDS)}')
    link_access = _choice(link, "link", "access", ROLES, default="viewer")
    if link_kind == "external":
        allowed = EXTERNAL_LINK_ROLES.get(room_type)
        if allowed is None:
            raise PlanError(f'[link] kind = "external" is not possible in a {_name(ROOM_TYPES, room_type)} room: '
                            'DocSpace refuses external links there (HTTP 403). Use [room] type = "custom", '
                            'or set [link] kind = "none"')
        if link_access not in allowed:
            raise PlanError(f'[link] access = "{_name(ROLES, link_access)}" is not allowed for an external link; '
                            f"use one of: {_names(ROLES, allowed)}")
    return Plan(room_title=room_title, room_type=room_type, room_tags=tuple(tag.strip() for tag in tags),
                folders=folders, templates=templates, manager_access=manager_access, client_access=client_access,
                notify=notify, message=message, link_kind=link_kind, link_access=link_access)


def _folders(document: dict) -> tuple[Folder, ...]:
    """The [[folders]] entries, titles unique."""
    entries = document.get("folders", [])
    if not isinstance(entries, list):
        raise PlanError('folders must be an array of tables: [[folders]] title = "Invoices"')
    folders: list[Folder] = []
    for position, entry in enumerate(entries, start=1):
        where = f"folders #{position}"
        if not isinstance(entry, dict):
            raise PlanError(f'{where} must be a table: [[folders]] title = "Invoices"')
        _known(entry, where, {"title"})
        title = _text(entry, where, "title")
        if len(title) > MAX_FOLDER_TITLE or "/" in title:
            raise PlanError(f"[{where}] title must be at most {MAX_FOLDER_TITLE} characters without '/'")
        if any(folder.title == title for folder in folders):
            raise PlanError(f'[{where}] title = "{title}" appears twice; folder titles must be unique')
        folders.append(Folder(title))
    return tuple(folders)


def _templates(document: dict, folder_titles: set[str]) -> tuple[Template, ...]:
    """The [[templates]] entries, each naming a planned folder and a title unique within it."""
    entries = document.get("templates", [])
    if not isinstance(entries, list):
        raise PlanError("templates must be an array of tables: [[templates]] file_id = 9001 ...")
    templates: list[Template] = []
    for position, entry in enumerate(entries, start=1):
        where = f"templates #{position}"
        if not isinstance(entry, dict):
            raise PlanError(f"{where} must be a table: [[templates]] file_id = 9001 ...")
        _known(entry, where, {"file_id", "folder", "title"})
        file_id = entry.get("file_id")
        if isinstance(file_id, bool) or not isinstance(file_id, int) or file_id <= 0:
            raise PlanError(f"[{where}] file_id must be the positive number of a DocSpace file, e.g. file_id = 9001")
        title = _text(entry, where, "title")
        if "." not in title.strip(".") or "/" in title or len(title) > MAX_FILE_TITLE:
            raise PlanError(f'[{where}] title = "{title}" must be a file name with its extension, at most '
                            f'{MAX_FILE_TITLE} characters, e.g. "Welcome.pdf"')
        folder = entry.get("folder")
        if folder is not None and (not isinstance(folder, str) or folder not in folder_titles):
            raise PlanError(f'[{where}] folder = "{folder}" is not one of the planned folders; add a [[folders]] '
                            "entry with that title or leave folder out to copy into the room itself")
        if any(template.title == title and template.folder == folder for template in templates):
            raise PlanError(f'[{where}] title = "{title}" appears twice in the same folder')
        templates.append(Template(file_id=file_id, title=title, folder=folder))
    return tuple(templates)


def _check_title_template(template: str) -> None:
    """Only the documented placeholders may appear in the room title."""
    try:
        parts = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(template)
                 if field is not None]
    except ValueError as error:
        raise PlanError(f'[room] title = "{template}" is not a valid template ({error})') from None
    for field, spec, conversion in parts:
        if spec or conversion:
            raise PlanError(f'[room] title: write placeholders plainly, e.g. {{client.name}}, without a format spec '
                            f'or conversion (found "{{{field}{"!" + conversion if conversion else ""}'
                            f'{":" + spec if spec else ""}}}")')
        if field not in TITLE_FIELDS:
            raise PlanError(f'[room] title uses "{{{field}}}"; the placeholders are: '
                            + ", ".join("{" + name + "}" for name in sorted(TITLE_FIELDS)))


def _table(document: dict, key: str) -> dict:
    """A [key] table, empty when absent."""
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise PlanError(f"{key} must be a table: [{key}]")
    return value


def _known(table: dict, where: str, keys: set[str]) -> None:
    """Refuse keys the plan does not know, which are usually typos."""
    for key in table:
        if key not in keys:
            place = f"[{where}] " if where else ""
            raise PlanError(f'{place}unknown key "{key}"; known keys: {", ".join(sorted(keys))}')


def _text(table: dict, where: str, key: str, default: str | None = None) -> str:
    """A non-empty string value."""
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise PlanError(f"[{where}] {key} must be a non-empty string")
    return value.strip()


def _choice(table: dict, where: str, key: str, choices: dict[str, int], default: str) -> int:
    """A named choice, returned as DocSpace's number."""
    value = table.get(key, default)
    if not isinstance(value, str) or value not in choices:
        raise PlanError(f'[{where}] {key} = "{value}" is unknown; use one of: {", ".join(choices)}')
    return choices[value]


def _name(choices: dict[str, int], number: int) -> str:
    """The plan's name for a DocSpace number."""
    return next(name for name, value in choices.items() if value == number)


def _names(choices: dict[str, int], numbers: set[int]) -> str:
    """The plan's names for a set of DocSpace numbers, in the plan's order."""
    return ", ".join(name for name, value in choices.items() if value in numbers)

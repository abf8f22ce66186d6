"""The in-memory DocSpace portal: users, folders and rooms, files, room members and links."""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

OWNER_ID = "11111111-1111-4111-8111-111111111111"
MANAGER_ID = "22222222-2222-4222-8222-222222222222"
USER_ID = "33333333-3333-4333-8333-333333333333"
CLIENT_ID = "44444444-4444-4444-8444-444444444444"
HIDDEN_GUEST_ID = "55555555-5555-4555-8555-555555555555"

MY_DOCUMENTS_ID, ROOMS_ID, ARCHIVE_ID, TEMPLATES_ID = 1, 2, 3, 100
USER_TYPES = ("DocSpaceAdmin", "RoomAdmin", "User", "Guest")

ROOM_TYPES = {"FillingFormsRoom": 1, "EditingRoom": 2, "CustomRoom": 5, "PublicRoom": 6, "VirtualDataRoom": 8,
              "AiRoom": 9}
# RoomType -> the FolderType a room of that type carries (Folder.cs).
ROOM_FOLDER_TYPES = {1: 15, 2: 16, 5: 19, 6: 22, 8: 29, 9: 31}
FILE_SHARE_NAMES = ("None", "ReadWrite", "Read", "Restrict", "Varies", "Review", "Comment", "FillForms",
                    "CustomFilter", "RoomManager", "Editing", "ContentCreator")
ROOM_MANAGER = 9
# FileSecurity.AvailableRoomAccesses: roles per room type for users, invitation links and external links.
MEMBER_ACCESSES = {1: {9, 11, 7, 0}, 2: {9, 11, 10, 2, 0}, 5: {9, 11, 10, 5, 6, 2, 0}, 6: {9, 11, 0},
                   8: {9, 11, 10, 2, 7, 0}, 9: {9, 11, 2, 0}}
INVITATION_LINK_ACCESSES = {1: {11, 7, 0}, 2: {11, 10, 2, 0}, 5: {11, 10, 5, 6, 2, 0}, 6: {11, 2, 0},
                            8: {11, 10, 2, 7, 0}, 9: {11, 2, 0}}
EXTERNAL_LINK_ACCESSES = {1: {7, 2, 0}, 5: {10, 7, 5, 6, 2, 0}, 6: {10, 7, 5, 6, 2, 0}}
# One primary plus five additional external links in custom and public rooms; form filling keeps only its primary.
MAX_EXTERNAL_LINKS = {1: 1, 5: 6, 6: 6}
INVITATION, EXTERNAL = 0, 1

ROLE_NOT_AVAILABLE = "The role is not available for this user type"
# FilesCommonResource.ErrorMessage_FileNotFound, which GET files/file/{id} raises as an InvalidOperationException (403).
FILE_NOT_FOUND = "The required file was not found"
# ItemNotFoundException of GET people/{userid} (UserController.GetById).
USER_NOT_FOUND = "User not found"
# What GET settings/version/build reports as docSpace (the appsettings version:number): the release the sandbox's
# facts come from (../shared/reference/docspace-api.md).
DOCSPACE_VERSION = "3.7.2"
LINK_NOT_AVAILABLE = "The link type is not available for this room type"
# Global.ReplaceInvalidCharsAndTruncate: DocSpace silently rewrites these characters in titles.
_INVALID_TITLE_CHARS = re.compile(r'[\t*+:"<>?|\\/]')


class ApiError(Exception):
    """A DocSpace failure: HTTP status, message and the .NET exception type the server reports."""

    def __init__(self, status: int, message: str, type_name: str = "System.Exception", hresult: int = -2146233088):
        """Keep what the error envelope needs."""
        super().__init__(message)
        self.status, self.message, self.type_name, self.hresult = status, message, type_name, hresult

    def envelope(self) -> dict:
        """Return the ErrorApiResponse body (CommonApiResponse.cs)."""
        return {"error": {"message": self.message, "type": self.type_name, "hresult": self.hresult},
                "status": 1, "statusCode": self.status}


def not_found(message: str) -> ApiError:
    """ItemNotFoundException, answered with 404."""
    return ApiError(404, message, "ASC.Common.Web.ItemNotFoundException")


def file_not_found(message: str) -> ApiError:
    """FileNotFoundException, answered with 404."""
    return ApiError(404, message, "System.IO.FileNotFoundException", -2147024894)


def invalid_operation(message: str) -> ApiError:
    """InvalidOperationException, which DocSpace answers with 403."""
    return ApiError(403, message, "System.InvalidOperationException", -2146233079)


def access_denied() -> ApiError:
    """SecurityException; DocSpace replaces its message with "Access denied"."""
    return ApiError(403, "Access denied", "System.Security.SecurityException", -2146233078)


def bad_argument(message: str) -> ApiError:
    """ArgumentException, answered with 400."""
    return ApiError(400, message, "System.ArgumentException", -2147024809)


def clean_title(title: str) -> str:
    """Trim a title and replace the characters DocSpace does not keep."""
    return _INVALID_TITLE_CHARS.sub("_", title.strip())


def now() -> str:
    """Current UTC time as ISO-8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class User:
    """A portal account; `type` is the EmployeeType name."""

    id: str
    display_name: str
    email: str
    type: str
    first_name: str = ""
    last_name: str = ""
    is_owner: bool = False
    hidden: bool = False
    activation_status: int = 1


@dataclass(frozen=True)
class Folder:
    """A folder; a room is a folder with a room type."""

    id: int
    title: str
    parent_id: int
    folder_type: int
    created: str
    created_by: str
    room_type: int | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class File:
    """A stored file."""

    id: int
    title: str
    folder_id: int
    size: int
    created: str
    created_by: str


@dataclass(frozen=True)
class Link:
    """A room link: an invitation link or an external (shareable) link."""

    id: str
    room_id: int
    title: str
    access: int
    link_type: int
    primary: bool
    key: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    request_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def url(self, base_url: str) -> str:
        """The shareable address of this link on the portal at base_url."""
        return f"{base_url.rstrip('/')}/s/{self.key}"


@dataclass(frozen=True)
class Invitation:
    """One item of a room share request: a user id or an email, and the access to grant."""

    access: int
    user_id: str | None = None
    email: str | None = None


def _seed_users() -> dict[str, User]:
    """The accounts every fresh portal starts with."""
    users = [
        User(OWNER_ID, "Sandbox Owner", "owner@sandbox.example", "DocSpaceAdmin", "Sandbox", "Owner", is_owner=True),
        User(MANAGER_ID, "Alice Manager", "alice@sandbox.example", "RoomAdmin", "Alice", "Manager"),
        User(USER_ID, "Bob User", "bob@sandbox.example", "User", "Bob", "User"),
        User(CLIENT_ID, "Existing Client", "client@known.example", "Guest", "Existing", "Client"),
        User(HIDDEN_GUEST_ID, "Hidden Guest", "hidden@other.example", "Guest", "Hidden", "Guest", hidden=True),
    ]
    return {user.id: user for user in users}


class Portal:
    """The portal's content, guarded by one lock; records are immutable and replaced on change."""

    def __init__(self) -> None:
        """Start from the seed."""
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Restore the seed data and the default settings."""
        with self._lock:
            created = now()
            self._users = _seed_users()
            self._folders = {
                MY_DOCUMENTS_ID: Folder(MY_DOCUMENTS_ID, "My documents", 0, 5, created, OWNER_ID),
                ROOMS_ID: Folder(ROOMS_ID, "Rooms", 0, 14, created, OWNER_ID),
                ARCHIVE_ID: Folder(ARCHIVE_ID, "Archive", 0, 20, created, OWNER_ID),
                TEMPLATES_ID: Folder(TEMPLATES_ID, "Templates", MY_DOCUMENTS_ID, 0, created, OWNER_ID),
            }
            self._files = {
                9001: File(9001, "Welcome to your client room.pdf", TEMPLATES_ID, 48213, created, OWNER_ID),
                9002: File(9002, "How to use the client portal.pdf", TEMPLATES_ID, 73502, created, OWNER_ID),
            }
            self._members: dict[int, dict[str, int]] = {}
            self._links: dict[int, list[Link]] = {}
            self._folder_ids = itertools.count(1000)
            self._file_ids = itertools.count(20000)
            self.allow_guests = True

    # --- users -------------------------------------------------------------------------------------------

    def user(self, user_id: str) -> User | None:
        """The user with that id, if any."""
        with self._lock:
            return self._users.get(user_id)

    def users(self) -> list[User]:
        """All accounts, hidden ones included."""
        with self._lock:
            return list(self._users.values())

    def user_by_email(self, email: str) -> User:
        """Find a visible user by email (case-insensitive)."""
        with self._lock:
            user = self._find_email(email)
        if user is None:
            raise not_found("The user could not be found")
        if user.hidden:
            raise access_denied()
        return user

    def add_user(self, email: str, display_name: str, user_type: str, hidden: bool = False,
                 user_id: str | None = None) -> User:
        """Create an account (control API)."""
        first, _, last = display_name.partition(" ")
        user = User(user_id or str(uuid.uuid4()), display_name, email, user_type, first, last, hidden=hidden)
        with self._lock:
            self._users[user.id] = user
        return user

    def visible_user(self, user_id: str) -> User:
        """The user with that id, as GET people/{userid} finds them: 404 if none, 403 if the caller may not see them."""
        with self._lock:
            user = self._users.get(user_id.strip().lower())
        if user is None:
            raise not_found(USER_NOT_FOUND)
        if user.hidden:
            raise access_denied()
        return user

    def search_users(self, text: str) -> list[User]:
        """The visible users whose name or e-mail contains the text (any case), by display name."""
        wanted = text.strip().lower()
        with self._lock:
            found = [user for user in self._users.values() if not user.hidden
                     and any(wanted in value.lower() for value in (user.display_name, user.email))]
        return sorted(found, key=lambda user: (user.display_name.lower(), user.id))

    def _find_email(self, email: str) -> User | None:
        """The user whose email matches, ignoring case."""
        wanted = email.strip().lower()
        return next((u for u in self._users.values() if u.email.lower() == wanted), None)

    # --- folders and rooms ---------------------------------------------------------------------------------

    def folder(self, folder_id: int) -> Folder:
        """The folder (or room) with that id."""
        with self._lock:
            folder = self._folders.get(folder_id)
        if folder is None:
            raise not_found("The folder not found")
        return folder

    def room(self, room_id: int) -> Folder:
        """The room with that id."""
        with self._lock:
            folder = self._folders.get(room_id)
        if folder is None or folder.room_type is None:
            raise not_found("The room not found")
        return folder

    def file(self, file_id: int) -> File:
        """The file with that id; DocSpace refuses an unknown one with 403 (InvalidOperationException), not 404."""
        with self._lock:
            file = self._files.get(file_id)
        if file is None:
            raise invalid_operation(FILE_NOT_FOUND)
        return file

    def root(self, folder: Folder) -> Folder:
        """The top-level folder (My documents, Rooms or Archive) the folder lives under."""
        return self.path(folder)[0]

    def path(self, folder: Folder) -> list[Folder]:
        """The folders from the root down to this one."""
        with self._lock:
            chain = [folder]
            while chain[0].parent_id:
                chain.insert(0, self._folders[chain[0].parent_id])
            return chain

    def contents(self, folder_id: int) -> tuple[list[Folder], list[File]]:
        """The folders and files directly inside a folder."""
        with self._lock:
            folders = [f for f in self._folders.values() if f.parent_id == folder_id]
            files = [f for f in self._files.values() if f.folder_id == folder_id]
            return folders, files

    def rooms(self, area: int, tags: set[str], text: str, types: set[int]) -> list[Folder]:
        """Rooms in a search area (0 active, 1 archive, 2 any) with any of the tags, the text and the types."""
        parents = {0: {ROOMS_ID}, 1: {ARCHIVE_ID}, 2: {ROOMS_ID, ARCHIVE_ID}}.get(area, set())
        with self._lock:
            return [
                room for room in self._folders.values()
                if room.room_type is not None and room.parent_id in parents
                and (not tags or tags & set(room.tags))
                and text.lower() in room.title.lower()
                and (not types or room.room_type in types)
            ]

    def create_room(self, title: str, room_type: int, tags: list[str], creator_id: str) -> Folder:
        """Create a room; the creator owns it, and public and form-filling rooms get their primary link."""
        with self._lock:
            room = Folder(next(self._folder_ids), clean_title(title), ROOMS_ID, ROOM_FOLDER_TYPES[room_type], now(),
                          creator_id, room_type, tuple(dict.fromkeys(tags)))
            self._folders[room.id] = room
            self._members[room.id] = {creator_id: ROOM_MANAGER}
            self._links[room.id] = []
            primary_access = {6: 2, 1: 7}.get(room_type)
            if primary_access is not None:
                self._links[room.id].append(Link(str(uuid.uuid4()), room.id, "Shared link", primary_access,
                                                 EXTERNAL, primary=True))
            return room

    def create_folder(self, parent_id: int, title: str, creator_id: str) -> Folder:
        """Create a folder in a room or folder; plain folders may not sit directly under Rooms."""
        with self._lock:
            parent = self._folders.get(parent_id)
            if parent is None:
                raise invalid_operation("folder not found")
            self._check_writable(parent)
            folder = Folder(next(self._folder_ids), clean_title(title), parent.id, 0, now(), creator_id)
            self._folders[folder.id] = folder
            return folder

    def copy_file(self, file_id: int, dest_folder_id: int, title: str, creator_id: str) -> File:
        """Create a new file in the destination from a source file."""
        with self._lock:
            source = self._files.get(file_id)
            if source is None:
                raise file_not_found("The file not found")
            dest = self._folders.get(dest_folder_id)
            if dest is None:
                raise invalid_operation("folder not found")
            self._check_writable(dest)
            copy = File(next(self._file_ids), clean_title(title), dest.id, source.size, now(), creator_id)
            self._files[copy.id] = copy
            return copy

    def archive(self, room_id: int) -> Folder:
        """Move a room to the archive."""
        with self._lock:
            room = replace(self.room(room_id), parent_id=ARCHIVE_ID)
            self._folders[room.id] = room
            return room

    def _check_writable(self, folder: Folder) -> None:
        """Refuse content directly in a root other than My documents, and anything in the archive."""
        if folder.id in (ROOMS_ID, ARCHIVE_ID) or self.root(folder).id == ARCHIVE_ID:
            raise access_denied()

    def _active_room(self, room_id: int) -> Folder:
        """A room whose access may still change (not archived)."""
        room = self.room(room_id)
        if room.parent_id == ARCHIVE_ID:
            raise access_denied()
        return room

    # --- members -------------------------------------------------------------------------------------------

    def members(self, room_id: int) -> list[tuple[User, int]]:
        """Every member of a room with their access, the owner first."""
        with self._lock:
            room = self.room(room_id)
            members = self._members[room.id]
            order = sorted(members, key=lambda user_id: user_id != room.created_by)
            return [(self._users[user_id], members[user_id]) for user_id in order]

    def share(self, room_id: int, invitations: list[Invitation]) -> list[tuple[User, int]]:
        """Apply invitations (all are checked first); return the users invited by id with their access."""
        with self._lock:
            room = self._active_room(room_id)
            planned = [item for item in (self._plan(room, inv) for inv in invitations) if item is not None]
            members = self._members[room.id]
            invited_by_id = []
            for user, invitation in planned:
                user = user or self._find_email(invitation.email) or self._new_guest(invitation.email)
                # The owner's own access is not editable; DocSpace leaves it unchanged.
                if user.id != room.created_by:
                    if invitation.access:
                        members[user.id] = invitation.access
                    else:
                        members.pop(user.id, None)
                if invitation.user_id is not None:
                    invited_by_id.append((user, members.get(user.id, 0)))
            return invited_by_id

    def _plan(self, room: Folder, invitation: Invitation) -> tuple[User | None, Invitation] | None:
        """Validate one invitation; None drops it silently, a None user means a new guest."""
        if invitation.user_id is not None:
            user = self._users.get(invitation.user_id)
        else:
            user = self._find_email(invitation.email)
            if user is None and not self.allow_guests:
                raise access_denied()
        if (invitation.user_id is not None and user is None) or (user is not None and user.hidden):
            return None
        user_type = user.type if user else "Guest"
        if invitation.access not in MEMBER_ACCESSES[room.room_type] or (
                invitation.access == ROOM_MANAGER and user_type in ("User", "Guest")):
            raise invalid_operation(ROLE_NOT_AVAILABLE)
        return user, invitation

    def _new_guest(self, email: str) -> User:
        """Create the pending Guest account an unknown email invitee gets."""
        guest = User(str(uuid.uuid4()), email, email, "Guest", activation_status=2)
        self._users[guest.id] = guest
        return guest

    # --- links ---------------------------------------------------------------------------------------------

    def links(self, room_id: int, link_type: int | None = None) -> list[Link]:
        """A room's links, optionally of one type."""
        with self._lock:
            room = self.room(room_id)
            return [link for link in self._links[room.id] if link_type is None or link.link_type == link_type]

    def primary_link(self, room_id: int) -> Link:
        """The room's primary external link, created with Read access if it has none."""
        with self._lock:
            room = self.room(room_id)
            if room.room_type not in EXTERNAL_LINK_ACCESSES:
                raise invalid_operation(LINK_NOT_AVAILABLE)
            existing = next((link for link in self._links[room.id] if link.primary), None)
            if existing is not None:
                return existing
            self._active_room(room_id)
            link = Link(str(uuid.uuid4()), room.id, "Shared link", 2, EXTERNAL, primary=True)
            self._links[room.id].append(link)
            return link

    def set_link(self, room_id: int, link_id: str | None, access: int, link_type: int,
                 title: str | None) -> Link | None:
        """Update (access 0 deletes) the link with link_id, or create a new link; None if nothing was created."""
        with self._lock:
            room = self._active_room(room_id)
            links = self._links[room.id]
            if link_id:
                old = next((link for link in links if link.id == link_id), None)
                if old is None:
                    raise not_found("The link not found")
                self._check_link_access(room, old.link_type, access)
                new = replace(old, access=access, title=title or old.title)
                links[links.index(old)] = new
                if not access:
                    links.remove(new)
                return new
            self._check_link_access(room, link_type, access)
            if not access:
                return None
            external = [link for link in links if link.link_type == EXTERNAL]
            if link_type == EXTERNAL and len(external) >= MAX_EXTERNAL_LINKS[room.room_type]:
                raise invalid_operation("The maximum number of links has been reached")
            default_title = "Shared link" if link_type == EXTERNAL else "Invitation link"
            link = Link(str(uuid.uuid4()), room.id, title or default_title, access, link_type,
                        primary=link_type == EXTERNAL and not any(link.primary for link in external))
            links.append(link)
            return link

    @staticmethod
    def _check_link_access(room: Folder, link_type: int, access: int) -> None:
        """Refuse a link type the room cannot have, or an access that link type may not carry."""
        if link_type == EXTERNAL:
            if room.room_type not in EXTERNAL_LINK_ACCESSES:
                raise invalid_operation(LINK_NOT_AVAILABLE)
            allowed = EXTERNAL_LINK_ACCESSES[room.room_type]
        else:
            allowed = INVITATION_LINK_ACCESSES[room.room_type]
        if access not in allowed:
            raise invalid_operation(ROLE_NOT_AVAILABLE)


class CallLog:
    """Every api/2.0 request the sandbox answered, for tests that assert what a client sent."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Forget all calls and restart numbering."""
        with self._lock:
            self._calls: list[dict] = []
            self._seq = itertools.count(1)

    def start(self, method: str, route: str, path: str, query: str, body: object) -> dict:
        """Record a call as it arrives."""
        call = {"seq": 0, "method": method, "route": route, "path": path, "query": query, "status": None,
                "body": body, "started_at": time.time(), "finished_at": None}
        with self._lock:
            call["seq"] = next(self._seq)
            self._calls.append(call)
        return call

    def finish(self, call: dict, status: int | None) -> None:
        """Record how a call was answered (None: the connection was dropped)."""
        with self._lock:
            call.update(status=status, finished_at=time.time())

    def since(self, seq: int) -> list[dict]:
        """Copies of the calls after seq."""
        with self._lock:
            return [dict(call) for call in self._calls if call["seq"] > seq]

    def counts(self) -> dict[str, int]:
        """How many calls each "METHOD route" received."""
        counts: dict[str, int] = {}
        with self._lock:
            for call in self._calls:
                key = f"{call['method']} {call['route']}"
                counts[key] = counts.get(key, 0) + 1
        return counts

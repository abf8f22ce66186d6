"""The api/2.0 blueprint: the DocSpace endpoints the onboarding service uses, in DocSpace's wire format."""

from __future__ import annotations

import json
import os
import re
import uuid

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from . import faults
from .state import (
    ARCHIVE_ID,
    DOCSPACE_VERSION,
    EXTERNAL,
    EXTERNAL_LINK_ACCESSES,
    FILE_SHARE_NAMES,
    MY_DOCUMENTS_ID,
    OWNER_ID,
    ROOM_FOLDER_TYPES,
    ROOM_TYPES,
    ROOMS_ID,
    ApiError,
    CallLog,
    File,
    Folder,
    Invitation,
    Link,
    Portal,
    User,
    bad_argument,
    invalid_operation,
    not_found,
)

PREFIX = "/api/2.0/"
MAX_PAGE = 100
SEARCH_AREAS = {"Active": 0, "Archive": 1, "Any": 2, "RecentByLinks": 3, "Templates": 4}
LINK_TYPES = {"Invitation": 0, "External": 1}
FILE_TYPES = {".pdf": 10, ".docx": 7, ".doc": 7, ".odt": 7, ".xlsx": 5, ".pptx": 6, ".txt": 7}
VALIDATION_TYPE = "https://tools.ietf.org/html/rfc9110#section-15.5.1"
# Endpoints marked [AllowAnonymous] in DocSpace: they answer without (or despite a wrong) API key.
ANONYMOUS_ENDPOINTS = {"docspace.build_version"}

bp = Blueprint("docspace", __name__, url_prefix=PREFIX.rstrip("/"))


class ValidationError(Exception):
    """A model-binding failure, which ASP.NET answers with ProblemDetails."""

    def __init__(self, field: str, message: str):
        """Remember the offending field and why."""
        super().__init__(message)
        self.errors = {field: [message]}


def init_app(app: Flask, api_key: str) -> None:
    """Attach the portal, the call log and the API key, and register the blueprint."""
    app.extensions["sandbox.portal"] = Portal()
    app.extensions["sandbox.calls"] = CallLog()
    app.extensions["sandbox.api_key"] = api_key
    app.register_blueprint(bp)


def portal() -> Portal:
    """The current app's portal."""
    return current_app.extensions["sandbox.portal"]


def calls() -> CallLog:
    """The current app's api call log."""
    return current_app.extensions["sandbox.calls"]


# --- request pipeline: record, limit, delay, inject faults, authenticate ---------------------------------


@bp.before_request
def open_call() -> Response | None:
    """Record the call, then apply limits, latency and faults, then check the API key."""
    path = request.path.removeprefix(PREFIX)
    g.sandbox_call = calls().start(request.method, _route(path), path, request.query_string.decode(),
                                   request.get_json(force=True, silent=True))
    response = faults.before("docspace", path, limited=True)
    if response is not None:
        return response
    if request.endpoint in ANONYMOUS_ENDPOINTS:
        return None
    if request.headers.get("Authorization") != f"Bearer {current_app.extensions['sandbox.api_key']}":
        raise ApiError(401, "Unauthorized", "System.Security.Authentication.AuthenticationException", -2146233087)
    return None


@bp.after_request
def close_call(response: Response) -> Response:
    """Apply an after_* fault and record how the call was answered."""
    response = faults.after(response)
    dropped = isinstance(response, faults.DroppedResponse)
    calls().finish(g.sandbox_call, None if dropped else response.status_code)
    return response


@bp.teardown_request
def release_write(_error: BaseException | None) -> None:
    """Free the request's concurrent-write slot."""
    faults.finish()


@bp.errorhandler(ApiError)
def render_error(error: ApiError) -> tuple[Response, int]:
    """DocSpace's error envelope."""
    return jsonify(error.envelope()), error.status


@bp.errorhandler(ValidationError)
def render_validation(error: ValidationError) -> Response:
    """ProblemDetails inside a success-shaped envelope, as ASP.NET model validation answers."""
    problem = {"type": VALIDATION_TYPE, "title": "One or more validation errors occurred.", "status": 400,
               "errors": error.errors}
    return _envelope(problem, status=400)


def _route(path: str) -> str:
    """The matched route as a DocSpace-style template (files/folder/{folderId}); the path itself if unknown."""
    rule = request.url_rule
    if rule is None or rule.endpoint == "docspace.unknown_route":
        return path
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(PREFIX))


def _envelope(payload: object, total: int | None = None, status: int = 200) -> Response:
    """The success envelope, with nulls omitted as DocSpace's serializer does."""
    count = len(payload) if isinstance(payload, list) else int(payload is not None)
    body = {"response": payload, "count": count, "total": total,
            "links": [{"href": request.url, "action": request.method}],
            "status": 0 if status == 200 else 1, "statusCode": status}
    response = jsonify(_without_nulls(body))
    response.status_code = status
    return response


def _without_nulls(value: object) -> object:
    """Drop null fields at every depth."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


# --- request parsing -------------------------------------------------------------------------------------


def _body() -> dict:
    """The JSON object body; a missing or malformed one fails model binding."""
    if not request.get_data():
        raise ValidationError("", "A non-empty request body is required.")
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ValidationError("$", "The JSON value could not be converted to the request model.")
    return body


def _field(body: dict, name: str) -> object:
    """A body property, matched case-insensitively like ASP.NET's binder."""
    return next((value for key, value in body.items() if key.lower() == name.lower()), None)


def _title(body: dict, name: str, max_length: int | None) -> str:
    """A required string property with DocSpace's [Required]/[StringLength] messages."""
    value = _field(body, name)
    if value is not None and not isinstance(value, str):
        json_name = f"$.{name[0].lower()}{name[1:]}"
        raise ValidationError(json_name, "The JSON value could not be converted to System.String.")
    if not value or not value.strip():
        raise ValidationError(name, f"The {name} field is required.")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(name, f"The field {name} must be a string or array type with a maximum length of "
                                    f"'{max_length}'.")
    return value


def _enum(value: object, names: dict[str, int]) -> int | None:
    """An enum sent as a number, a numeric string or a name (any case); None if it is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.strip().lstrip("-").isdigit():
            return int(value)
        return next((number for name, number in names.items() if name.lower() == value.strip().lower()), None)
    return None


def _access(value: object, field: str) -> int:
    """A FileShare value; an unknown name silently becomes 0 (None), as DocSpace's converter does."""
    if value is None:
        return 0
    if not isinstance(value, (int, str)) or isinstance(value, bool):
        raise ValidationError(field, "The JSON value could not be converted to ASC.Files.Core.Security.FileShare.")
    access = _enum(value, {name: number for number, name in enumerate(FILE_SHARE_NAMES)})
    return 0 if access is None else access


def _query_int(name: str, default: int) -> int:
    """An integer query parameter."""
    raw = request.args.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(name, f"The value '{raw}' is not valid.") from None


def _query_enum(name: str, raw: str, names: dict[str, int]) -> int:
    """An enum query parameter."""
    value = _enum(raw, names)
    if value is None:
        raise ValidationError(name, f"The value '{raw}' is not valid.")
    return value


def _query_tags() -> set[str]:
    """The `tags` query parameter, a JSON array of names."""
    raw = request.args.get("tags", "")
    if not raw:
        return set()
    try:
        tags = json.loads(raw)
    except ValueError:
        tags = None
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise bad_argument('tags must be a JSON array of strings, e.g. ["deal-123"]')
    return set(tags)


def _page(items: list) -> tuple[list, int, int]:
    """Apply startIndex/count (count at most 100); return the page, the start and the total."""
    start = max(0, _query_int("startIndex", 0))
    count = min(MAX_PAGE, max(0, _query_int("count", MAX_PAGE)))
    return items[start:start + count], start, len(items)


def _uuid(value: object, field: str) -> str:
    """A Guid, normalised to lower-case hyphenated form."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValidationError(field, "The JSON value could not be converted to System.Guid.") from None


# --- DTOs ------------------------------------------------------------------------------------------------


def _employee(user: User) -> dict:
    """EmployeeFullDto."""
    return {"id": user.id, "displayName": user.display_name, "firstName": user.first_name or None,
            "lastName": user.last_name or None, "email": user.email, "status": 1,
            "activationStatus": user.activation_status, "isOwner": user.is_owner,
            "isAdmin": user.type == "DocSpaceAdmin", "isRoomAdmin": user.type == "RoomAdmin",
            "isCollaborator": user.type == "User", "isVisitor": user.type == "Guest", "isLDAP": False,
            "isSSO": False}


def _author(user_id: str) -> dict:
    """EmployeeDto of the user who created an entry."""
    user = portal().user(user_id)
    return {"id": user_id, "displayName": user.display_name if user else None}


def _folder(folder: Folder) -> dict:
    """FolderDto."""
    root = portal().root(folder)
    folders, files = portal().contents(folder.id)
    writable = root.id != ARCHIVE_ID and folder.id not in (ROOMS_ID, ARCHIVE_ID)
    security = {"Read": True, "Create": writable, "Delete": writable, "Rename": writable, "CopyTo": writable,
                "MoveTo": writable, "Download": True}
    is_room = folder.room_type is not None
    if is_room:
        security.update(EditRoom=writable, EditAccess=writable,
                        CopySharedLink=writable and folder.room_type in EXTERNAL_LINK_ACCESSES)
    return {"id": folder.id, "title": folder.title, "parentId": folder.parent_id, "rootFolderId": root.id,
            "rootFolderType": root.folder_type, "type": folder.folder_type, "roomType": folder.room_type,
            "tags": list(folder.tags) if is_room else None, "filesCount": len(files), "foldersCount": len(folders),
            "new": 0, "private": False, "indexing": False if is_room else None,
            "denyDownload": False if is_room else None, "pinned": False if is_room else None, "mute": False,
            "created": folder.created, "updated": folder.created, "createdBy": _author(folder.created_by),
            "updatedBy": _author(folder.created_by), "security": security, "canShare": is_room and writable}


def _file(file: File) -> dict:
    """FileDto."""
    root = portal().root(portal().folder(file.folder_id))
    extension = os.path.splitext(file.title)[1].lower()
    base = request.host_url
    return {"id": file.id, "title": file.title, "folderId": file.folder_id, "version": 1, "versionGroup": 1,
            "contentLength": _size_text(file.size), "pureContentLength": file.size, "fileStatus": 0,
            "fileExst": extension, "fileType": FILE_TYPES.get(extension, 0),
            "viewUrl": f"{base}filehandler.ashx?action=download&fileid={file.id}",
            "webUrl": f"{base}doceditor?fileid={file.id}&version=1", "rootFolderId": root.id,
            "rootFolderType": root.folder_type, "created": file.created, "updated": file.created,
            "createdBy": _author(file.created_by), "updatedBy": _author(file.created_by),
            "security": {"Read": True, "Edit": True, "Delete": True, "Rename": True, "Copy": True, "Move": True,
                         "Download": True}}


def _size_text(size: int) -> str:
    """contentLength is a human-readable string in DocSpace (pureContentLength holds the number)."""
    value, unit = float(size), "bytes"
    for bigger in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.2f} {unit}" if unit != "bytes" else f"{size} bytes"


def _member(user: User, access: int, owner_id: str) -> dict:
    """FileShareDto of a room member."""
    person = _employee(user)
    is_owner = user.id == owner_id
    return {"access": access, "sharedTo": person, "sharedToUser": person, "isLocked": is_owner,
            "isOwner": is_owner, "canEditAccess": not is_owner, "subjectType": 0}


def _link(link: Link) -> dict:
    """FileShareDto of a room link; sharedTo (obsolete) repeats sharedLink."""
    external = link.link_type == EXTERNAL
    shared = {"id": link.id, "title": link.title, "shareLink": link.url(request.host_url),
              "linkType": link.link_type, "denyDownload": False, "isExpired": False, "primary": link.primary,
              "internal": False, "requestToken": link.request_token if external else None}
    subject_type = 4 if link.primary else 1 if external else 3
    return {"access": link.access, "sharedTo": shared, "sharedLink": shared, "isLocked": False, "isOwner": False,
            "canEditAccess": False, "canRevoke": not link.primary, "subjectType": subject_type}


def _contents(current: Folder, entries: list[Folder | File]) -> dict:
    """FolderContentDto for one page of entries."""
    page, start, total = _page(entries)
    return {"files": [_file(entry) for entry in page if isinstance(entry, File)],
            "folders": [_folder(entry) for entry in page if isinstance(entry, Folder)],
            "current": _folder(current),
            "pathParts": [{"id": folder.id, "title": folder.title} for folder in portal().path(current)],
            "startIndex": start, "count": len(page), "total": total, "new": 0}


# --- rooms, folders, files -------------------------------------------------------------------------------


@bp.get("/files/rooms")
def list_rooms() -> Response:
    """Find rooms by search area, tags, title text and type."""
    area = _query_enum("searchArea", request.args.get("searchArea", "0"), SEARCH_AREAS)
    types = {_query_enum("type", raw, ROOM_TYPES) for raw in request.args.getlist("type")}
    rooms = portal().rooms(area, _query_tags(), request.args.get("filterValue", ""), types)
    current = portal().folder(ARCHIVE_ID if area == 1 else ROOMS_ID)
    return _envelope(_contents(current, sorted(rooms, key=lambda room: room.id)))


@bp.post("/files/rooms")
def create_room() -> Response:
    """Create a room; two identical requests create two rooms."""
    body = _body()
    title = _title(body, "Title", 170)
    raw_type = _field(body, "roomType")
    if raw_type is None:
        raise ValidationError("RoomType", "The RoomType field is required.")
    room_type = _enum(raw_type, ROOM_TYPES)
    if room_type not in ROOM_FOLDER_TYPES:
        raise ValidationError("$.roomType", "The JSON value could not be converted to "
                                            "ASC.Files.Core.ApiModels.RequestDto.RoomType.")
    tags = _field(body, "tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValidationError("$.tags", "The JSON value could not be converted to System.String[].")
    room = portal().create_room(title, room_type, [tag.strip() for tag in tags if tag.strip()], OWNER_ID)
    return _envelope(_folder(room))


@bp.get("/files/rooms/<int:id>")
def get_room(id: int) -> Response:
    """One room."""
    return _envelope(_folder(portal().room(id)))


@bp.post("/files/folder/<int:folderId>")
def create_folder(folderId: int) -> Response:
    """Create a folder inside a room or folder; same titles are not merged."""
    title = _title(_body(), "Title", 165)
    return _envelope(_folder(portal().create_folder(folderId, title, OWNER_ID)))


@bp.get("/files/<int:folderId>")
def folder_contents(folderId: int) -> Response:
    """List a folder: subfolders first, then files (filterValue: titles containing it)."""
    folder = portal().folder(folderId)
    return _envelope(_contents(folder, _listing(folder)))


@bp.get("/files/@my")
def my_documents() -> Response:
    """List the API key's user's "My documents" like any folder."""
    folder = portal().folder(MY_DOCUMENTS_ID)
    return _envelope(_contents(folder, _listing(folder)))


def _listing(folder: Folder) -> list[Folder | File]:
    """A folder's subfolders then files, by id, keeping titles that contain filterValue (any case)."""
    folders, files = portal().contents(folder.id)
    text = request.args.get("filterValue", "").strip().lower()
    entries = sorted(folders, key=lambda entry: entry.id) + sorted(files, key=lambda entry: entry.id)
    return [entry for entry in entries if text in entry.title.lower()]


@bp.get("/files/file/<int:fileId>")
def file_info(fileId: int) -> Response:
    """One file's FileDto; an unknown id is refused with 403, as DocSpace's GetFileAsync does."""
    return _envelope(_file(portal().file(fileId)))


@bp.post("/files/file/<int:fileId>/copyas")
def copy_file_as(fileId: int) -> Response:
    """Copy a file into a folder under a new title."""
    body = _body()
    title = _title(body, "DestTitle", None)
    dest = _field(body, "destFolderId")
    if isinstance(dest, str) and dest.strip().isdigit():
        dest = int(dest)
    if isinstance(dest, str):
        # A non-numeric string addresses a third-party folder, and there are none here.
        raise invalid_operation("folder not found")
    if not isinstance(dest, int) or isinstance(dest, bool):
        # DocSpace answers any other JSON kind (or none) with a null response rather than an error.
        return _envelope(None)
    return _envelope(_file(portal().copy_file(fileId, dest, title, OWNER_ID)))


# --- members and links -----------------------------------------------------------------------------------


@bp.put("/files/rooms/<int:id>/share")
def share_room(id: int) -> Response:
    """Invite, change or remove members; a body without `invitations` changes nothing."""
    body = _body()
    room = portal().room(id)
    raw = _field(body, "invitations")
    if raw is None:
        return _envelope({"members": [], "error": 0})
    if not isinstance(raw, list):
        raise ValidationError("$.invitations", "The JSON value could not be converted to "
                                               "System.Collections.Generic.IEnumerable`1[RoomInvitation].")
    invitations = [_invitation(item, index) for index, item in enumerate(raw)]
    shared = portal().share(room.id, [invitation for invitation in invitations if invitation is not None])
    return _envelope({"members": [_member(user, access, room.created_by) for user, access in shared],
                      "warning": None, "error": 0})


def _invitation(item: object, index: int) -> Invitation | None:
    """One invitation: a user id or an email with an access; None if it names nobody."""
    if not isinstance(item, dict):
        raise ValidationError(f"$.invitations[{index}]", "The JSON value could not be converted to RoomInvitation.")
    access = _access(_field(item, "access"), f"$.invitations[{index}].access")
    user_id, email = _field(item, "id"), _field(item, "email")
    if user_id:
        return Invitation(access, user_id=_uuid(user_id, f"$.invitations[{index}].id"))
    if email:
        if not isinstance(email, str) or "@" not in email:
            raise ValidationError(f"Invitations[{index}].Email", "The Email field is not a valid e-mail address.")
        return Invitation(access, email=email.strip())
    return None


@bp.get("/files/rooms/<int:id>/share")
def room_members(id: int) -> Response:
    """All members of a room, paged."""
    room = portal().room(id)
    page, _, total = _page(portal().members(room.id))
    return _envelope([_member(user, access, room.created_by) for user, access in page], total=total)


@bp.get("/files/rooms/<int:id>/link")
def primary_link(id: int) -> Response:
    """The room's primary external link, created on first request."""
    return _envelope(_link(portal().primary_link(id)))


@bp.get("/files/rooms/<int:id>/links")
def room_links(id: int) -> Response:
    """A room's links, optionally of one type (0 invitation, 1 external)."""
    raw = request.args.get("type", "")
    link_type = _query_enum("type", raw, LINK_TYPES) if raw else None
    return _envelope([_link(link) for link in portal().links(id, link_type)])


@bp.put("/files/rooms/<int:id>/links")
def set_room_link(id: int) -> Response:
    """Create a link, or update one by linkId (access 0 revokes it)."""
    body = _body()
    raw_id = _field(body, "linkId")
    link_id = _uuid(raw_id, "$.linkId") if raw_id else None
    access = _access(_field(body, "access"), "$.access")
    raw_type = _field(body, "linkType")
    link_type = 0 if raw_type is None else _enum(raw_type, LINK_TYPES)
    if link_type not in (0, 1):
        raise ValidationError("$.linkType", "The JSON value could not be converted to ASC.Files.Core.LinkType.")
    title = _field(body, "title")
    if title is not None and (not isinstance(title, str) or len(title) > 255):
        raise ValidationError("Title", "The field Title must be a string with a maximum length of '255'.")
    link = portal().set_link(id, link_id, access, link_type, title)
    return _envelope(None if link is None else _link(link))


# --- people ----------------------------------------------------------------------------------------------


@bp.get("/people/email")
def person_by_email() -> Response:
    """Look a user up by email."""
    email = request.args.get("email", "").strip()
    if not email:
        raise bad_argument("Value cannot be null. (Parameter 'email')")
    return _envelope(_employee(portal().user_by_email(email)))


@bp.get("/people/@self")
def current_user() -> Response:
    """The user the API key belongs to."""
    return _envelope(_employee(portal().user(OWNER_ID)))


@bp.get("/people/<userid>")
def person(userid: str) -> Response:
    """One user by id."""
    return _envelope(_employee(portal().visible_user(userid)))


@bp.get("/people/filter")
def people_filter() -> Response:
    """Users whose name or e-mail contains filterValue, paged (count at most 100), with the total."""
    page, _, total = _page(portal().search_users(request.args.get("filterValue", "")))
    return _envelope([_employee(user) for user in page], total=total)


@bp.get("/settings/version/build")
def build_version() -> Response:
    """The portal's version (VersionController; anonymous). documentServer is null, so omitted: no Docs here."""
    return _envelope({"docSpace": DOCSPACE_VERSION, "documentServer": None})


@bp.route("/<path:unknown>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def unknown_route(unknown: str) -> Response:
    """Any other api/2.0 path."""
    raise not_found(f"No api/2.0 route for {request.method} {unknown}")

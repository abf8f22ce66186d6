"""The DocSpace API client: one method per endpoint the onboarding uses, one session, typed errors.

Every call goes through DocSpace.call, which sends it through the shared outside-call wrapper (limiter, timeouts,
metrics, 429 and 5xx: outside.py), unwraps the {response, status} envelope and turns failures into
TransientError (worth retrying: connection errors, timeouts, 429, 5xx, unreadable answers) or PermanentError
(400, 401, 402, 403, 404...: retrying will not help), carrying DocSpace's own message. See
../shared/reference/docspace-api.md for the facts behind each method.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests

from onboarding.errors import PermanentError, TransientError
from onboarding.limiter import Limiter
from onboarding.limits import FleetLimiter
from onboarding.outside import OutsideApi

ROOMS_SEARCH_AREA_ANY = 2
PAGE_SIZE = 100


class DocSpace:
    """A client for one portal, authenticated with an API key; safe to share between threads."""

    def __init__(self, base_url: str, api_key: str, *, connect_timeout: float, read_timeout: float,
                 limiter: Limiter | FleetLimiter, pool_size: int = 32) -> None:
        """A client with its own pooled session."""
        self.limiter = limiter
        self.api = OutsideApi("DocSpace", "docspace", f"{base_url.rstrip('/')}/api/2.0",
                              timeout=(connect_timeout, read_timeout), limiter=limiter, pool_size=pool_size,
                              headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                              describe=_describe)

    # -- rooms -----------------------------------------------------------------------------------------------

    def rooms_tagged(self, tag: str) -> list[dict]:
        """Rooms (active or archived) carrying a tag."""
        payload = self.call("GET", "files/rooms", endpoint="GET files/rooms",
                            params={"tags": json.dumps([tag]), "searchArea": ROOMS_SEARCH_AREA_ANY,
                                    "count": PAGE_SIZE})
        return [room for room in payload.get("folders", []) if tag in _tag_names(room.get("tags"))]

    def create_room(self, title: str, room_type: int, tags: list[str]) -> dict:
        """Create a room; DocSpace has no idempotency key, so look with rooms_tagged first."""
        return self.call("POST", "files/rooms", endpoint="POST files/rooms",
                         body={"title": title, "roomType": room_type, "tags": tags})

    def share_room(self, room_id: int, invitations: list[dict], notify: bool, message: str | None) -> dict:
        """Set members' access: invitations of {"id" or "email", "access"} (not "entries": DocSpace ignores it)."""
        body: dict[str, Any] = {"invitations": invitations, "notify": notify}
        if message:
            body["message"] = message
        return self.call("PUT", f"files/rooms/{room_id}/share", endpoint="PUT files/rooms/{id}/share", body=body)

    def room_members(self, room_id: int) -> list[dict]:
        """Every member of a room, all pages."""
        members: list[dict] = []
        while True:
            page = self.call("GET", f"files/rooms/{room_id}/share", endpoint="GET files/rooms/{id}/share",
                             params={"startIndex": len(members), "count": PAGE_SIZE})
            members.extend(page)
            if len(page) < PAGE_SIZE:
                return members

    def primary_external_link(self, room_id: int) -> dict:
        """The room's primary external link, which DocSpace creates (access viewer) if there is none."""
        return self.call("GET", f"files/rooms/{room_id}/link", endpoint="GET files/rooms/{id}/link")

    def set_link_access(self, room_id: int, link_id: str, access: int) -> dict:
        """Change an external link's access."""
        return self.call("PUT", f"files/rooms/{room_id}/links", endpoint="PUT files/rooms/{id}/links",
                         body={"linkId": link_id, "access": access, "linkType": 1})

    # -- folders and files -----------------------------------------------------------------------------------

    def folder_contents(self, folder_id: int) -> dict:
        """A folder's (or room's) subfolders and files, all pages."""
        contents: dict[str, list] = {"folders": [], "files": []}
        start = 0
        while True:
            page = self.call("GET", f"files/{folder_id}", endpoint="GET files/{folderId}",
                             params={"startIndex": start, "count": PAGE_SIZE})
            contents["folders"].extend(page.get("folders", []))
            contents["files"].extend(page.get("files", []))
            seen = len(page.get("folders", [])) + len(page.get("files", []))
            start += seen
            if seen == 0 or start >= page.get("total", 0):
                return contents

    def create_folder(self, parent_id: int, title: str) -> dict:
        """Create a folder in a folder or room."""
        return self.call("POST", f"files/folder/{parent_id}", endpoint="POST files/folder/{folderId}",
                         body={"title": title})

    def copy_file(self, file_id: int, dest_folder_id: int, dest_title: str) -> dict:
        """Copy a file (a template) into a folder under a new title."""
        return self.call("POST", f"files/file/{file_id}/copyas", endpoint="POST files/file/{fileId}/copyas",
                         body={"destFolderId": dest_folder_id, "destTitle": dest_title})

    # -- people ----------------------------------------------------------------------------------------------

    def user_by_email(self, email: str) -> dict | None:
        """The portal user with this e-mail address, or None when there is none."""
        try:
            return self.call("GET", "people/email", endpoint="GET people/email", params={"email": email})
        except PermanentError as error:
            if error.status == 404:
                return None
            raise

    def me(self) -> dict:
        """The user the API key acts as (EmployeeFullDto: isOwner, isAdmin, isRoomAdmin...)."""
        return self.call("GET", "people/@self", endpoint="GET people/@self")

    def user(self, user_id: str) -> dict | None:
        """The portal user with this id, or None when there is none."""
        try:
            return self.call("GET", f"people/{quote(user_id, safe='')}", endpoint="GET people/{userid}")
        except PermanentError as error:
            if error.status == 404:
                return None
            raise

    def search_people(self, text: str) -> list[dict]:
        """The first 100 users whose name or e-mail contains the text (all of them for an empty text)."""
        return self.call("GET", "people/filter", endpoint="GET people/filter",
                         params={"filterValue": text, "count": PAGE_SIZE})

    # -- the portal and its files, for operators' checks and lookups -----------------------------------------

    def version(self) -> dict:
        """The portal's versions ({"docSpace", "documentServer"}); DocSpace answers this without an API key."""
        return self.call("GET", "settings/version/build", endpoint="GET settings/version/build")

    def file_info(self, file_id: int) -> dict:
        """A file's details (FileDto); DocSpace refuses a file that is missing or unreadable with 403."""
        return self.call("GET", f"files/file/{file_id}", endpoint="GET files/file/{fileId}")

    def folder(self, folder_id: int, search: str | None = None) -> dict:
        """The first 100 entries of a folder or room whose titles contain search, with current, pathParts, total."""
        return self.call("GET", f"files/{folder_id}", endpoint="GET files/{folderId}",
                         params={"filterValue": search or "", "count": PAGE_SIZE})

    def my_documents(self, search: str | None = None) -> dict:
        """Like folder, for the API key's user's "My documents"."""
        return self.call("GET", "files/@my", endpoint="GET files/@my",
                         params={"filterValue": search or "", "count": PAGE_SIZE})

    # -- the one place requests are made ---------------------------------------------------------------------

    def call(self, method: str, path: str, *, endpoint: str, params: dict | None = None,
             body: dict | None = None) -> Any:
        """Make one API call and return the envelope's response, or raise a TransientError or PermanentError."""
        return _unwrap(self.api.send(method, path, endpoint=endpoint, params=params, json=body), endpoint)


def _unwrap(answer: requests.Response, endpoint: str) -> Any:
    """The response of a DocSpace envelope, or the typed error it describes."""
    try:
        envelope = answer.json()
    except ValueError:
        envelope = None
    code = answer.status_code
    message = _message(envelope) or f"HTTP {code} without a DocSpace answer"
    if code >= 400:
        raise PermanentError(f"DocSpace refused ({code}): {message}", endpoint, code)
    if not isinstance(envelope, dict) or "response" not in envelope:
        raise TransientError(f"DocSpace answered {code} without an envelope", endpoint, code)
    if envelope.get("status", 0) != 0:
        raise PermanentError(f"DocSpace refused: {message}", endpoint, envelope.get("statusCode", code))
    return envelope["response"]


def _describe(answer: requests.Response) -> str:
    """DocSpace's message in an error answer (for the 429s and 5xx the wrapper raises on)."""
    try:
        envelope = answer.json()
    except ValueError:
        envelope = None
    return _message(envelope) or f"HTTP {answer.status_code} without a DocSpace answer"


def _message(envelope: Any) -> str | None:
    """DocSpace's error message in an error envelope or a validation ProblemDetails."""
    if not isinstance(envelope, dict):
        return None
    error = envelope.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    problem = envelope.get("response")
    if isinstance(problem, dict) and isinstance(problem.get("errors"), dict):
        details = "; ".join(f"{field}: {' '.join(map(str, texts))}" for field, texts in problem["errors"].items())
        return f"{problem.get('title', 'validation failed')} {details}"[:500]
    return None


def _tag_names(tags: Any) -> set[str]:
    """Tag names from a room's tags, which DocSpace lists as strings."""
    if not isinstance(tags, list):
        return set()
    return {tag if isinstance(tag, str) else str(tag.get("name", "")) for tag in tags if tag}

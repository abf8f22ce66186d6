"""Finding the DocSpace ids the settings and the plan need: `flask --app wsgi docspace people` and `... files`.

ACCOUNT_MANAGER_ID is a user's id and every [[templates]] file_id a file's id, and DocSpace's web pages show
neither. These commands list them through the service's own DocSpace client (its API key, limits and timeouts),
as a table or, with --json, as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from onboarding.docspace import PAGE_SIZE, DocSpace
from onboarding.errors import ServiceError
from onboarding.steps import account_type, may_manage_rooms

MY_DOCUMENTS = "@my"
PEOPLE_COMMAND = "flask --app wsgi docspace people --search NAME"
FILES_COMMAND = "flask --app wsgi docspace files --folder @my"

docspace_cli = AppGroup("docspace", help="Find DocSpace ids: people (ACCOUNT_MANAGER_ID) and files (the plan's "
                                         "template file_ids).")
T = TypeVar("T")


@docspace_cli.command("people")
@click.option("--search", default="", help="Part of a name or e-mail address (default: everyone).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def people_command(search: str, as_json: bool) -> None:
    """List DocSpace users: id, name, e-mail, account type, and whether they can manage rooms."""
    users = _ask(lambda: _docspace().search_people(search))
    people = [{"id": user.get("id"), "name": user.get("displayName"), "email": user.get("email"),
               "account_type": account_type(user), "can_manage_rooms": may_manage_rooms(user)} for user in users]
    if as_json:
        click.echo(json.dumps(people, indent=2))
        return
    if not people:
        click.echo(f"No DocSpace user's name or e-mail contains {search!r}." if search else "No DocSpace users.")
        return
    _table(("ID", "NAME", "E-MAIL", "ACCOUNT TYPE", "MANAGES ROOMS"),
           [(person["id"], person["name"], person["email"], person["account_type"],
             "yes" if person["can_manage_rooms"] else "no") for person in people])
    if len(people) >= PAGE_SIZE:
        click.echo(f"Only the first {PAGE_SIZE} are shown: narrow them with --search.")


@docspace_cli.command("files")
@click.option("--folder", required=True, metavar="ID|@my",
              help='A folder or room id, or "@my" for the API key\'s user\'s My documents.')
@click.option("--search", default="", help="Part of a title (default: everything in the folder).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def files_command(folder: str, search: str, as_json: bool) -> None:
    """List a folder's subfolders and files: id, title, and type (folder, or file with its extension)."""
    docspace = _docspace()
    if folder.strip().lower() == MY_DOCUMENTS:
        contents = _ask(lambda: docspace.my_documents(search))
    else:
        try:
            folder_id = int(folder)
        except ValueError:
            raise click.BadParameter(f'{folder!r} is neither a folder id (a number) nor "@my"',
                                     param_hint="--folder") from None
        contents = _ask(lambda: docspace.folder(folder_id, search))
    entries = [{"id": entry.get("id"), "title": entry.get("title"), "type": "folder", "extension": None}
               for entry in contents.get("folders") or []]
    entries += [{"id": entry.get("id"), "title": entry.get("title"), "type": "file",
                 "extension": entry.get("fileExst") or None} for entry in contents.get("files") or []]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    current = contents.get("current") or {}
    path = " / ".join(str(part.get("title")) for part in contents.get("pathParts") or []) or current.get("title")
    click.echo(f"{path} (folder {current.get('id')})")
    if not entries:
        click.echo(f"No title here contains {search!r}." if search else "It is empty.")
        return
    _table(("ID", "TYPE", "TITLE"), [(entry["id"], _kind(entry), entry["title"]) for entry in entries])
    hidden = (contents.get("total") or 0) - len(entries)
    if hidden > 0:
        click.echo(f"{hidden} more not shown: narrow them with --search.")


def _kind(entry: dict) -> str:
    """An entry's type as the table shows it: folder, or file with its extension."""
    if entry["type"] == "folder":
        return "folder"
    return f"file ({entry['extension']})" if entry["extension"] else "file"


def _docspace() -> DocSpace:
    """The wired services' DocSpace client."""
    return current_app.extensions["onboarding"].docspace


def _ask(call: Callable[[], T]) -> T:
    """Make a DocSpace call; its failure becomes the command's error, in DocSpace's own words."""
    try:
        return call()
    except ServiceError as error:
        raise click.ClickException(error.message) from None


def _table(headers: tuple[str, ...], rows: list[tuple]) -> None:
    """Print rows under headers in aligned columns (the last one unpadded)."""
    cells = [[str(value if value is not None else "-") for value in row] for row in rows]
    widths = [max(len(row[column]) for row in [list(headers), *cells]) for column in range(len(headers) - 1)]
    for row in [list(headers), *cells]:
        click.echo("  ".join([*(value.ljust(width) for value, width in zip(row, widths, strict=False)), row[-1]]))


def init_app(app: Flask) -> None:
    """Register `flask --app wsgi docspace people|files`."""
    app.cli.add_command(docspace_cli)

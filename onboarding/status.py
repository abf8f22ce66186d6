"""Status links: a signed, expiring URL that shows one onboarding's progress without the admin token.

Programs get JSON; a browser (an Accept that prefers text/html) gets a page a salesperson can read.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, jsonify, render_template, request
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from onboarding.views import onboarding_summary

bp = Blueprint("status", __name__)

# The steps every plan has, in a salesperson's words; folders and copies are named from their own titles.
STEP_TITLES = {
    "enrich:client": "Find the client in the CRM",
    "enrich:owner": "Find the deal owner in the CRM",
    "hubspot:deal": "Read the deal",
    "pipedrive:deal": "Read the deal",
    "manager": "Choose the room manager",
    "room": "Create the client room",
    "client": "Find or invite the client in DocSpace",
    "access": "Give the client and the manager access to the room",
    "link": "Make the room's share link",
    "write-back": "Write the room onto the CRM deal",
    "callback": "Tell the CRM",
}
# The page is static HTML with inline styles: nothing else may load, run or frame it, and the token in its URL
# must not leak to the room's site as a Referer.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer"}


class _Signer(TimestampSigner):
    """itsdangerous' TimestampSigner, deriving each secret's key once rather than on every signature."""

    def __init__(self, *args, **kwargs) -> None:
        """As TimestampSigner."""
        super().__init__(*args, **kwargs)
        self._derived: dict = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        """The key derived from secret_key (the newest secret when None), computed on first use."""
        key = self._derived.get(secret_key)
        if key is None:
            key = self._derived[secret_key] = super().derive_key(secret_key)
        return key


class StatusLinks:
    """Makes and reads the tokens in status links."""

    def __init__(self, secret_key: str, public_base_url: str, max_age_seconds: int) -> None:
        """Links under public_base_url, valid for max_age_seconds."""
        # A signed id (<id>.<time>.<signature>), not a serialized payload: it is made for every accepted webhook,
        # and signing a plain string costs a fifth of serializing one.
        self.signer = _Signer(secret_key, salt="onboarding-status")
        self.public_base_url = public_base_url
        self.max_age_seconds = max_age_seconds

    def url(self, onboarding_id: str) -> str:
        """The status URL of one onboarding."""
        return f"{self.public_base_url}/status/{self.signer.sign(onboarding_id).decode()}"

    def read(self, token: str) -> str:
        """The onboarding id in a token; raises itsdangerous' BadSignature (or SignatureExpired)."""
        return self.signer.unsign(token, max_age=self.max_age_seconds).decode()


@bp.get("/status/<token>")
def show(token: str):
    """One onboarding's status, for whoever holds its signed link: JSON, or a page for a browser."""
    services = current_app.extensions["onboarding"]
    try:
        onboarding_id = services.status_links.read(token)
    except SignatureExpired:
        return _refusal("This status link has expired.", 410)
    except BadSignature:
        return _refusal("This status link is not valid.", 404)
    summary = onboarding_summary(services.db, onboarding_id, services.step_names, detailed=False)
    if summary is None:
        return _refusal("No such onboarding.", 404)
    if not _wants_html():
        return jsonify(summary)
    last_error = summary["last_error"] if summary["status"] in ("queued", "failed") else None
    page = render_template("status.html", summary=summary, last_error=last_error,
                           done=[step for step in summary["steps"] if step["status"] == "done"],
                           to_do=[step for step in summary["steps"] if step["status"] != "done"])
    return page, 200, PAGE_HEADERS


@bp.app_template_filter("step_title")
def step_title(name: str | None) -> str:
    """A step's name in words, e.g. folder:Invoices -> Folder “Invoices”."""
    if not name:
        return "Onboarding"
    if name in STEP_TITLES:
        return STEP_TITLES[name]
    kind, _, rest = name.partition(":")
    if kind == "folder":
        return f"Folder “{rest}”"
    if kind == "copy":
        folder, _, title = rest.partition("/")
        return f"Copy “{title}” into {folder}" if folder else f"Copy “{title}” into the room"
    return name


@bp.app_template_filter("moment")
def moment(iso: str | None) -> str:
    """An ISO timestamp of the read models (naive UTC with a Z) in words, e.g. 30 Nov 2026, 17:23 UTC."""
    if not iso:
        return ""
    when = datetime.fromisoformat(iso.removesuffix("Z"))
    return f"{when.day} {when:%b %Y, %H:%M} UTC"


def _wants_html() -> bool:
    """Whether the request prefers a page to JSON (a browser); */* and no Accept at all get JSON."""
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _refusal(message: str, status: int):
    """An expired, invalid or unknown link: the same words as a page or as JSON."""
    if _wants_html():
        return render_template("status.html", refusal=message), status, PAGE_HEADERS
    return jsonify(error=message), status


@bp.after_request
def vary_on_accept(response):
    """Mark every answer as chosen by Accept, so that caches keep the page and the JSON apart."""
    response.vary.add("Accept")
    return response

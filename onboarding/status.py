"""Status links: a signed, expiring URL that shows one onboarding's progress without the admin token."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from onboarding.views import onboarding_summary

bp = Blueprint("status", __name__)


class StatusLinks:
    """Makes and reads the tokens in status links."""

    def __init__(self, secret_key: str, public_base_url: str, max_age_seconds: int) -> None:
        """Links under public_base_url, valid for max_age_seconds."""
        # A signed id (<id>.<time>.<signature>), not a serialized payload: it is made for every accepted webhook,
        # and signing a plain string costs a fifth of serializing one.
        self.signer = TimestampSigner(secret_key, salt="onboarding-status")
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
    """One onboarding's status, for whoever holds its signed link."""
    services = current_app.extensions["onboarding"]
    try:
        onboarding_id = services.status_links.read(token)
    except SignatureExpired:
        return jsonify(error="This status link has expired."), 410
    except BadSignature:
        return jsonify(error="This status link is not valid."), 404
    summary = onboarding_summary(services.db, onboarding_id, services.step_names, detailed=False)
    if summary is None:
        return jsonify(error="No such onboarding."), 404
    return jsonify(summary)

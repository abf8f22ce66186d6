"""A fake CRM that records the callbacks it receives under /crm/."""

from __future__ import annotations

import threading
import time

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from . import faults

bp = Blueprint("crm", __name__, url_prefix="/crm")


class CallbackLog:
    """The callbacks received, in order."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._items: list[dict] = []

    def record(self, callback: dict) -> None:
        """Keep one callback."""
        with self._lock:
            self._items.append(callback)

    def all(self) -> list[dict]:
        """Every callback so far."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        """Forget every callback."""
        with self._lock:
            self._items.clear()


def init_app(app: Flask) -> None:
    """Attach a callback log and register the blueprint."""
    app.extensions["sandbox.crm"] = CallbackLog()
    app.register_blueprint(bp)


def callbacks() -> CallbackLog:
    """The current app's callback log."""
    return current_app.extensions["sandbox.crm"]


@bp.before_request
def apply_faults() -> Response | None:
    """Latency and crm-targeted faults; the CRM has no rate limits here."""
    return faults.before("crm", request.path.removeprefix("/crm/"), limited=False)


@bp.after_request
def apply_after_faults(response: Response) -> Response:
    """An after_* fault replaces the real answer."""
    return faults.after(response)


@bp.route("/<path:path>", methods=["POST", "PUT", "PATCH"])
def receive(path: str) -> Response:
    """Record a callback exactly as it arrived."""
    callbacks().record({"path": request.path, "method": request.method, "headers": dict(request.headers),
                        "body": request.get_data(as_text=True), "received_at": time.time()})
    return jsonify(ok=True)

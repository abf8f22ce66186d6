"""Health checks for a load balancer: /healthz (the process is alive) and /readyz (send it traffic)."""

from __future__ import annotations

import threading

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)
_draining = threading.Event()


def start_draining() -> None:
    """From now on /readyz answers 503 so the load balancer stops sending traffic (set on SIGTERM)."""
    _draining.set()


@bp.get("/healthz")
def healthz():
    """Alive: answers without touching any dependency, so a database blip never restarts the process."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready: not draining, the database answers and its schema is the one this code expects."""
    services = current_app.extensions["onboarding"]
    checks: dict[str, str] = {"draining": "yes" if _draining.is_set() else "no"}
    try:
        current, head = services.db.schema_state()
        checks["database"] = "ok"
        checks["schema"] = "ok" if current == head else f"at {current}, code expects {head}: run flask db upgrade"
    except Exception as error:  # any failure to reach the database means not ready
        checks["database"] = f"unreachable ({type(error).__name__})"
    ready = checks["draining"] == "no" and checks.get("database") == "ok" and checks.get("schema") == "ok"
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503

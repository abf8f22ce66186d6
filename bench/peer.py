"""The peer: a typical, competent Flask receiver doing the same job, served beside deal-won and trivial.

What a careful team writes from the libraries' documentation: Flask-SQLAlchemy with a commit per request on SQLite
in WAL mode with synchronous=FULL (fsync before the answer, as the service does), the standardwebhooks library's
verify on the raw body, the same marshmallow schema, the same two records (the delivery as received, kept for
replay, and the deal's onboarding), each looked for before it is created (by webhook-id, then by deal id) with
unique constraints behind, one log line, and a signed status link (itsdangerous). The bench compares the service
with it; the service never runs this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from datetime import UTC, datetime

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from itsdangerous import URLSafeTimedSerializer
from marshmallow import ValidationError
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from onboarding.schemas import DealWonSchema

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["PEER_DATABASE_URL"]
db = SQLAlchemy(app)
webhook = Webhook(os.environ["WEBHOOK_SECRETS"].replace(",", " ").split()[0])
schema = DealWonSchema(default_manager=os.environ.get("ACCOUNT_MANAGER_ID"))
links = URLSafeTimedSerializer(os.environ["SECRET_KEY"], salt="status")
log = logging.getLogger("peer")
KEPT_HEADERS = ("webhook-id", "webhook-timestamp", "content-type", "user-agent")
logging.basicConfig(level=logging.INFO,
                    format='{"ts": "%(asctime)s", "level": "%(levelname)s", "message": %(message)s}')


class Onboarding(db.Model):
    """A won deal to onboard: one per deal."""

    id = db.Column(db.String(36), primary_key=True)
    deal_id = db.Column(db.String(100), unique=True, nullable=False)
    title = db.Column(db.String(300))
    client_id = db.Column(db.String(100), nullable=False)
    client_name = db.Column(db.String(300), nullable=False)
    client_email = db.Column(db.String(320), nullable=False)
    manager_user_id = db.Column(db.String(36))
    status = db.Column(db.String(20), nullable=False, default="queued")
    attempts = db.Column(db.Integer, nullable=False, default=0)
    created_at = db.Column(db.DateTime, nullable=False)
    updated_at = db.Column(db.DateTime, nullable=False)


class Event(db.Model):
    """A delivery as received (kept for replay), and the onboarding it asked for."""

    id = db.Column(db.String(36), primary_key=True)
    delivery_id = db.Column(db.String(255), unique=True, nullable=False)
    headers = db.Column(db.JSON, nullable=False)
    body = db.Column(db.LargeBinary, nullable=False)
    received_at = db.Column(db.DateTime, nullable=False)
    onboarding_id = db.Column(db.String(36), db.ForeignKey(Onboarding.id))


with app.app_context():
    @event.listens_for(db.engine, "connect")
    def _durable(dbapi_connection, _record) -> None:
        """WAL, and an fsync at every commit."""
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=FULL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    with contextlib.suppress(OperationalError):  # gunicorn's other worker process made the table at this moment
        db.create_all()


@app.post("/webhooks/deal-won")
def deal_won():
    """Verify, validate, record the delivery and its onboarding (each looked for first), answer with a status link."""
    body = request.get_data()
    try:
        webhook.verify(body, dict(request.headers))
    except WebhookVerificationError as error:
        return jsonify(error=str(error)), 401
    try:
        data = schema.load(json.loads(body))
    except ValueError:
        return jsonify(error="not JSON"), 400
    except ValidationError as error:
        return jsonify(errors=error.normalized_messages()), 422
    delivery_id, deal = request.headers["webhook-id"], data["deal"]
    onboarding, duplicate = _find(delivery_id, deal["id"])
    if onboarding is None:
        now = datetime.now(UTC)
        client, manager = data["client"], data.get("account_manager") or {}
        onboarding = Onboarding(id=str(uuid.uuid4()), deal_id=deal["id"], title=deal["title"], client_id=client["id"],
                                client_name=client["name"], client_email=client["email"],
                                manager_user_id=str(manager.get("docspace_user_id") or ""), created_at=now,
                                updated_at=now)
        db.session.add(onboarding)
        db.session.add(Event(id=str(uuid.uuid4()), delivery_id=delivery_id, body=body, received_at=now,
                             headers={name: request.headers.get(name) for name in KEPT_HEADERS},
                             onboarding_id=onboarding.id))
        try:
            db.session.commit()
        except IntegrityError:  # another request recorded the same delivery or deal meanwhile
            db.session.rollback()
            onboarding, duplicate = _find(delivery_id, deal["id"])
    status = 200 if duplicate else 202
    log.info(json.dumps({"path": request.path, "status": status, "deal_id": onboarding.deal_id,
                         "onboarding_id": onboarding.id}))
    return jsonify(onboarding_id=onboarding.id, status=onboarding.status, duplicate=duplicate,
                   status_url=f"{os.environ['PUBLIC_BASE_URL']}/status/{links.dumps(onboarding.id)}"), status


def _find(delivery_id: str, deal_id: str) -> tuple[Onboarding | None, bool]:
    """The onboarding a delivery or its deal already has, if any (and whether it is one)."""
    event = Event.query.filter_by(delivery_id=delivery_id).first()
    if event is not None:
        return db.session.get(Onboarding, event.onboarding_id), True
    onboarding = Onboarding.query.filter_by(deal_id=deal_id).first()
    return onboarding, onboarding is not None

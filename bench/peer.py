"""The peer: a typical, competent Flask receiver doing the same job, served beside deal-won and trivial.

What a careful team writes from the libraries' documentation: Flask-SQLAlchemy with a commit per request on SQLite
in WAL mode with synchronous=FULL (fsync before the answer, as the service does), the standardwebhooks library's
verify on the raw body, the same marshmallow schema, dedupe by a unique webhook-id and deal id, one log line, and a
signed status link (itsdangerous). The bench compares the service with it; the service never runs this module.
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
logging.basicConfig(level=logging.INFO,
                    format='{"ts": "%(asctime)s", "level": "%(levelname)s", "message": %(message)s}')


class Onboarding(db.Model):
    """A won deal to onboard."""

    id = db.Column(db.String(36), primary_key=True)
    webhook_id = db.Column(db.String(255), unique=True, nullable=False)
    deal_id = db.Column(db.String(100), unique=True, nullable=False)
    client_email = db.Column(db.String(320), nullable=False)
    body = db.Column(db.LargeBinary, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False)


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
    """Verify, validate, record (deduped), answer with a status link."""
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
    onboarding = Onboarding(id=str(uuid.uuid4()), webhook_id=request.headers["webhook-id"],
                            deal_id=data["deal"]["id"], client_email=data["client"]["email"], body=body,
                            created_at=datetime.now(UTC))
    db.session.add(onboarding)
    try:
        db.session.commit()
        status, duplicate = 202, False
    except IntegrityError:
        db.session.rollback()
        onboarding = Onboarding.query.filter((Onboarding.webhook_id == request.headers["webhook-id"])
                                             | (Onboarding.deal_id == data["deal"]["id"])).first()
        status, duplicate = 200, True
    log.info(json.dumps({"path": request.path, "status": status, "deal_id": onboarding.deal_id,
                         "onboarding_id": onboarding.id}))
    return jsonify(onboarding_id=onboarding.id, status="queued", duplicate=duplicate,
                   status_url=f"{os.environ['PUBLIC_BASE_URL']}/status/{links.dumps(onboarding.id)}"), status

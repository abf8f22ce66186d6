"""The accept path with parts of its work taken out: the floor, and where deal-won's CPU goes.

`without("validation", "write", "log")` is the floor: the real app with the validation (marshmallow), the durable
write and the request's log line replaced by no-ops. Served beside the real endpoint and the trivial one under the
same gunicorn settings, it shows what the route itself costs (the fast path or Flask's dispatch, the request id,
the signature check, the metrics, the answer with its signed status link) and what the work the accept path
exists for costs: no implementation of that work can beat the floor. With one piece named, the app lacks only
that piece (`--breakdown`). The service never runs this module; it exists to be measured:
gunicorn ... "bench.floor:without('validation', 'write', 'log')".
"""

from __future__ import annotations

import json
import logging

from flask import Flask

from onboarding import create_app
from onboarding.domain import GENERIC, Client, Deal
from onboarding.groupcommit import GroupCommit
from onboarding.sources import DEAL_WON, Verdict

PIECES = ("validation", "write", "log")


def without(*pieces: str) -> Flask:
    """The deal-won app with these pieces of its work replaced by no-ops."""
    unknown = set(pieces) - set(PIECES)
    if unknown:
        raise ValueError(f"unknown pieces {sorted(unknown)}: choose from {PIECES}")
    app = create_app()
    if "validation" in pieces:
        app.extensions["onboarding"].sources[GENERIC].judge = _unvalidated
    if "write" in pieces:
        GroupCommit.insert = lambda self, onboarding, event: True  # "committed" without touching the database
    if "log" in pieces:
        logging.getLogger("onboarding.http").disabled = True  # the request's one log line
    return app


def _unvalidated(body: bytes) -> Verdict:
    """The verdict on a well-formed deal-won body, read without marshmallow (the bench sends no other)."""
    document = json.loads(body)
    client, manager = document["client"], document["account_manager"]
    deal = Deal(source=GENERIC, deal_id=document["deal"]["id"], title=document["deal"]["title"],
                client=Client(client["id"], client["name"], client["email"]),
                manager_user_id=manager["docspace_user_id"])
    return Verdict("accepted", event_type=DEAL_WON, deal=deal, deal_id=deal.deal_id)

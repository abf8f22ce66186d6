"""The accept path's floor: the real app, with the work a deal-won request must do taken out.

Served beside the real endpoint and the trivial one, under the same gunicorn settings, it shows how much of the
gap between them is the route itself (Flask's dispatch, our request hooks, the signature check, the metrics, the
answer with its signed status link) and how much is the work the accept path exists for: validating the payload
with marshmallow, committing the event durably and writing the request's log line, which are replaced here by
no-ops. Whatever the floor's throughput is, no implementation of that work can beat it. The service never runs
this module; it exists to be measured.
"""

from __future__ import annotations

import json
import logging

from onboarding import create_app
from onboarding.domain import GENERIC, Client, Deal
from onboarding.groupcommit import GroupCommit
from onboarding.sources import DEAL_WON, Verdict

app = create_app()
_source = app.extensions["onboarding"].sources["generic"]


def _unvalidated(body: bytes) -> Verdict:
    """The verdict on a well-formed deal-won body, read without marshmallow (the bench sends no other)."""
    document = json.loads(body)
    client, manager = document["client"], document["account_manager"]
    deal = Deal(source=GENERIC, deal_id=document["deal"]["id"], title=document["deal"]["title"],
                client=Client(client["id"], client["name"], client["email"]),
                manager_user_id=manager["docspace_user_id"])
    return Verdict("accepted", event_type=DEAL_WON, deal=deal, deal_id=deal.deal_id)


_source.judge = _unvalidated
GroupCommit.insert = lambda self, onboarding, event: True  # "committed" without touching the database
logging.getLogger("onboarding.http").disabled = True  # the request's one log line

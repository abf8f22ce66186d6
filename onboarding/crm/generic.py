"""The generic CRM: any sender of a Standard Webhooks signed "deal.won", told back with a signed callback.

The source verifies the Standard Webhooks signature over the raw body and reads schemas.DealWonSchema. The
write-back POSTs a Standard Webhooks signed JSON body to CRM_CALLBACK_URL. Its message id is derived from the
onboarding and the event type, so every retry of one callback carries the same webhook-id and the CRM can drop
repeats.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from marshmallow import ValidationError

from onboarding import signatures
from onboarding.domain import GENERIC, Room
from onboarding.errors import TransientError
from onboarding.outside import OutsideApi
from onboarding.schemas import DealWonSchema, to_deal
from onboarding.signatures import signed_headers
from onboarding.sources import DEAL_WON, Delivery, Inbound, Verdict, identifier, ignored, read_json
from onboarding.status import StatusLinks

if TYPE_CHECKING:
    from onboarding.queue import Work

ENDPOINT = "POST callback"


class StandardWebhooksSource:
    """The generic signed webhook: Standard Webhooks headers, the DealWonSchema payload."""

    name = GENERIC
    headers_to_keep = ("webhook-id", "webhook-timestamp", "content-type", "user-agent")

    def __init__(self, secrets: tuple[bytes, ...], tolerance_seconds: int, default_manager: str | None) -> None:
        """A source accepting any of the given secrets (several at once while rotating)."""
        self.secrets = secrets
        self.tolerance_seconds = tolerance_seconds
        self.default_manager = default_manager
        self.schema = DealWonSchema(default_manager=default_manager)

    def verify(self, inbound: Inbound) -> None:
        """Check the Standard Webhooks signature over the raw body."""
        signatures.verify(self.secrets, inbound.headers, inbound.body, tolerance_seconds=self.tolerance_seconds)

    def deliveries(self, inbound: Inbound) -> Delivery:
        """One delivery, identified by its webhook-id."""
        return Delivery(inbound.headers["webhook-id"], inbound.body)

    def judge(self, body: bytes) -> Verdict:
        """Parse and validate the payload."""
        document, refusal = read_json(body)
        if refusal is not None:
            return refusal
        if not isinstance(document, dict):
            return Verdict("rejected", problem="invalid", errors={"_schema": ["Expected a JSON object."]})
        event_type = document.get("type")
        if isinstance(event_type, str) and event_type != DEAL_WON:
            return ignored(event_type[:100], f'the event type is "{event_type[:100]}", not "{DEAL_WON}"')
        deal = document.get("deal")
        deal_id = identifier(deal.get("id")) if isinstance(deal, dict) else None
        try:
            data = self.schema.load(document)
        except ValidationError as error:
            return Verdict("rejected", event_type=DEAL_WON if event_type == DEAL_WON else None, problem="invalid",
                           errors=error.normalized_messages(), deal_id=deal_id)
        won = to_deal(data, self.default_manager)
        return Verdict("accepted", event_type=DEAL_WON, deal=won, deal_id=won.deal_id)




class SignedCallback:
    """POSTs Standard Webhooks signed JSON to one URL; anything but a 2xx is retried later."""

    step = "callback"
    looks_before_creating = False  # the CRM drops repeats by webhook-id

    def __init__(self, url: str, key: bytes, timeout: float, status_links: StatusLinks, pool_size: int = 8) -> None:
        """A write-back to url, signing with key, linking to each onboarding's status page."""
        self.url = url
        self.key = key
        self.status_links = status_links
        self.api = OutsideApi("the CRM", "crm", url, timeout=(timeout, timeout), limiter=None, pool_size=pool_size)

    def room_ready(self, onboarding: Work, room: Room, *, first_try: bool) -> dict:
        """Send onboarding.completed with the room's id, title, link and folders."""
        timestamp = datetime.now(UTC).isoformat(timespec="seconds")
        deal = onboarding.deal
        status = self.deliver("onboarding.completed", f"onb_{onboarding.onboarding_id}_completed", {
            "onboarding_id": onboarding.onboarding_id, "deal_id": deal.deal_id,
            "client_id": deal.client.id if deal.client else None,
            "room": {"id": room.id, "title": room.title, "url": room.url}, "folders": room.folders,
            "status_url": self.status_links.url(onboarding.onboarding_id), "timestamp": timestamp})
        return {"http_status": status, "delivered_at": timestamp}

    def onboarding_failed(self, onboarding: Work, error: dict) -> None:
        """Send onboarding.failed with the failed step and its message."""
        deal = onboarding.deal
        self.deliver("onboarding.failed", f"onb_{onboarding.onboarding_id}_failed_{error.get('attempts')}", {
            "onboarding_id": onboarding.onboarding_id, "deal_id": deal.deal_id,
            "client_id": deal.client.id if deal.client else None,
            "error": {"step": error.get("step"), "message": error["message"]},
            "status_url": self.status_links.url(onboarding.onboarding_id),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")})

    def send_test(self) -> int:
        """Send a signed onboarding.test under a fresh webhook-id (`check --send-test`); return the CRM's 2xx status."""
        return self.deliver("onboarding.test", f"msg_test_{secrets.token_hex(12)}",
                            {"timestamp": datetime.now(UTC).isoformat(timespec="seconds")})

    def deliver(self, event_type: str, message_id: str, payload: dict) -> int:
        """POST one signed message; a non-2xx answer or no answer raises TransientError."""
        body = json.dumps({"type": event_type, **payload}, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", **signed_headers(self.key, message_id, body)}
        # Redirects are failures in Standard Webhooks: a moved endpoint must be reconfigured, not guessed.
        answer = self.api.send("POST", self.url, endpoint=ENDPOINT, data=body, headers=headers,
                               allow_redirects=False)
        if not 200 <= answer.status_code < 300:
            raise TransientError(f"the CRM answered {answer.status_code}: {answer.text[:200]!r}", ENDPOINT,
                                 answer.status_code)
        return answer.status_code

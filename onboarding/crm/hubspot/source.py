"""HubSpot in: app webhooks signed with signature v3, a batch of events each judged on its own.

Signature v3 (../shared/reference/webhook-signatures.md, section 4): X-HubSpot-Signature-v3 is the base64
HMAC-SHA256, keyed with the app's client secret, of "POST" + the URI HubSpot called + the raw body +
X-HubSpot-Request-Timestamp (milliseconds), refused beyond 5 minutes either way. HubSpot signs the URL it called,
not what a proxy forwards to us, so the URI is PUBLIC_BASE_URL + the path (+ the query string), with the escapes
HubSpot's v3 rules decode decoded.

A deal is won when its dealstage changes into a closed-won stage: `closedwon` in the default pipeline, or any
stage whose pipeline settings say closed with probability 1.0. Only HubSpot's API knows the second, and the web
process never waits on it (a slow HubSpot must not delay the acknowledgement), so such a change is recorded as
pending and the worker judges it (resolve, onboarding/pending.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable

from onboarding.crm.hubspot.api import HubSpotApi
from onboarding.domain import Deal
from onboarding.signatures import SignatureError
from onboarding.sources import Delivery, Inbound, Verdict, identifier, ignored, read_json

NAME = "hubspot"
PATH = "/webhooks/hubspot"
DEAL_OBJECT_TYPE = "0-3"
DEALSTAGE = "dealstage"
WON_IN_DEFAULT_PIPELINE = "closedwon"
LOST_IN_DEFAULT_PIPELINE = "closedlost"
# HubSpot's v3 rules: these escapes in the URI are decoded before signing.
V3_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
              "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
PIPELINES_MAX_AGE_SECONDS = 300.0


def v3_uri(public_url: str, query_string: bytes) -> str:
    """The URI HubSpot signed: the public URL it called, plus the query string, with v3's escapes decoded."""
    uri = public_url + ("?" + query_string.decode("latin-1") if query_string else "")
    for escaped, plain in V3_DECODED.items():
        uri = uri.replace(escaped, plain).replace(escaped.lower(), plain)
    return uri


def v3_signature(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The X-HubSpot-Signature-v3 value of one request."""
    signed = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(client_secret.encode(), signed, hashlib.sha256).digest()).decode()


class HubSpotSource:
    """POST /webhooks/hubspot: an app webhook batch."""

    name = NAME
    headers_to_keep = ("x-hubspot-request-timestamp", "content-type", "user-agent")

    def __init__(self, client_secret: str, public_base_url: str, tolerance_seconds: int,
                 api: HubSpotApi | None = None) -> None:
        """A source verifying with the app's client secret; api (the worker's) judges pending events."""
        self.client_secret = client_secret
        self.public_url = public_base_url + PATH
        self.tolerance_seconds = tolerance_seconds
        self.pipelines = WonStages(api) if api is not None else None

    def verify(self, inbound: Inbound) -> None:
        """Check signature v3 and its timestamp."""
        offered = inbound.headers.get("X-HubSpot-Signature-v3", "")
        timestamp = inbound.headers.get("X-HubSpot-Request-Timestamp", "")
        if not offered or not timestamp:
            missing = [name for name, value in (("X-HubSpot-Signature-v3", offered),
                                                ("X-HubSpot-Request-Timestamp", timestamp)) if not value]
            raise SignatureError("missing header " + ", ".join(missing), "missing")
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 15:
            raise SignatureError("malformed X-HubSpot-Request-Timestamp (expected Unix milliseconds)", "malformed")
        age = time.time() - int(timestamp) / 1000
        if age > self.tolerance_seconds:
            raise SignatureError("timestamp too old", "stale")
        if age < -self.tolerance_seconds:
            raise SignatureError("timestamp too new", "stale")
        expected = v3_signature(self.client_secret, inbound.method, v3_uri(self.public_url, inbound.query_string),
                                inbound.body, timestamp)
        if not hmac.compare_digest(expected.encode(), offered.encode()):
            raise SignatureError("the signature does not match", "mismatch")

    def deliveries(self, inbound: Inbound) -> Delivery | list[Delivery]:
        """One delivery per event of a batch; a body that is no batch is one delivery, refused when judged."""
        document, refusal = read_json(inbound.body)
        if refusal is not None or not isinstance(document, list) \
                or not all(isinstance(event, dict) for event in document):
            return Delivery("body-" + hashlib.sha256(inbound.body).hexdigest()[:40], inbound.body)
        return [Delivery(event_key(event), json.dumps(event, separators=(",", ":")).encode())
                for event in document]

    def judge(self, body: bytes) -> Verdict:
        """Read one event: a move into closedwon is a won deal, into another stage pending, the rest ignored."""
        return self._judge(body, _default_pipeline)

    def resolve(self, body: bytes) -> Verdict:
        """Judge a pending event with the portal's pipeline settings (calls HubSpot; raises ServiceError)."""
        return self._judge(body, self.pipelines.judge)

    @staticmethod
    def _judge(body: bytes, stage_won: Callable[[str], tuple[bool, str] | None]) -> Verdict:
        """The verdict on one event, stage_won telling whether a stage is closed-won (None: cannot tell yet)."""
        event, refusal = _event(body)
        if refusal is not None:
            return refusal
        kind, deal_id, stage = event
        if stage is None:
            return ignored(kind, "not a change of a deal's dealstage", deal_id)
        judged = stage_won(stage)
        if judged is None:
            return Verdict("pending", event_type=kind, deal_id=deal_id)
        won, where = judged
        if not won:
            return ignored(kind, f'the deal moved to stage "{stage}"{where}, which is not closed-won', deal_id)
        return Verdict("accepted", event_type=kind, deal=_deal(body, deal_id), deal_id=deal_id)


def _default_pipeline(stage: str) -> tuple[bool, str] | None:
    """What the web process knows without asking HubSpot: the default pipeline's closed stages."""
    if stage == WON_IN_DEFAULT_PIPELINE:
        return True, ""
    if stage == LOST_IN_DEFAULT_PIPELINE:
        return False, ""
    return None


def event_key(event: dict) -> str:
    """What identifies one change across redeliveries (attemptNumber aside; eventId alone is not unique)."""
    fields = [event.get(name) for name in ("portalId", "appId", "subscriptionId", "subscriptionType", "objectId",
                                           "objectTypeId", "propertyName", "propertyValue", "occurredAt",
                                           "eventId")]
    return "hs-" + hashlib.sha256(json.dumps(fields, default=str).encode()).hexdigest()[:40]


def _event(body: bytes) -> tuple[tuple[str, str, str | None] | None, Verdict | None]:
    """(subscription type, deal id, new dealstage or None) of one event, or a verdict refusing or ignoring it."""
    event, refusal = read_json(body)
    if refusal is not None:
        return None, refusal
    if not isinstance(event, dict):
        return None, Verdict("rejected", problem="invalid", errors={"_schema": [
            "Expected a JSON array of HubSpot webhook events (objects)."]})
    kind = event.get("subscriptionType")
    missing = [name for name in ("subscriptionType", "portalId", "objectId")
               if identifier(event.get(name)) is None]
    if missing:
        return None, Verdict("rejected", event_type=kind[:100] if isinstance(kind, str) else None,
                             problem="invalid", errors={name: ["Missing or not an id."] for name in missing})
    kind, object_id = kind[:100], identifier(event["objectId"])
    is_deal = kind.startswith("deal.") or (kind.startswith("object.")
                                           and str(event.get("objectTypeId")) == DEAL_OBJECT_TYPE)
    if not is_deal:
        return None, ignored(kind, "not a deal event")
    stage = identifier(event.get("propertyValue"))
    if not kind.endswith(".propertyChange") or event.get("propertyName") != DEALSTAGE or stage is None:
        return (kind, object_id, None), None
    return (kind, object_id, stage), None


def _deal(body: bytes, deal_id: str) -> Deal:
    """The won deal an event names: its portal and id (the worker asks HubSpot for the rest)."""
    return Deal(source=NAME, deal_id=deal_id, account_id=identifier(json.loads(body)["portalId"]))


class WonStages:
    """Which deal stages are closed-won, from the portal's pipeline settings, cached for a few minutes."""

    def __init__(self, api: HubSpotApi) -> None:
        """Stages read with api."""
        self.api = api
        self._lock = threading.Lock()
        self._stages: dict[str, tuple[bool, str]] = {}
        self._read_at = float("-inf")

    def judge(self, stage: str) -> tuple[bool, str]:
        """Whether a stage id is closed-won, and where it is ("of pipeline X"); reads the settings again when
        they are old or do not know the stage (a pipeline added since)."""
        with self._lock:
            stale = time.monotonic() - self._read_at > PIPELINES_MAX_AGE_SECONDS
            if stale or stage not in self._stages:
                self._stages = {stage_id: entry for pipeline in self.api.pipelines()
                                for stage_id, entry in _stages(pipeline).items()}
                self._read_at = time.monotonic()
            return self._stages.get(stage, (False, " (in none of the portal's deal pipelines)"))


def _stages(pipeline: dict) -> dict[str, tuple[bool, str]]:
    """The stages of one pipeline: closed-won (closed, probability 1.0) or not, and where they are."""
    where = f' of pipeline "{pipeline.get("label") or pipeline.get("id")}"'
    found = {}
    for stage in pipeline.get("stages") or []:
        metadata = stage.get("metadata") or {}
        try:
            probability = float(metadata.get("probability", "nan"))
        except (TypeError, ValueError):
            probability = float("nan")
        found[str(stage.get("id"))] = (str(metadata.get("isClosed")).lower() == "true" and probability == 1.0,
                                       where)
    return found

"""Write-backs: how the CRM is told that a client's room is ready (or that onboarding failed).

The generic write-back POSTs a Standard Webhooks signed JSON body to CRM_CALLBACK_URL. The message id is
derived from the onboarding and the event type, so every retry of one callback carries the same webhook-id and
the CRM can drop repeats. Native CRM write-backs (a HubSpot deal PATCH, a Pipedrive note...) implement the same
WriteBack protocol.
"""

from __future__ import annotations

import json
import time
from typing import Protocol

import requests

from onboarding.errors import TransientError, retry_after_seconds
from onboarding.http import pooled_session
from onboarding.metrics import observe_call
from onboarding.signatures import signed_headers

ENDPOINT = "POST callback"


class WriteBack(Protocol):
    """Tells a CRM about an onboarding."""

    def deliver(self, event_type: str, message_id: str, payload: dict) -> int:
        """Deliver one message; return the HTTP status on success, raise a ServiceError otherwise."""


class SignedCallback:
    """POSTs Standard Webhooks signed JSON to one URL; anything but a 2xx is retried later."""

    def __init__(self, url: str, key: bytes, timeout: float, pool_size: int = 8) -> None:
        """A write-back to url, signing with key."""
        self.url = url
        self.key = key
        self.timeout = timeout
        self.session = pooled_session(pool_size)

    def deliver(self, event_type: str, message_id: str, payload: dict) -> int:
        """POST the signed payload; a non-2xx answer or no answer raises TransientError."""
        body = json.dumps({"type": event_type, **payload}, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", **signed_headers(self.key, message_id, body)}
        started = time.monotonic()
        status = "error"
        try:
            try:
                # Redirects are failures in Standard Webhooks: a moved endpoint must be reconfigured, not guessed.
                answer = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout,
                                           allow_redirects=False)
            except requests.Timeout:
                raise TransientError(f"the CRM did not answer within {self.timeout:g} s", ENDPOINT) from None
            except requests.RequestException as error:
                raise TransientError(f"cannot reach the CRM: {type(error).__name__}", ENDPOINT) from None
            status = str(answer.status_code)
            if not 200 <= answer.status_code < 300:
                raise TransientError(f"the CRM answered {answer.status_code}: {answer.text[:200]!r}", ENDPOINT,
                                     answer.status_code, retry_after_seconds(answer.headers.get("Retry-After")))
            return answer.status_code
        finally:
            observe_call("crm", ENDPOINT, status, time.monotonic() - started)


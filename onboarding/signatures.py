"""Standard Webhooks signatures: verifying the CRM's requests and signing our callbacks.

The scheme (https://www.standardwebhooks.com): HMAC-SHA256 over ``{id}.{timestamp}.{raw body}``, keyed with the
base64-decoded part of a ``whsec_`` secret, sent as ``webhook-signature: v1,<base64> [v1,<base64> ...]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"


class SecretError(ValueError):
    """A secret is not in the whsec_<base64> form."""


class SignatureError(Exception):
    """A request's signature is missing, malformed, wrong or stale; the message says which, without secrets."""

    def __init__(self, message: str, code: str) -> None:
        """An error with a short code for metrics: missing, malformed, stale or mismatch."""
        super().__init__(message)
        self.code = code


def parse_secret(text: str) -> bytes:
    """Decode a whsec_<base64> secret into its key bytes."""
    if not text.startswith(SECRET_PREFIX):
        raise SecretError("expected whsec_<base64>")
    encoded = text[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise SecretError("the part after whsec_ is not base64") from None
    if len(key) < 16:
        raise SecretError("the key is shorter than 16 bytes")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The v1 signature of one message, as it goes into the webhook-signature header."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for a message we send."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }


def verify(keys: Iterable[bytes], headers: Mapping[str, str], body: bytes, *,
           tolerance_seconds: int, now: float | None = None) -> str:
    """Check a request's signature against any of the keys; return its webhook-id or raise SignatureError."""
    message_id = headers.get("webhook-id", "")
    raw_timestamp = headers.get("webhook-timestamp", "")
    raw_signatures = headers.get("webhook-signature", "")
    if not message_id or not raw_timestamp or not raw_signatures:
        missing = [name for name, value in (("webhook-id", message_id), ("webhook-timestamp", raw_timestamp),
                                            ("webhook-signature", raw_signatures)) if not value]
        raise SignatureError("missing header " + ", ".join(missing), "missing")
    if len(message_id) > 255 or "." in message_id:
        raise SignatureError("malformed webhook-id", "malformed")
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit()) or len(raw_timestamp) > 12:
        raise SignatureError("malformed webhook-timestamp (expected Unix seconds)", "malformed")
    timestamp = int(raw_timestamp)
    now = time.time() if now is None else now
    if timestamp < now - tolerance_seconds:
        raise SignatureError("timestamp too old", "stale")
    if timestamp > now + tolerance_seconds:
        raise SignatureError("timestamp too new", "stale")
    offered = [entry.partition(",")[2] for entry in raw_signatures.split() if entry.startswith("v1,")]
    if not offered:
        raise SignatureError("no v1 signature in webhook-signature", "malformed")
    for key in keys:
        expected = sign(key, message_id, timestamp, body).partition(",")[2]
        # compare_digest on every candidate keeps the time independent of which one matches
        if any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in offered):
            return message_id
    raise SignatureError("no signature matches", "mismatch")

"""Signatures: ours verify what the reference library signs, and the library verifies what we sign."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from onboarding.signatures import SecretError, SignatureError, parse_secret, signed_headers, verify

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"type":"deal.won"}'


def library_headers(secret: str = SECRET, timestamp: float | None = None, message_id: str = "msg_1") -> dict:
    """Headers signed by the standardwebhooks library."""
    moment = datetime.fromtimestamp(timestamp or time.time(), UTC)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, moment, BODY.decode())}


def test_we_verify_the_library_and_any_of_several_keys():
    keys = [parse_secret(OTHER), parse_secret(SECRET)]
    assert verify(keys, library_headers(), BODY, tolerance_seconds=300) == "msg_1"


def test_the_library_verifies_what_we_sign():
    headers = signed_headers(parse_secret(SECRET), "msg_2", BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {"type": "deal.won"}


def test_one_matching_signature_among_several_is_enough():
    headers = library_headers()
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"] + " v1a,ignored"
    assert verify([parse_secret(SECRET)], headers, BODY, tolerance_seconds=300) == "msg_1"


@pytest.mark.parametrize(("change", "code"), [
    ({"webhook-signature": ""}, "missing"),
    ({"webhook-timestamp": "12.5"}, "malformed"),
    ({"webhook-signature": "v2,abc"}, "malformed"),
    ({"webhook-id": "a.b"}, "malformed"),
    ({"webhook-timestamp": -301}, "stale"),
    ({"webhook-timestamp": +301}, "stale"),
])
def test_refusals_say_why(change, code):
    if isinstance(change.get("webhook-timestamp"), int):  # seconds away from now, computed when the test runs
        change = {"webhook-timestamp": str(int(time.time()) + change["webhook-timestamp"])}
    headers = {**library_headers(), **change}
    with pytest.raises(SignatureError) as error:
        verify([parse_secret(SECRET)], headers, BODY, tolerance_seconds=300)
    assert error.value.code == code


def test_a_wrong_key_or_body_does_not_match():
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([parse_secret(OTHER)], library_headers(), BODY, tolerance_seconds=300)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([parse_secret(SECRET)], library_headers(), BODY + b" ", tolerance_seconds=300)


@pytest.mark.parametrize("text", ["secret", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()])
def test_malformed_secrets_are_refused(text):
    with pytest.raises(SecretError):
        parse_secret(text)

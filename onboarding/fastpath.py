"""The accepted deal-won request, answered without Flask's request machinery.

Nearly every request a busy receiver gets is the happy one: a genuine, valid "deal won" for a new deal. Flask's
request machinery (the request and app contexts, routing, the hooks, the Response object) costs that request
about as much CPU as its durable write. This WSGI middleware answers it with the route's own code (the source's
verify and judge, webhooks.record, webhooks.brief, the same log line, the same metrics) and the answer Flask would
give, byte for byte. Everything else goes to Flask untouched, the body put back as it came: another path or
method, a body of unknown or excessive length, a bad signature, a payload refused or ignored, a delivery or deal
already known, a database away or recovering, or anything unexpected. A delivery the group commit did not take is
marked in the environ, so Flask goes straight to the careful path (intake.py) instead of offering it again.
"""

from __future__ import annotations

import io
import time

from flask import Flask
from werkzeug.datastructures import EnvironHeaders

from onboarding import logs, unavailable, webhooks
from onboarding.domain import GENERIC
from onboarding.intake import Receipt
from onboarding.sources import Inbound

PATH = "/webhooks/deal-won"


class AcceptFastPath:
    """WSGI middleware in front of the app's own wsgi_app (see the module's docstring)."""

    def __init__(self, app: Flask) -> None:
        """The fast path for app's generic source; every request when that source is off goes to the app."""
        self.app = app
        self.flask = app.wsgi_app
        self.services = app.extensions["onboarding"]
        self.source = self.services.sources.get(GENERIC)
        self.max_body = app.config["MAX_CONTENT_LENGTH"]

    def __call__(self, environ: dict, start_response):
        """Answer the happy request here; hand every other one to Flask."""
        if (self.source is None or environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST"
                or self.app.debug or unavailable.outage_known()):
            return self.flask(environ, start_response)
        length = environ.get("CONTENT_LENGTH", "")
        if not (length.isascii() and length.isdigit()) or int(length) > self.max_body:
            return self.flask(environ, start_response)
        started = time.monotonic()
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, should the request be its after all
        if len(body) != int(length):
            return self.flask(environ, start_response)
        headers = EnvironHeaders(environ)
        request_id = logs.start_request(headers.get("X-Request-ID", ""))
        receipt = self._new_deal(environ, headers, body)
        if receipt is None:
            logs.clear()
            return self.flask(environ, start_response)
        content = self.app.json.dumps(webhooks.brief(self.services, receipt, with_outcome=False),
                                      separators=(",", ":"))
        content = f"{content}\n".encode()
        start_response("202 ACCEPTED", [("Content-Type", "application/json"), ("Content-Length", str(len(content))),
                                        ("X-Request-ID", request_id)])
        logs.request_done("POST", PATH, 202, started)
        logs.clear()
        return [content]

    def _new_deal(self, environ: dict, headers: EnvironHeaders, body: bytes) -> Receipt | None:
        """The receipt of a genuine, valid delivery of a new deal, once committed; None for any other request."""
        source = self.source
        inbound = Inbound("POST", environ.get("QUERY_STRING", "").encode("latin1"), headers, body)
        try:
            source.verify(inbound)
            delivery = source.deliveries(inbound)
            verdict = source.judge(delivery.body)
        except Exception:  # a bad signature, or anything unexpected: Flask does it again, and answers it its way
            return None
        if verdict.outcome != "accepted":
            return None
        receipt = webhooks.record(self.services, source, inbound, delivery, verdict, careful=False)
        if receipt is None:
            environ[webhooks.GROUP_COMMIT_TRIED] = True
        return receipt


def install(app: Flask) -> None:
    """Put the fast path in front of app's request handling."""
    app.wsgi_app = AcceptFastPath(app)

"""The sandbox served inside the calling process: a requests transport adapter that hands each request to the
sandbox's WSGI app instead of a socket, for logic tests that run whole onboardings in milliseconds.

The clients under test are the real ones (their sessions, envelopes, errors and retries); only the wire is
missing. A fault that drops the connection arrives as requests' ConnectionError, as it would over a socket.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from flask import Flask
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


class InProcessAdapter(BaseAdapter):
    """Answers requests from a Flask app in this process."""

    def __init__(self, app: Flask) -> None:
        """An adapter for app (a sandbox from onboarding.sandbox.create_app)."""
        super().__init__()
        self.client = app.test_client()

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout=None, verify=True, cert=None,
             proxies=None) -> requests.Response:
        """Run the request through the app and return its answer as requests would."""
        url = urlsplit(request.url)
        try:
            answer = self.client.open(url.path, method=request.method, query_string=url.query,
                                      headers=dict(request.headers), data=request.body)
            body = answer.get_data()
        except ConnectionAbortedError as error:  # the sandbox's "drop" faults
            raise requests.ConnectionError(str(error), request=request) from None
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers)
        response._content = body
        response.url = request.url
        response.request = request
        response.encoding = answer.mimetype_params.get("charset")
        response.reason = answer.status.partition(" ")[2]
        return response

    def close(self) -> None:
        """Nothing to close."""

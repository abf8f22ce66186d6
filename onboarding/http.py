"""HTTP sessions for calls out (DocSpace, the CRM): pooled, and configured once rather than on every request."""

from __future__ import annotations

import os
import urllib.request

import requests
from requests.adapters import HTTPAdapter


def pooled_session(pool_size: int) -> requests.Session:
    """A session keeping up to pool_size connections per host alive, never retrying on its own.

    requests would read the proxy and CA-bundle environment variables again on every call (trust_env), which
    costs real CPU at a few hundred calls a second; they are read here, once, instead.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies = urllib.request.getproxies()
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

"""DocSpace sandbox: local imitations of the DocSpace, HubSpot and Pipedrive REST APIs plus a fake CRM callback
receiver."""

from __future__ import annotations

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from . import control, crm, docspace, faults, hubspot, pipedrive

__all__ = ["create_app", "serve"]


def create_app(api_key: str = "sk-sandbox", latency_ms: int = 0, hubspot_token: str = "pat-na1-sandbox",
               pipedrive_token: str = "pd-sandbox-token") -> Flask:
    """Build the sandbox app: api/2.0, the fake CRM, /hubspot, /pipedrive and the /_sandbox control API."""
    app = Flask(__name__)
    # Keep fields in the order DocSpace writes them; Flask would sort them otherwise.
    app.json.sort_keys = False
    faults.init_app(app, latency_ms)
    docspace.init_app(app, api_key)
    crm.init_app(app)
    hubspot.init_app(app, hubspot_token)
    pipedrive.init_app(app, pipedrive_token)
    app.register_blueprint(control.bp)
    return app


def serve(host: str = "127.0.0.1", port: int = 8090, api_key: str = "sk-sandbox", latency_ms: int = 0,
          hubspot_token: str = "pat-na1-sandbox", pipedrive_token: str = "pd-sandbox-token") -> BaseWSGIServer:
    """Bind a threaded sandbox server (port 0 picks a free one); start it with serve_forever()."""
    return make_server(host, port, create_app(api_key, latency_ms, hubspot_token, pipedrive_token), threaded=True)

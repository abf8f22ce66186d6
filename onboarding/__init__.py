"""Deal won -> a prepared ONLYOFFICE DocSpace client room -> the CRM told. create_app() wires it together."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from onboarding import logs
from onboarding.bootstrap import Services, bootstrap
from onboarding.config import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Services", "create_app"]


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """The Flask app, from the environment's settings unless given (or services already built); raises
    ConfigError on a bad setting."""
    from onboarding import admin, cli, console, health, metrics, retention, status, webhooks

    logs.configure()
    # Every /readyz reads the schema revision; alembic would log two lines for each probe.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    services = services or bootstrap(settings or load_settings())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["onboarding"] = services
    for blueprint in (webhooks.bp, status.bp, admin.bp, health.bp, metrics.bp):
        app.register_blueprint(blueprint)
    console.init_app(app)
    logs.init_app(app)
    cli.init_app(app)
    retention.init_app(app)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        """Every HTTP error as JSON: {"error": "..."}."""
        return jsonify(error=error.description), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        """A bug: logged with its traceback, answered 500 without details."""
        app.logger.exception("unhandled error")
        return jsonify(error="Internal error; it has been logged."), 500

    return app

"""Deal won -> a prepared ONLYOFFICE DocSpace client room -> the CRM told. create_app() wires it together."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from onboarding import logs
from onboarding.config import ConfigError, Settings, load_settings
from onboarding.db import Database
from onboarding.plan import Plan, PlanError, load_plan
from onboarding.sources import Source, StandardWebhooksSource
from onboarding.status import StatusLinks

__all__ = ["ConfigError", "Services", "create_app"]


@dataclass
class Services:
    """Everything the web app and the CLI share, built once from the settings."""

    settings: Settings
    plan: Plan
    db: Database
    sources: dict[str, Source]
    status_links: StatusLinks

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Load the plan and connect the database (a bad plan raises ConfigError naming the key)."""
        try:
            plan = load_plan(settings.onboarding_plan)
        except PlanError as error:
            raise ConfigError(f"ONBOARDING_PLAN {error}") from None
        generic = StandardWebhooksSource(settings.webhook_secrets, settings.signature_tolerance_seconds,
                                         settings.account_manager_id)
        return cls(settings=settings, plan=plan, db=Database(settings.database_url),
                   sources={generic.name: generic},
                   status_links=StatusLinks(settings.secret_key, settings.public_base_url,
                                            settings.status_link_max_age_seconds))


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app, from the environment's settings unless given; raises ConfigError on a bad setting."""
    from onboarding import admin, cli, health, metrics, status, webhooks

    logs.configure()
    # Every /readyz reads the schema revision; alembic would log two lines for each probe.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    services = Services.build(settings or load_settings())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["onboarding"] = services
    for blueprint in (webhooks.bp, status.bp, admin.bp, health.bp, metrics.bp):
        app.register_blueprint(blueprint)
    logs.init_app(app)
    cli.init_app(app)

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

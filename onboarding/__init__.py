"""Deal won -> a prepared ONLYOFFICE DocSpace client room -> the CRM told. create_app() wires it together."""

from __future__ import annotations

import itertools
import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from onboarding import logs
from onboarding.bootstrap import Services, bootstrap
from onboarding.config import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Services", "create_app", "create_migration_app", "is_migration_command"]

MIGRATION_COMMANDS = ("upgrade", "current")


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """The Flask app, from the environment's settings unless given (or services already built); raises
    ConfigError on a bad setting."""
    from onboarding import (
        admin,
        check,
        cli,
        console,
        fastpath,
        health,
        lookup,
        metrics,
        retention,
        status,
        unavailable,
        webhooks,
    )

    logs.configure()
    # Every /readyz reads the schema revision; alembic would log two lines for each probe.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    services = services or bootstrap(settings or load_settings())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["onboarding"] = services
    app.extensions["onboarding.db"] = services.db
    for blueprint in (webhooks.bp, status.bp, admin.bp, health.bp, metrics.bp):
        app.register_blueprint(blueprint)
    console.init_app(app)
    logs.init_app(app)
    cli.init_app(app)
    retention.init_app(app)
    check.init_app(app)
    lookup.init_app(app)
    unavailable.init_app(app)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        """Every HTTP error as JSON: {"error": "..."}."""
        return jsonify(error=error.description), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        """A bug: logged with its traceback, answered 500 without details."""
        app.logger.exception("unhandled error")
        return jsonify(error="Internal error; it has been logged."), 500

    fastpath.install(app)
    return app


def create_migration_app() -> Flask:
    """An app that can only migrate (`flask --app wsgi db upgrade|current`), from DATABASE_URL alone: a migration
    job or init container holds no DocSpace key, webhook secret or admin token."""
    from onboarding import cli
    from onboarding.config import database_url
    from onboarding.db import Database

    logs.configure()
    app = Flask(__name__)
    app.extensions["onboarding.db"] = Database(database_url())
    app.cli.add_command(cli.db_cli)
    return app


def is_migration_command(argv: list[str]) -> bool:
    """Whether a command line runs `db upgrade` or `db current` (the commands that need only DATABASE_URL)."""
    return any(word == "db" and following in MIGRATION_COMMANDS for word, following in itertools.pairwise(argv))

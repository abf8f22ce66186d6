"""The WSGI entry point: gunicorn 'wsgi:app', and flask --app wsgi <command>."""

import sys

from onboarding import ConfigError, create_app, create_migration_app, is_migration_command

try:
    app = create_app()
except ConfigError as error:
    if is_migration_command(sys.argv):
        # A migration job needs nothing but the database.
        app = create_migration_app()
    else:
        # One line naming the setting, instead of a traceback.
        sys.exit(f"onboarding: configuration error: {error}")

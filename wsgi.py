"""The WSGI entry point: gunicorn 'wsgi:app', and flask --app wsgi <command>."""

import sys

from onboarding import ConfigError, create_app

try:
    app = create_app()
except ConfigError as error:
    # One line naming the setting, instead of a traceback.
    sys.exit(f"onboarding: configuration error: {error}")

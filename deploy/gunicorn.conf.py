"""gunicorn settings for the web process: gunicorn -c deploy/gunicorn.conf.py wsgi:app

Every value can be overridden from the environment (names below) or on the command line, which gunicorn reads
after this file. The job worker is NOT started here: it is its own process (flask --app wsgi worker), so web
restarts never interrupt onboardings and each can be scaled on its own.
"""

import gc
import os
import signal
import sys
import tempfile
import threading

from gunicorn.glogging import Logger

# Where to listen. Behind a load balancer or in a container use 0.0.0.0:8000.
bind = os.environ.get("BIND", "127.0.0.1:8000")

# Processes x threads. A request spends most of its time in Python (verify, validate, answer) and a little in one
# short database transaction that every process queues for (SQLite has one writer at a time), so one process per
# core with several threads each did best in bench/ (try others with WEB_CONCURRENCY=5 WEB_THREADS=4
# .venv/bin/python -m bench --only accept; the README says what was tried).
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, os.cpu_count() or 1)))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", 8))

# A worker silent for this long is killed and replaced. Requests take milliseconds; this only catches hangs.
timeout = int(os.environ.get("WEB_TIMEOUT", 30))
# After SIGTERM, workers drain for READINESS_DRAIN_SECONDS and then finish their requests; gunicorn counts this
# timeout from the SIGTERM, so requests get graceful_timeout minus the drain.
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", 30))
# Keep idle connections from the load balancer open a little longer than its own idle probe.
keepalive = int(os.environ.get("WEB_KEEPALIVE", 5))

# Recycle each worker after this many requests (with jitter so they do not all restart at once): a guard
# against slow leaks in any library, at the cost of one process start now and then.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", 10000))
max_requests_jitter = int(os.environ.get("WEB_MAX_REQUESTS_JITTER", 1000))

# Trust X-Forwarded-* only from these addresses (the load balancer or ingress). "*" trusts everyone, so only
# use it when nothing but the proxy can reach the port.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The heartbeat files of the workers: on tmpfs when there is one, so a slow disk cannot stall them.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# gunicorn's runtime control socket (~/.gunicorn/gunicorn.ctl) is one path per user: several servers on one host
# would fight over it, and nothing here uses it.
control_socket_disable = True

# The app writes one JSON line per request itself (with request id, event, deal, onboarding); gunicorn's own
# access log would duplicate it. gunicorn's error log (start, stop, worker deaths) is JSON too (logconfig_dict).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")

# How long /readyz answers 503 after SIGTERM before the worker stops accepting: long enough for the load
# balancer's readiness probe to notice and route new requests elsewhere.
READINESS_DRAIN_SECONDS = float(os.environ.get("READINESS_DRAIN_SECONDS", 5))

# prometheus_client multiprocess mode: every process writes its samples to files here and /metrics adds them.
# The start scripts set (and empty) this directory; when they have not, use a fresh one for this server.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="onboarding-metrics-")


def on_starting(server):
    """Refuse to start when the database schema is behind the code: run flask --app wsgi db upgrade first."""
    from onboarding.config import DEFAULT_DATABASE_URL
    from onboarding.db import Database

    database = Database(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, pool_size=1)
    try:
        current, head = database.schema_state()
    except Exception as error:
        sys.exit(f"onboarding: cannot read the database schema ({type(error).__name__}: {error})")
    finally:
        database.dispose()
    if current != head:
        sys.exit(f"onboarding: the database schema is at {current}, the code needs {head}: "
                 "run `flask --app wsgi db upgrade` first")


def post_worker_init(worker):
    """Take the loaded app out of the garbage collector's sight; on SIGTERM, drain before stopping.

    The app's few hundred thousand objects (Flask, SQLAlchemy, marshmallow, Alembic) live as long as the process,
    yet the collector's first full pass would walk them all while every thread of the process waits, once per
    worker and in the middle of whatever it is serving. Frozen, they are never walked again.
    On SIGTERM, answer /readyz with 503 for READINESS_DRAIN_SECONDS, then stop as gunicorn would.
    """
    from onboarding.health import start_draining

    gc.collect()
    gc.freeze()

    def drain_then_exit(signum, frame):
        start_draining()
        threading.Timer(READINESS_DRAIN_SECONDS, worker.handle_exit, args=(signum, frame)).start()

    signal.signal(signal.SIGTERM, drain_then_exit)


def child_exit(server, worker):
    """Let the metrics of a dead worker process stop counting as live."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class AppLogsRequests(Logger):
    """gunicorn's logger, minus its access line (unless --access-logfile asks for one): the app writes each
    request's line itself. gunicorn would otherwise write a second line per request through the configuration
    below (any logconfig_dict switches its access log on), and spend as long preparing it as a trivial request."""

    def access(self, resp, req, environ, request_time):
        """Nothing, unless an access log file was asked for."""
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


logger_class = AppLogsRequests
# gunicorn's own lines (start-up, worker boot, signals, errors) as JSON, through the app's formatter, on stdout
# beside the app's lines: one stream that a log pipeline parses line by line.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "onboarding.logs.JsonFormatter"}},
    "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "loggers": {"gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False},
                "gunicorn.access": {"level": "INFO", "handlers": ["json"], "propagate": False}},
    "root": {"level": "INFO", "handlers": ["json"]},
}

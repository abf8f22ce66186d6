"""python -m bench.console: the operator console's list and search with 10,000 onboardings in the database.

Fills a fresh database (SQLite in a temporary directory, or a new database on --postgres SERVER_URL, dropped
afterwards) with onboardings of every status, with clients, titles and rooms, then times the console's pages in
the real app, signed in, through Flask's test client: the time is the server's alone (routing, the queries,
rendering), without a network in between. Prints the median and the slowest of each page over --repeat calls.
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy import insert

from onboarding import create_app
from onboarding.config import load_settings
from onboarding.db import Database
from onboarding.models import Onboarding, new_id, utcnow
from tests.conftest import service_env

STATUSES = ("completed",) * 7 + ("failed", "queued", "running")
PAGES = {
    "list, newest first": "/console",
    "list, failed only": "/console?status=failed",
    "search: a deal id": "/console?q=D-{deal}",
    "search: part of a client name": "/console?q=orporation+42",
    "search: part of an e-mail": "/console?q=%40client-77",
    "search: a room id": "/console?q={room}",
    "search + status + source + dates": "/console?q=acme&status=completed&source=generic&from=2020-01-01&to=2030-01-01",
    "a page deep in the list": "/console?offset=5000",
}


def fill(url: str, count: int) -> None:
    """count onboardings, created over the last 30 days, in batches."""
    database = Database(url)
    database.upgrade()
    now = utcnow()
    rows = []
    for number in range(count):
        created = now - timedelta(seconds=random.uniform(0, 30 * 86400))
        status = random.choice(STATUSES)
        rows.append({
            "id": new_id(), "source": "generic", "account_id": "", "deal_id": f"D-{number}",
            "deal_title": f"Annual plan {number}", "client_id": f"C-{number}",
            "client_name": f"{random.choice(['Acme', 'Globex', 'Initech'])} Corporation {number}",
            "client_email": f"contact@client-{number}.example.com", "manager_user_id": secrets.token_hex(16),
            "status": status, "attempts": 1, "run_at": created, "created_at": created, "updated_at": created,
            "room_id": str(100000 + number) if status == "completed" else None,
            "last_error": {"step": "room", "message": "DocSpace refused (403)"} if status == "failed" else None})
    with database.writing() as connection:
        for start in range(0, count, 1000):
            connection.execute(insert(Onboarding), rows[start:start + 1000])
    database.dispose()


def measure(url: str, repeat: int, count: int) -> dict[str, tuple[float, float]]:
    """Median and slowest server time, in ms, of each console page."""
    app = create_app(load_settings(service_env(url, "http://127.0.0.1:9", "http://127.0.0.1:9/crm")))
    client = app.test_client()
    token = app.extensions["onboarding"].settings.admin_token
    form = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/login").get_data(as_text=True))
    client.post("/console/login", data={"csrf_token": form.group(1), "token": token})
    figures = {}
    for name, path in PAGES.items():
        times = []
        for _ in range(repeat):
            target = path.format(deal=random.randrange(count), room=100000 + random.randrange(count))
            started = time.perf_counter()
            answer = client.get(target)
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (target, answer.status_code)
        figures[name] = (statistics.median(times), max(times))
    app.extensions["onboarding"].db.dispose()
    return figures


def main() -> None:
    """Fill, measure, print."""
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--onboardings", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", metavar="SERVER_URL", help="e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    random.seed(7)
    with tempfile.TemporaryDirectory() as workdir:
        name = None
        if args.postgres:
            name = f"onboarding_bench_{secrets.token_hex(4)}"
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            url = args.postgres.rsplit("/", 1)[0] + "/" + name
        else:
            url = f"sqlite:///{Path(workdir) / 'console.db'}"
        try:
            fill(url, args.onboardings)
            figures = measure(url, args.repeat, args.onboardings)
        finally:
            if name:
                with psycopg.connect(args.postgres, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine = "PostgreSQL" if args.postgres else "SQLite"
    print(f"console pages with {args.onboardings} onboardings on {engine}, server time over {args.repeat} calls:")
    print(f"  {'page':40} {'median ms':>10} {'max ms':>8}")
    for page, (median, slowest) in figures.items():
        print(f"  {page:40} {median:10.1f} {slowest:8.1f}")


if __name__ == "__main__":
    main()

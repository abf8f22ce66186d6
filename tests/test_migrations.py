"""The schema comes only from the migrations, and they match the models on both engines."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from onboarding.db import Database
from onboarding.models import Base
from tests.conftest import service_env
from tests.processes import ROOT, free_port


def test_the_migrated_schema_matches_the_models(database_url):
    db = Database(database_url)
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    current, head = db.schema_state()
    assert current == head
    db.dispose()


def test_downgrade_to_nothing_and_up_again(database_url):
    db = Database(database_url)
    db.downgrade("base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    assert db.schema_state()[0] is None
    db.upgrade()
    assert {"events", "onboardings", "onboarding_steps"} <= set(inspect(db.engine).get_table_names())
    db.dispose()


def test_the_web_process_refuses_to_start_on_a_schema_behind_the_code(tmp_path):
    env = service_env(f"sqlite:///{tmp_path / 'empty.db'}", "http://127.0.0.1:9", "http://127.0.0.1:9/crm")
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind",
                             f"127.0.0.1:{free_port()}", "wsgi:app"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "the database schema is at None, the code needs 0005: run `flask --app wsgi db upgrade` first" in (
        result.stderr + result.stdout)

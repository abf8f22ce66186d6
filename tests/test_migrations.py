"""The schema comes only from the migrations, and they match the models on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from onboarding.db import Database
from onboarding.models import Base


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

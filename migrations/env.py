"""Alembic environment: runs the migrations on the connection onboarding.db.Database hands over."""

from alembic import context
from sqlalchemy import create_engine

from onboarding.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    """Migrate through the given connection, or through a new engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()

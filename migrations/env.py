"""Alembic environment: reuses the caller's connection (cortex upgrades at startup).

`render_as_batch` (copy-and-move table rebuilds) is what SQLite needs to alter a table; PostgreSQL
alters tables in place, so it gets plain ALTER statements.
"""

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from cortex_cli.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, render_as_batch=make_url(url).get_backend_name() == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

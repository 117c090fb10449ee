"""Alembic environment for Herald's metadata database.

Herald runs migrations programmatically (:func:`herald.store.db.upgrade`, ``herald db upgrade``),
passing an open connection in ``config.attributes["connection"]``; no ``alembic.ini`` is needed.
Developers draft new revisions with :func:`herald.store.db.alembic_config` (docs/database.md).
"""

from __future__ import annotations

from alembic import context

from herald.store.db import Base, create_engine

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    """Migrate through the caller's connection, or one opened from the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    engine = create_engine(url)
    with engine.begin() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Herald migrations run online only: use 'herald db upgrade'")
run_migrations_online()

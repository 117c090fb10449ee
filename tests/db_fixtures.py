"""Database fixtures: every metadata-database test runs on SQLite *and* PostgreSQL.

Import them in a test module with ``from tests.db_fixtures import *``.

- ``pg_database`` (session): a throw-away database ``herald_test_<random>`` on the PostgreSQL
  server at ``HERALD_TEST_PG_ADMIN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
  trust auth), dropped at the end of the session.  When the server is down the fixture FAILS —
  it never skips: a green run must mean both back ends were tested.
- ``db_url`` (parametrized ``sqlite`` / ``postgresql``): an empty database per test — a SQLite file
  in ``tmp_path``, or a fresh PostgreSQL schema selected through ``search_path``.
- ``db``: ``db_url`` opened and migrated to the newest revision.
- ``db_settings``: :class:`herald.config.Settings` with directories in ``tmp_path`` and ``db_url``.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote

import psycopg
import pytest

from herald.config import settings_from_dict
from herald.store.db import open_db

__all__ = ["pg_database", "db_url", "db", "db_settings", "PG_ADMIN_DSN"]

PG_ADMIN_DSN = os.environ.get("HERALD_TEST_PG_ADMIN",
                              "postgresql://postgres@127.0.0.1:5432/postgres")


def _dsn(database: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def pg_database():
    """Name of a throw-away PostgreSQL database for this test session (dropped afterwards)."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the database tests and is not reachable at "
                    f"{PG_ADMIN_DSN}: {exc}\nStart it with: pg_ctlcluster --skip-systemctl-redirect "
                    f"$(ls /etc/postgresql) main start", pytrace=False)
    name = f"herald_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """URL of an empty database: SQLite file, or a new schema of the session's PostgreSQL db."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'herald.db'}"
    name = request.getfixturevalue("pg_database")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(_dsn(name), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = _dsn(name).replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def db(db_url):
    """The ``db_url`` database, migrated; disposed after the test."""
    database = open_db(db_url, upgrade=True)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db_settings(db_url, tmp_path, monkeypatch):
    """Settings rooted in ``tmp_path`` using ``db_url`` (HERALD_* environment cleared)."""
    for var in ("HERALD_DATABASE_URL", "HERALD_DATA_DIR", "HERALD_REPORTS_DIR",
                "HERALD_OUTBOX_DIR", "HERALD_INBOX_DIR"):
        monkeypatch.delenv(var, raising=False)
    return settings_from_dict({"database": {"url": db_url}}, base=tmp_path)

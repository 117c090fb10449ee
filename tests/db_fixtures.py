"""Database fixtures: every metadata-database test runs on SQLite *and* PostgreSQL.

A pytest plugin registered in ``tests/conftest.py``: a test asks for a fixture by naming it.

- ``pg_database`` (session): a throw-away database ``herald_test_<random>`` on the PostgreSQL
  server at ``HERALD_TEST_PG_ADMIN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
  trust auth), dropped at the end of the session (in the background: DROP DATABASE waits for a
  checkpoint).  When the server is down the fixture FAILS —
  it never skips: a green run must mean both back ends were tested.
- ``backend``: the parameter, ``sqlite`` or ``postgresql``.
- ``db_url``: an *empty* database per test — a SQLite file in ``tmp_path``, or a fresh PostgreSQL
  schema selected through ``search_path``.  For tests of migrations and of the CLI.
- ``db``: an open :class:`herald.store.db.Database` at the newest revision, with no rows.
  SQLite: a copy of a file migrated once per session.  PostgreSQL: one schema migrated once per
  session by Alembic and emptied before each test (creating ~60 tables and indexes per test costs
  about a second on a busy server).
- ``db_settings``: :class:`herald.config.Settings` with directories in ``tmp_path``, using ``db``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from urllib.parse import quote

import psycopg
import pytest

from herald.config import settings_from_dict
from herald.store.db import Base, open_db

PG_ADMIN_DSN = os.environ.get("HERALD_TEST_PG_ADMIN",
                              "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_dsn(database: str) -> str:
    """The libpq URL of ``database`` on the test server (:data:`PG_ADMIN_DSN` with another database)."""
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


def _sa_url(database: str, schema: str) -> str:
    base = pg_dsn(database).replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options={quote(f'-csearch_path={schema}')}"


def _new_schema(database: str, prefix: str) -> str:
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(pg_dsn(database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema


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
    admin.close()
    try:
        yield name
    finally:
        # DROP DATABASE waits for a server-wide checkpoint — up to half a minute on a busy shared
        # server — so it runs in a detached process that outlives pytest by those seconds.
        code = ("import psycopg, sys\n"
                "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
                "    c.execute(f'DROP DATABASE IF EXISTS \"{sys.argv[2]}\" WITH (FORCE)')\n")
        subprocess.Popen([sys.executable, "-c", code, PG_ADMIN_DSN, name],
                         start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    """``sqlite`` or ``postgresql``: each database test runs once per back end."""
    return request.param


@pytest.fixture
def db_url(backend, request, tmp_path) -> str:
    """URL of an empty database: SQLite file, or a new schema of the session's PostgreSQL db."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'herald.db'}"
    name = request.getfixturevalue("pg_database")
    return _sa_url(name, _new_schema(name, "t"))


@pytest.fixture(scope="session")
def _migrated(tmp_path_factory, request):
    """Databases migrated once per session through Alembic: ``{"sqlite": file path,
    "postgresql": (database, schema)}`` (PostgreSQL made on first use)."""
    out: dict[str, object] = {}
    path = tmp_path_factory.mktemp("template") / "herald.db"
    open_db(f"sqlite:///{path}", upgrade=True).dispose()
    out["sqlite"] = path

    def pg():
        name = request.getfixturevalue("pg_database")
        schema = _new_schema(name, "shared")
        open_db(_sa_url(name, schema), upgrade=True).dispose()
        return name, schema

    out["postgresql"] = pg
    return out


def _empty_pg_schema(name: str, schema: str) -> None:
    """Delete every row (alembic_version aside).  ``session_replication_role = replica``
    (superuser only) skips triggers, including the audit-log guard — test set-up only."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with psycopg.connect(pg_dsn(name), options=f"-csearch_path={schema}") as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("; ".join(f'DELETE FROM "{t}"' for t in tables))


@pytest.fixture
def db(backend, _migrated, tmp_path):
    """An open database at the newest schema revision and without rows; disposed afterwards."""
    if backend == "sqlite":
        path = tmp_path / "herald.db"
        shutil.copyfile(_migrated["sqlite"], path)
        url = f"sqlite:///{path}"
    else:
        if callable(_migrated["postgresql"]):
            _migrated["postgresql"] = _migrated["postgresql"]()
        name, schema = _migrated["postgresql"]
        _empty_pg_schema(name, schema)
        url = _sa_url(name, schema)
    database = open_db(url, upgrade=False)  # raises unless at the head revision
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db_settings(db, tmp_path, monkeypatch):
    """Settings rooted in ``tmp_path`` using ``db`` (HERALD_* environment cleared)."""
    for var in ("HERALD_DATABASE_URL", "HERALD_DATA_DIR", "HERALD_REPORTS_DIR",
                "HERALD_OUTBOX_DIR", "HERALD_INBOX_DIR"):
        monkeypatch.delenv(var, raising=False)
    return settings_from_dict({"database": {"url": db.url}}, base=tmp_path)

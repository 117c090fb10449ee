"""The metadata database: engine and session helpers, opening and migrating the schema.

Herald keeps two stores (docs/database.md): events in Parquet, and *metadata* here — recipients and
their filters, law-enforcement operations, the run ledger, produced reports, the outbox, API keys,
portal users and the audit log.  SQLite is the zero-setup default (a file in the data directory);
PostgreSQL is for production (``postgresql+psycopg://user@host/db``, psycopg 3).

The schema is owned by the Alembic migrations shipped in ``herald/store/migrations/``; the ORM
models live in :mod:`herald.store.models` (one module an area) and must match them
(``tests/store/test_db.py`` compares the two on both back ends).  This module re-exports the
models, so ``from herald.store.db import RecipientRow`` works.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from herald.errors import StoreError
from herald.store.models import (  # noqa: F401  (re-exported: callers import them from here)
    ADDRESS_STATES, AUDIT_MIN_RETENTION_DAYS, FILTER_KINDS, FILTER_STATES, NAMING_CONVENTION,
    OUTBOX_STATES, RECIPIENT_KINDS, RUN_STATES, USER_ROLES, ApiKeyRow, ApiNonceRow, AuditRow, Base,
    BounceReportRow, BounceRow, ContactOverrideRow, ContactRow, FilterRow, InhibitionRow, JSONDoc,
    OperationPartnerRow, OperationRow, OutboxAddressRow, OutboxRow, RecipientRow, ReportRow,
    RunInputRow, RunRow, UserRow, UTCDateTime, utcnow,
)

#: Alembic revision this code expects (the newest file in migrations/versions/).
HEAD_REVISION = "c005"

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True, ensure_ascii=False)


@dataclass
class Database:
    """An open metadata database: an engine and a session factory.

    Attributes:
        url: the SQLAlchemy URL (password hidden by ``str(engine.url)``).
        engine: the SQLAlchemy engine.
        sessions: the ``sessionmaker``; prefer :meth:`session`.
    """

    url: str
    engine: Engine
    sessions: sessionmaker

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on normal exit, rolled back on an exception."""
        with self.sessions() as s, s.begin():
            yield s

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (default the newest).  Safe to repeat.

        Raises:
            StoreError: the database is unreachable or a migration failed.
        """
        upgrade(self.engine, revision)

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at, or ``None`` for an empty database."""
        from alembic.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def plain_rows(session: Session, stmt: sa.Select) -> list[tuple]:
    """The rows of a Core ``select`` of plain integer and string columns, as the DBAPI driver's
    tuples: the statement is compiled by SQLAlchemy for the session's dialect (its parameters
    rendered as literals) and run on the session's own connection, in its transaction, without
    SQLAlchemy ``Row`` objects.  Hand-fetched for speed: a national constituency's 195k filter
    rows load in 0.15 s instead of 0.5 s through ``Session.execute`` (SQLAlchemy 2.1 with its
    compiled extension, SQLite, the 1M-event benchmark constituency).  Columns whose values need
    SQLAlchemy's result processing (JSON, dates on SQLite) must not be selected: they come back raw.
    The parameters are rendered into the SQL text, so use it only for statements whose values are
    Herald's own constants (``state == "verified"``), never for values a client sent.

    Returns:
        ``[(value, ...)]`` in the statement's order.
    """
    conn = session.connection()
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.cursor()
    try:
        cur.execute(sql)
        return cur.fetchall()
    finally:
        cur.close()


def alembic_config(engine: Engine):
    """An Alembic ``Config`` for the shipped migrations and ``engine``'s URL (no alembic.ini).

    For developers: ``command.revision(alembic_config(engine), "message", autogenerate=True)``
    with ``cfg.attributes["connection"]`` set drafts a new migration; see docs/database.md.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is interpolation syntax in alembic's ConfigParser.
    cfg.set_main_option("sqlalchemy.url",
                        engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the shipped Alembic migrations on ``engine`` up to ``revision``.

    Raises:
        StoreError: the database is unreachable or a migration failed.
    """
    migrate(engine, "upgrade", revision)


def migrate(engine: Engine, direction: str, revision: str) -> None:
    """Run migrations ``upgrade`` or ``downgrade`` to ``revision``, in one transaction.

    On SQLite, foreign keys are switched off meanwhile: Alembic's batch mode re-creates a table
    to alter it, and dropping the old copy of a parent table with foreign keys on would run the
    children's ``ON DELETE CASCADE`` (https://www.sqlite.org/foreignkeys.html, section 5).  The
    references are checked (``PRAGMA foreign_key_check``) before committing.

    Raises:
        StoreError: the database is unreachable, a migration failed, or it broke a reference.
    """
    from alembic import command

    cfg = alembic_config(engine)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection if sqlite else None
            if raw is not None:
                # Outside any transaction, or SQLite ignores it.
                raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with conn.begin():
                    cfg.attributes["connection"] = conn
                    getattr(command, direction)(cfg, revision)
                    if raw is not None:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise StoreError(f"migration to {revision} broke foreign keys: "
                                             f"{broken[:5]}")
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys = ON")
    except OperationalError as exc:
        raise StoreError(f"cannot migrate {engine.url!r}: {exc.orig}") from None


def create_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a Herald database URL.

    SQLite gets foreign keys on, WAL journaling and a busy timeout (several processes — the
    pipeline, the CLI, the web app — share the file); its parent directory is created.

    Raises:
        StoreError: the URL is not a valid SQLAlchemy URL, or names a driver that is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from None
    kwargs: dict[str, Any] = {"json_serializer": _dumps, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database URL {parsed!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Python's sqlite3 module opens transactions itself, and only before INSERT/UPDATE/DELETE:
    # DDL would autocommit statement by statement, so a failed migration would leave half a
    # schema.  Turn that off and let SQLAlchemy's "begin" emit BEGIN (_sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA journal_mode = WAL")
    # NORMAL is durable in WAL mode except for the last commits before a power loss.
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.close()


def _sqlite_begin(conn) -> None:
    # IMMEDIATE takes the write lock at the start, waiting up to busy_timeout for it.  A deferred
    # BEGIN that reads and then writes fails at once with "database is locked" when another
    # process committed in between (SQLITE_BUSY_SNAPSHOT, https://sqlite.org/isolation.html):
    # concurrent runs of different days hit exactly that.  In WAL mode readers are not blocked.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def connect_db(url: str) -> Database:
    """A :class:`Database` for ``url`` without checking or migrating its schema (for
    ``herald db upgrade|status``; other code uses :func:`open_db`).

    Raises:
        StoreError: bad URL or missing driver (the database is not contacted yet).
    """
    engine = create_engine(url)
    return Database(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def open_db(url: str, upgrade: bool | None = None) -> Database:
    """Open the metadata database at ``url``.

    Args:
        url: SQLAlchemy URL, e.g. ``Settings.database_url``; ``sqlite:///path`` or
            ``postgresql+psycopg://user@host/db``.
        upgrade: migrate to the newest schema first.  ``None`` (default) means yes for SQLite — the
            zero-setup default — and no for other databases, whose schema is changed only by
            ``herald db upgrade`` (so that several processes never race to migrate production).

    Returns:
        A :class:`Database`.

    Raises:
        StoreError: bad URL, unreachable database, or (when not upgrading) a schema that is not at
            :data:`HEAD_REVISION` — the message says to run ``herald db upgrade``.
    """
    db = connect_db(url)
    engine = db.engine
    if upgrade is None:
        upgrade = engine.dialect.name == "sqlite"
    try:
        if upgrade:
            if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
                # Several processes may open a new SQLite file at once (runs of different days,
                # a sensor, the web server): one migrates, the others wait for it.
                from herald.fsutil import FileLock

                lock = FileLock(Path(f"{engine.url.database}.migrate-lock"))
                lock.acquire(wait=True)
                try:
                    if db.current_revision() != HEAD_REVISION:
                        db.upgrade()
                finally:
                    lock.release()
            else:
                db.upgrade()
        else:
            rev = db.current_revision()
            if rev != HEAD_REVISION:
                raise StoreError(
                    f"database {engine.url!r} is at schema revision {rev or 'none (empty)'}, this "
                    f"Herald needs {HEAD_REVISION}: run 'herald db upgrade'")
    except OperationalError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database {engine.url!r}: {exc.orig}") from None
    except StoreError:
        engine.dispose()
        raise
    return db


class NotFound(StoreError):
    """A named object (recipient, filter, operation, run) is not in the database."""

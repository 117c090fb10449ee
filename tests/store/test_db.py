"""Schema, migrations and constraints of the metadata database, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, StatementError

from herald.errors import StoreError
from herald.store import db as dbm
from herald.store.db import (
    AuditRow, Base, ContactRow, FilterRow, RecipientRow, RunRow, UserRow, open_db, utcnow,
)

CORE_TABLES = {"recipients", "contacts", "filters", "operations", "operation_partners", "runs",
               "run_inputs", "reports", "outbox", "api_keys", "users", "audit_log"}
TABLES = set(Base.metadata.tables)


def _tables(db) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_migrated_schema_matches_models(db):
    assert CORE_TABLES <= TABLES
    assert _tables(db) == TABLES
    assert db.current_revision() == dbm.HEAD_REVISION
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent_and_downgrade_drops_everything(db_url):
    db = open_db(db_url, upgrade=True)
    try:
        db.upgrade()
        db.upgrade()
        assert db.current_revision() == dbm.HEAD_REVISION
        dbm.migrate(db.engine, "downgrade", "base")
        assert _tables(db) == set()
        assert db.current_revision() is None
        db.upgrade()
        assert _tables(db) == TABLES
    finally:
        db.dispose()


def test_open_db_migrates_sqlite_but_not_postgresql(db_url):
    if db_url.startswith("sqlite"):
        database = open_db(db_url)
        assert database.current_revision() == dbm.HEAD_REVISION
        database.dispose()
    else:
        with pytest.raises(StoreError, match="herald db upgrade"):
            open_db(db_url)
        database = open_db(db_url, upgrade=True)
        database.dispose()
        database = open_db(db_url)  # now at head: opens without migrating
        assert database.current_revision() == dbm.HEAD_REVISION
        database.dispose()


def test_bad_and_unreachable_urls_raise_store_error():
    with pytest.raises(StoreError, match="invalid database URL"):
        open_db("not a url")
    with pytest.raises(StoreError, match="cannot"):
        open_db("postgresql+psycopg://postgres@127.0.0.1:1/nothing", upgrade=True)


def _recipient(s, name="Example ISP", kind="network_owner"):
    r = RecipientRow(name=name, slug=name.lower().replace(" ", "_"), kind=kind)
    s.add(r)
    s.flush()
    return r


@pytest.mark.parametrize("make", [
    pytest.param(lambda s: RecipientRow(name="x", slug="x", kind="vendor"), id="recipient-kind"),
    pytest.param(lambda s: RecipientRow(name="x", slug="x", tlp="PURPLE"), id="recipient-tlp"),
    pytest.param(lambda s: FilterRow(recipient_id=_recipient(s).id, kind="port", value="1",
                                     requested_by="t"), id="filter-kind"),
    pytest.param(lambda s: FilterRow(recipient_id=_recipient(s).id, kind="asn", value="1",
                                     state="verified", requested_by="t"), id="filter-undecided"),
    pytest.param(lambda s: FilterRow(recipient_id=999, kind="asn", value="1", requested_by="t"),
                 id="filter-foreign-key"),
    pytest.param(lambda s: RunRow(day=date(2026, 1, 1), status="done"), id="run-unfinished-done"),
    pytest.param(lambda s: UserRow(email="a@b.c", password_hash="x", role="recipient"),
                 id="user-without-recipient"),
])
def test_check_and_foreign_key_constraints(db, make):
    with pytest.raises(IntegrityError):
        with db.session() as s:
            s.add(make(s))
            s.flush()


def test_unique_and_partial_unique_indexes(db):
    with db.session() as s:
        r = _recipient(s)
        rid = r.id
        s.add(ContactRow(recipient_id=rid, email="a@example.net", is_primary=True))
        s.add(FilterRow(recipient_id=rid, kind="min_severity", value="high", state="verified",
                        requested_by="t", decided_by="t", decided_at=utcnow()))
        s.add(RunRow(day=date(2026, 1, 1), status="running"))
    cases = [
        lambda s: RecipientRow(name="Other", slug="example_isp"),
        lambda s: ContactRow(recipient_id=rid, email="b@example.net", is_primary=True),
        lambda s: FilterRow(recipient_id=rid, kind="min_severity", value="low", state="verified",
                            requested_by="t", decided_by="t", decided_at=utcnow()),
        lambda s: RunRow(day=date(2026, 1, 1), status="running"),
    ]
    for make in cases:
        with pytest.raises(IntegrityError):
            with db.session() as s:
                s.add(make(s))
    # Allowed: a second, non-primary contact; a pending min_severity; a finished run that day.
    with db.session() as s:
        s.add(ContactRow(recipient_id=rid, email="b@example.net", is_primary=False))
        s.add(FilterRow(recipient_id=rid, kind="min_severity", value="low", requested_by="t"))
        s.add(RunRow(day=date(2026, 1, 1), status="done", finished_at=utcnow()))


def test_times_are_aware_utc_and_naive_times_are_refused(db):
    cet = timezone(timedelta(hours=1))
    with db.session() as s:
        s.add(AuditRow(actor="t", action="x.y", object_type="x",
                       at=datetime(2026, 1, 1, 13, 30, tzinfo=cet)))
    with db.session() as s:
        at = s.scalar(sa.select(AuditRow.at))
    assert at == datetime(2026, 1, 1, 12, 30, tzinfo=timezone.utc)
    assert at.utcoffset() == timedelta(0)
    with pytest.raises(StatementError, match="naive datetime"):
        with db.session() as s:
            s.add(AuditRow(actor="t", action="x.y", object_type="x", at=datetime(2026, 1, 1)))


def test_json_columns_round_trip_dates_and_nested_values(db):
    with db.session() as s:
        s.add(RunRow(day=date(2026, 1, 2), status="done", finished_at=utcnow(),
                     summary={"day": date(2026, 1, 2), "stages": [{"rows_in": 3}]}))
    with db.session() as s:
        summary = s.scalar(sa.select(RunRow.summary))
    assert summary == {"day": "2026-01-02", "stages": [{"rows_in": 3}]}


def test_ddl_is_transactional(db):
    """A migration that fails half-way leaves no half schema (SQLite: Herald emits BEGIN itself,
    because Python's sqlite3 would autocommit DDL)."""
    with pytest.raises(RuntimeError):
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO half_done (id) VALUES (1)")
            raise RuntimeError("migration step failed")
    assert "half_done" not in sa.inspect(db.engine).get_table_names()


def test_rows_survive_migrations_down_and_up(db_url):
    """Batch migrations (SQLite re-creates tables) keep every row and reference."""
    db = open_db(db_url, upgrade=True)
    try:
        with db.session() as s:
            r = _recipient(s)
            s.add(ContactRow(recipient_id=r.id, email="a@example.net"))
            s.add(FilterRow(recipient_id=r.id, kind="asn", value="64496", requested_by="t"))
            s.add(UserRow(email="u@example.net", password_hash="x", role="recipient",
                          recipient_id=r.id))
            s.add(AuditRow(actor="t", action="x.y", object_type="x"))
        dbm.migrate(db.engine, "downgrade", "0001")
        assert db.current_revision() == "0001"
        db.upgrade()
        with db.session() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(FilterRow)) == 1
            assert s.scalar(sa.select(sa.func.count()).select_from(ContactRow)) == 1
            assert s.scalar(sa.select(UserRow.recipient_id)) == r.id
            assert s.scalar(sa.select(sa.func.count()).select_from(AuditRow)) == 1
        if db.dialect == "sqlite":
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()

"""The audit log is append-only — in Herald's code and in the database itself."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from herald.errors import StoreError
from herald.store import audit
from herald.store.db import AUDIT_MIN_RETENTION_DAYS, AuditRow, utcnow


def _rows(db):
    with db.session() as s:
        return [(r.id, r.actor, r.action, r.reason) for r in s.scalars(
            sa.select(AuditRow).order_by(AuditRow.id))]


def test_record_and_query(db):
    t0 = utcnow()
    a = audit.record(db, "cli:alice", "filter.verify", "filter", 7, "checked RIPE",
                     {"value": "192.0.2.0/24", "day": datetime(2026, 1, 1).date()})
    b = audit.record(db, "config", "recipient.add", "recipient", 1)
    c = audit.record(db, "cli:alice", "filter.reject", "filter", 8, "not theirs")
    assert a < b < c
    entries = audit.query(db)
    assert [e.id for e in entries] == [a, b, c]
    first = entries[0]
    assert (first.actor, first.action, first.object_type, first.object_id, first.reason) == (
        "cli:alice", "filter.verify", "filter", "7", "checked RIPE")
    assert first.details == {"value": "192.0.2.0/24", "day": "2026-01-01"}
    assert first.at.tzinfo is not None and t0 - timedelta(seconds=5) <= first.at <= utcnow()
    assert [e.id for e in audit.query(db, actor="cli:alice")] == [a, c]
    assert [e.id for e in audit.query(db, action="filter.")] == [a, c]
    assert [e.id for e in audit.query(db, action="filter*", actor="config")] == []
    assert [e.id for e in audit.query(db, object_type="filter", object_id=8)] == [c]
    assert [e.id for e in audit.query(db, limit=2)] == [b, c]
    assert audit.query(db, since=utcnow() + timedelta(minutes=1)) == []


def test_entry_in_a_session_shares_its_fate(db):
    with pytest.raises(RuntimeError):
        with db.session() as s:
            audit.record(s, "t", "x.y", "x")
            raise RuntimeError("the change failed")
    assert _rows(db) == []
    with db.session() as s:
        audit.record(s, "t", "x.y", "x")
    assert len(_rows(db)) == 1


def test_required_fields(db):
    with pytest.raises(ValueError, match="actor"):
        audit.record(db, "", "x.y", "x")
    with pytest.raises(ValueError, match="action"):
        audit.record(db, "t", " ", "x")


def test_orm_refuses_update_and_delete(db):
    audit.record(db, "t", "x.y", "x", reason="original")
    with pytest.raises(StoreError, match="append-only"):
        with db.session() as s:
            s.scalar(sa.select(AuditRow)).reason = "rewritten"
    with pytest.raises(StoreError, match="append-only"):
        with db.session() as s:
            s.delete(s.scalar(sa.select(AuditRow)))
    assert [r[3] for r in _rows(db)] == ["original"]


@pytest.mark.parametrize("statement", [
    sa.update(AuditRow).values(reason="rewritten"),
    sa.delete(AuditRow),
    sa.text("UPDATE audit_log SET actor = 'someone else'"),
    sa.text("DELETE FROM audit_log"),
], ids=["orm-update", "orm-delete", "sql-update", "sql-delete"])
def test_database_refuses_update_and_delete(db, statement):
    audit.record(db, "t", "x.y", "x", reason="original")
    # Even an old entry cannot be changed.
    audit.record(db, "t", "x.old", "x", reason="old",
                 at=utcnow() - timedelta(days=AUDIT_MIN_RETENTION_DAYS + 30))
    before = _rows(db)
    with pytest.raises(DBAPIError, match="append-only"):
        with db.session() as s:
            s.execute(statement.execution_options(synchronize_session=False)
                      if not isinstance(statement, sa.TextClause) else statement)
    assert _rows(db) == before


def test_database_refuses_update_through_a_raw_connection(db):
    audit.record(db, "t", "x.y", "x", reason="original")
    with pytest.raises(DBAPIError, match="append-only"):
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE audit_log SET reason = NULL")
    if db.dialect == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE audit_log")
    assert [r[3] for r in _rows(db)] == ["original"]


def test_database_allows_deleting_only_entries_past_the_retention_floor(db):
    old = audit.record(db, "t", "x.old", "x",
                       at=utcnow() - timedelta(days=AUDIT_MIN_RETENTION_DAYS + 1))
    new = audit.record(db, "t", "x.new", "x",
                       at=utcnow() - timedelta(days=AUDIT_MIN_RETENTION_DAYS - 1))
    with db.session() as s:
        s.execute(sa.delete(AuditRow).where(AuditRow.id == old))
    with pytest.raises(DBAPIError, match="append-only"):
        with db.session() as s:
            s.execute(sa.delete(AuditRow).where(AuditRow.id == new))
    assert [r[0] for r in _rows(db)] == [new]

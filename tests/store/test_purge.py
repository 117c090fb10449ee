"""Retention: expired data goes, today's and running days' data stays, and it is audited."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from herald.config import settings_from_dict
from herald.constituency import repository as repo
from herald.errors import ConfigError
from herald.store import audit, ledger
from herald.store.db import AUDIT_MIN_RETENTION_DAYS, OutboxRow, RunRow, utcnow
from herald.store.purge import purge, retention_from_settings

TODAY = date(2026, 11, 30)


def _day(n: int) -> date:
    return TODAY - timedelta(days=n)


def _tree(settings, ages):
    for n in ages:
        d = _day(n).isoformat()
        for path in (settings.paths.data / "events" / f"date={d}" / "type=scan_ssh" / "x.parquet",
                     settings.paths.reports / d / "isp" / "r.csv",
                     settings.paths.outbox / d / "m.eml"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")


def _days(parent, prefix=""):
    return sorted(p.name.removeprefix(prefix) for p in parent.iterdir())


def test_purge_removes_expired_days_only(db, db_settings):
    s = db_settings
    _tree(s, [0, 1, 30, 31, 45, 46])
    (s.paths.data / "events" / "not-a-day").mkdir()
    running = ledger.start_run(db, _day(46), [])  # an old day being re-run right now
    repo.add_recipient(db, "ISP", "a@example.net", actor="t")
    rid = repo.get_recipient(db, "ISP").id
    old_file = s.paths.outbox / "m-old.eml"
    old_file.write_text("x")
    outside = s.paths.data / "precious.txt"
    outside.write_text("keep")
    old = utcnow() - timedelta(days=40)
    with db.session() as ses:
        for i, (state, path) in enumerate([("sent", str(old_file)), ("failed", None),
                                           ("queued", None), ("held", None),
                                           ("sent", str(outside))]):
            ses.add(OutboxRow(message_id=f"<{i}@h>", recipient_id=rid, state=state,
                              envelope_sender="h@example.org", path=path, created_at=old,
                              updated_at=old))
        ses.add(OutboxRow(message_id="<new@h>", recipient_id=rid, state="sent",
                          envelope_sender="h@example.org"))

    dry = purge(db, s, TODAY, dry_run=True)
    assert dry.event_days == [_day(45), _day(31)] and dry.outbox_rows == 3
    assert len(_days(s.paths.data / "events")) == 7 and old_file.exists()  # nothing removed

    result = purge(db, s, TODAY, actor="cli:root")
    assert result.cutoff == _day(30)
    # Older than 30 days goes; day 30 itself stays.
    assert result.event_days == result.report_days == result.outbox_days == [_day(45), _day(31)]
    assert result.protected_days == [_day(46)]
    kept = [_day(n).isoformat() for n in (46, 30, 1, 0)]
    assert _days(s.paths.data / "events", "date=") == sorted(kept + ["not-a-day"])
    assert _days(s.paths.reports) == sorted(kept)
    assert _days(s.paths.outbox) == sorted(kept)
    assert not old_file.exists() and outside.read_text() == "keep"
    assert result.outbox_rows == 3 and result.outbox_files == 1
    with db.session() as ses:
        left = sorted(ses.scalars(sa.select(OutboxRow.message_id)))
    assert left == ["<2@h>", "<3@h>", "<new@h>"]  # queued and held stay; recent stays
    entry = audit.query(db, action="purge.run")[0]
    assert entry.id == result.audit_id and entry.actor == "cli:root"
    assert entry.details["event_days"] == [_day(45).isoformat(), _day(31).isoformat()]
    assert entry.details["protected_days"] == [_day(46).isoformat()]
    assert ledger.get_run(db, running).status == "running"

    ledger.finish_run(db, running, {})
    again = purge(db, s, TODAY, keep_days=1)
    assert again.event_days == [_day(46), _day(30)]
    assert _days(s.paths.data / "events", "date=") == sorted(
        [_day(1).isoformat(), _day(0).isoformat(), "not-a-day"])


def test_purge_of_ledger_and_audit_rows(db, db_settings):
    ancient = ledger.start_run(db, _day(500), [("a.csv", "a" * 64, 1)])
    ledger.finish_run(db, ancient, {})
    recent = ledger.start_run(db, _day(10), [])
    ledger.finish_run(db, recent, {})
    old_entry = audit.record(db, "t", "x.old", "x", at=utcnow() - timedelta(days=401))
    kept_entry = audit.record(db, "t", "x.kept", "x", at=utcnow() - timedelta(days=399))
    result = purge(db, db_settings, TODAY)
    assert (result.runs, result.audit_rows) == (1, 1)
    with db.session() as s:
        assert sorted(s.scalars(sa.select(RunRow.id))) == [recent]
    ids = [e.id for e in audit.query(db)]
    assert old_entry not in ids and kept_entry in ids and result.audit_id in ids


def test_retention_settings(tmp_path):
    def settings(ret):
        return settings_from_dict({"retention": ret}, base=tmp_path)

    assert retention_from_settings(settings({})).ledger_days == 400
    r = retention_from_settings(settings({"events_days": 7, "audit_days": 800}))
    assert (r.events_days, r.audit_days, r.ledger_days) == (7, 800, 800)
    with pytest.raises(ConfigError, match="minimum"):
        retention_from_settings(settings({"audit_days": AUDIT_MIN_RETENTION_DAYS - 1}))
    with pytest.raises(ConfigError, match="positive"):
        retention_from_settings(settings({"events_days": 0}))


def test_keep_days_must_be_positive(db, db_settings):
    with pytest.raises(ConfigError, match="at least 1"):
        purge(db, db_settings, TODAY, keep_days=0)


def test_failed_purge_puts_directories_back(db, db_settings, monkeypatch):
    _tree(db_settings, [45])
    import herald.store.purge as purge_mod

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(purge_mod, "_delete_rows", broken)
    with pytest.raises(RuntimeError):
        purge(db, db_settings, TODAY)
    assert _days(db_settings.paths.data / "events", "date=") == [_day(45).isoformat()]
    assert _days(db_settings.paths.reports) == [_day(45).isoformat()]
    assert audit.query(db, action="purge.run") == []

"""The run ledger on SQLite and PostgreSQL: one run per day, re-runs, reports, failures."""

from __future__ import annotations

from datetime import date

import pytest

from herald.constituency import repository as repo
from herald.constituency.recipients import Recipient
from herald.errors import StoreError
from herald.store import audit, ledger
from herald.store.db import NotFound

DAY = date(2026, 11, 29)
INPUTS = [("inbox/2026-11-29-scan_ssh-a.csv", "a" * 64, 10),
          ("inbox/2026-11-29-botnet_drone-b.csv", "b" * 64, 5)]


def test_a_day_runs_once_unless_forced(db):
    run = ledger.start_run(db, DAY, INPUTS)
    with pytest.raises(ledger.RunInProgress) as exc:
        ledger.start_run(db, DAY, INPUTS)
    assert exc.value.run_id == run
    ledger.finish_run(db, run, {"counts": {"rows_in": 15, "rows_out": 14}, "stages": []})
    info = ledger.last_run(db, "2026-11-29")
    assert (info.id, info.status, info.counts) == (run, "done", {"rows_in": 15, "rows_out": 14})
    assert info.finished_at >= info.started_at
    assert info.inputs == tuple(ledger.RunInput(*i) for i in INPUTS)

    with pytest.raises(ledger.AlreadyDone) as exc:
        ledger.start_run(db, DAY, list(reversed(INPUTS)))
    assert (exc.value.run_id, exc.value.inputs_changed) == (run, False)
    with pytest.raises(ledger.AlreadyDone) as exc:
        ledger.start_run(db, DAY, INPUTS + [("inbox/late.csv", "c" * 64, 1)])
    assert exc.value.inputs_changed and "--force" in str(exc.value)
    assert [r.id for r in ledger.list_runs(db, day=DAY)] == [run]

    forced = ledger.start_run(db, DAY, INPUTS, force=True, actor="cli:alice")
    assert forced != run
    assert ledger.last_run(db, DAY).forced
    entry = audit.query(db, action="run.force")[0]
    assert (entry.actor, entry.object_id, entry.details["previous_done"]) == (
        "cli:alice", str(forced), run)
    # Other days are independent.
    assert ledger.start_run(db, date(2026, 11, 30), []) not in (run, forced)


def test_force_takes_over_a_crashed_run(db):
    crashed = ledger.start_run(db, DAY, INPUTS)
    new = ledger.start_run(db, DAY, INPUTS, force=True)
    old = ledger.get_run(db, crashed)
    assert old.status == "failed" and "abandoned" in old.error
    with pytest.raises(StoreError, match="already failed"):
        ledger.finish_run(db, crashed, {})
    ledger.fail_run(db, new, "disk full", summary={"stage": "render"})
    failed = ledger.get_run(db, new)
    assert (failed.status, failed.error, failed.summary) == ("failed", "disk full", {"stage": "render"})
    # A failed day may be run again without force.
    again = ledger.start_run(db, DAY, INPUTS)
    assert ledger.last_run(db, DAY).id == again
    with pytest.raises(NotFound):
        ledger.finish_run(db, 999999, {})


def test_two_processes_cannot_run_the_same_day(db_url):
    from herald.store.db import open_db

    a = open_db(db_url, upgrade=True)
    b = open_db(db_url, upgrade=False)
    try:
        first = ledger.start_run(a, DAY, INPUTS)
        with pytest.raises(ledger.RunInProgress):
            ledger.start_run(b, DAY, INPUTS)
        ledger.finish_run(b, first, {})
        with pytest.raises(ledger.AlreadyDone):
            ledger.start_run(a, DAY, INPUTS)
    finally:
        a.dispose()
        b.dispose()


def test_duplicate_input_paths_are_refused(db):
    with pytest.raises(StoreError, match="twice"):
        ledger.start_run(db, DAY, [INPUTS[0], INPUTS[0]])
    assert ledger.last_run(db, DAY) is None


def test_record_report_is_idempotent_per_recipient_type_day_scope(db):
    repo.import_recipients(db, [{"name": "Example ISP", "email": "a@example.net", "asns": [64496]},
                                {"name": "Police", "email": "p@example.org",
                                 "kind": "law_enforcement"}])
    isp = next(r for r in repo.load_recipients(db) if r.name == "Example ISP")
    run1 = ledger.start_run(db, DAY, INPUTS)
    rid = ledger.record_report(db, run1, isp, "scan_ssh", DAY, 3, "1" * 64, "r/a.csv")
    ledger.finish_run(db, run1, {})
    run2 = ledger.start_run(db, DAY, INPUTS, force=True)
    # Same (recipient, type, day): same row, now pointing at run 2 — by object, id or name.
    assert ledger.record_report(db, run2, isp, "scan_ssh", DAY, 4, "2" * 64, "r/b.csv") == rid
    assert ledger.record_report(db, run2, isp.id, "scan_ssh", DAY, 4, "2" * 64, "r/b.csv") == rid
    config_only = Recipient(name="Example ISP", email="a@example.net")  # no id: by name
    assert ledger.record_report(db, run2, config_only, "scan_ssh", "2026-11-29", 4, "2" * 64,
                                "r/b.csv") == rid
    other = ledger.record_report(db, run2, "example_isp", "botnet_drone", DAY, 1, "3" * 64, "r/c.csv")
    police = Recipient(name="Police", email="p@example.org", kind="law_enforcement",
                       operation="Endgame")
    op1 = ledger.record_report(db, run2, police, "botnet_drone", DAY, 2, "4" * 64, "r/d.csv")
    op2 = ledger.record_report(db, run2, police, "botnet_drone", DAY, 2, "4" * 64, "r/e.csv",
                               scope="Other op")
    assert len({rid, other, op1, op2}) == 4
    assert ledger.get_run(db, run1).reports == ()
    reports = ledger.get_run(db, run2).reports
    assert [(r.recipient, r.report_type, r.scope, r.rows, r.path) for r in reports] == [
        ("Example ISP", "scan_ssh", "", 4, "r/b.csv"),
        ("Example ISP", "botnet_drone", "", 1, "r/c.csv"),
        ("Police", "botnet_drone", "Endgame", 2, "r/d.csv"),
        ("Police", "botnet_drone", "Other op", 2, "r/e.csv")]
    assert ledger.last_run(db, DAY).reports == reports
    light = ledger.last_run(db, DAY, reports=False)
    assert (light.id, light.reports, light.inputs) == (run2, (), ledger.get_run(db, run2).inputs)
    with pytest.raises(NotFound, match="recipients import"):
        ledger.record_report(db, run2, "Unknown", "scan_ssh", DAY, 1, "5" * 64, "x")
    with pytest.raises(NotFound):
        ledger.record_report(db, 999999, isp, "scan_ssh", DAY, 1, "5" * 64, "x")


def test_bad_day(db):
    with pytest.raises(StoreError, match="not a day"):
        ledger.start_run(db, "29/11/2026", INPUTS)


def test_a_failed_run_after_a_done_one_leaves_the_day_open(db):
    done = ledger.start_run(db, DAY, INPUTS)
    ledger.finish_run(db, done, {})
    forced = ledger.start_run(db, DAY, INPUTS, force=True)
    ledger.fail_run(db, forced, "1 input(s) failed", summary={"rows_failed": 3},
                    counts={"rows_failed": 3})
    assert ledger.get_run(db, forced).counts == {"rows_failed": 3}
    # the newest finished run failed: the day runs again without force
    again = ledger.start_run(db, DAY, INPUTS)
    ledger.finish_run(db, again, {})
    with pytest.raises(ledger.AlreadyDone):
        ledger.start_run(db, DAY, INPUTS)


def test_last_run_without_its_summary(db):
    run_id = ledger.start_run(db, "2026-11-30", [("/in/a.csv", "ab" * 32, 3)])
    ledger.finish_run(db, run_id, {"reports": [{"path": "/r/x.csv"}]}, counts={"rows_in": 3})
    full = ledger.last_run(db, "2026-11-30", reports=False)
    bare = ledger.last_run(db, "2026-11-30", reports=False, summary=False)
    assert full.summary == {"reports": [{"path": "/r/x.csv"}]} and full.counts == {"rows_in": 3}
    assert bare.summary is None and bare.counts is None
    assert (bare.id, bare.status, bare.inputs) == (full.id, full.status, full.inputs)
    # start_run reads earlier runs without their summaries and still refuses a done day
    with pytest.raises(ledger.AlreadyDone):
        ledger.start_run(db, "2026-11-30", [("/in/a.csv", "ab" * 32, 3)])
    assert ledger.start_run(db, "2026-11-30", [("/in/a.csv", "ab" * 32, 3)], force=True) > run_id

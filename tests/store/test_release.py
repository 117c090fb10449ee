"""Recording a run's reports in bulk (herald.store.release) on SQLite and PostgreSQL: the same rows
and audit entries as one ledger.record_report per report."""

from __future__ import annotations

import pytest

from herald.constituency import repository as repo
from herald.store import audit, ledger
from herald.store.db import NotFound
from herald.store.release import record_reports

DAY = "2026-11-29"
INPUTS = [("inbox/2026-11-29-scan_ssh-a.csv", "a" * 64, 10)]


def _rep(name, rtype, sha, rows=3, operation=None):
    return {"recipient": name, "type": rtype, "rows": rows, "sha256": sha * 64,
            "path": f"r/{name}-{rtype}-{sha}.csv", "tlp": "AMBER", "operation": operation}


def _recipients(db):
    repo.import_recipients(db, [{"name": "Example ISP", "email": "a@example.net", "asns": [64496]},
                                {"name": "Other ISP", "email": "o@example.net", "asns": [64497]}])
    return {r.name: r for r in repo.load_recipients(db)}


def test_bulk_record_matches_one_by_one_and_audits_only_new_content(db):
    by_name = _recipients(db)
    run1 = ledger.start_run(db, DAY, INPUTS)
    reps = [_rep("Example ISP", "scan_ssh", "1"), _rep("Other ISP", "scan_ssh", "2"),
            _rep("Example ISP", "botnet_drone", "3"), _rep("Not in the database", "scan_ssh", "4")]
    ids = record_reports(db, run1, DAY, reps, by_name)
    assert sorted(ids) == [0, 1, 2] and len(set(ids.values())) == 3  # no id: not recorded
    info = ledger.get_run(db, run1)
    assert {(r.report_type, r.sha256, r.rows) for r in info.reports} == {
        ("scan_ssh", "1" * 64, 3), ("scan_ssh", "2" * 64, 3), ("botnet_drone", "3" * 64, 3)}
    rel = audit.query(db, action="report.release")
    assert [e.object_id for e in rel] == [str(ids[0]), str(ids[1]), str(ids[2])]
    assert rel[0].details == {"recipient": "Example ISP", "type": "scan_ssh", "day": DAY, "rows": 3,
                              "sha256": "1" * 64, "path": reps[0]["path"], "scope": "",
                              "tlp": "AMBER"}
    ledger.finish_run(db, run1, {})

    # A forced re-run: identical bytes release nothing; one changed report releases one entry.
    run2 = ledger.start_run(db, DAY, INPUTS, force=True)
    reps2 = [reps[0], _rep("Other ISP", "scan_ssh", "5", rows=7), reps[2]]
    ids2 = record_reports(db, run2, DAY, reps2, by_name)
    assert ids2 == {0: ids[0], 1: ids[1], 2: ids[2]}
    rel2 = audit.query(db, action="report.release")
    assert len(rel2) == 4 and rel2[-1].object_id == str(ids[1]) and rel2[-1].details["rows"] == 7
    info2 = ledger.get_run(db, run2)
    assert {(r.report_type, r.sha256, r.rows) for r in info2.reports} == {
        ("scan_ssh", "1" * 64, 3), ("scan_ssh", "5" * 64, 7), ("botnet_drone", "3" * 64, 3)}


def test_an_unknown_run_records_nothing(db):
    by_name = _recipients(db)
    with pytest.raises(NotFound):
        record_reports(db, 999_999, DAY, [_rep("Example ISP", "scan_ssh", "1")], by_name)
    assert audit.query(db, action="report.release") == []

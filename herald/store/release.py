"""Recording the reports a run released: one ledger row per report, an audit entry per new content."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa

from herald.store import audit, ledger
from herald.store.db import Database, ReportRow


def record_reports(db: Database, run_id: int, day: str, reports: list[dict],
                   by_name: dict[str, Any], actor: str = "pipeline") -> dict[int, int]:
    """Record each report of the run summary (``{recipient, type, rows, sha256, path, tlp,
    operation}``) in the ledger; write a ``report.release`` audit entry when its content is new (a
    re-run that rewrites identical bytes releases nothing new).  ``by_name`` maps recipient names
    to :class:`herald.constituency.recipients.Recipient` s; recipients without a database id
    (given in code: benchmarks) are not recorded.

    Returns:
        ``{index in reports: ledger report id}``.
    """
    ids: dict[int, int] = {}
    for i, rep in enumerate(reports):
        rcpt = by_name.get(rep["recipient"])
        scope = rep.get("operation") or ""
        if rcpt is None or rcpt.id is None:
            continue
        with db.session() as s:
            before = s.scalar(sa.select(ReportRow.sha256).filter_by(
                recipient_id=rcpt.id, report_type=rep["type"], day=date.fromisoformat(day), scope=scope))
        report_id = ledger.record_report(db, run_id, rcpt, rep["type"], day, rep["rows"], rep["sha256"],
                                         rep["path"], scope=scope)
        ids[i] = report_id
        if before != rep["sha256"]:
            audit.record(db, actor, "report.release", "report", report_id,
                         None, {"recipient": rep["recipient"], "type": rep["type"], "day": day,
                                "rows": rep["rows"], "sha256": rep["sha256"], "path": rep["path"],
                                "scope": scope, "tlp": rep["tlp"]})
    return ids

"""The daily job against the metadata database: SQLite and PostgreSQL, crashes and re-runs."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa
import tomli_w

from herald.pipeline import run_day
from herald.store import audit, ledger
from herald.store.db import ReportRow, open_db

DAY = "2026-11-30"


def config(repo_root: Path, root: Path, db_url: str) -> Path:
    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    raw["paths"] = {"inbox": str(repo_root / "examples/inbox"), "data": str(root / "data"),
                    "reports": str(root / "reports"), "outbox": str(root / "outbox")}
    raw["database"] = {"url": db_url}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "herald.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def files(root: Path) -> dict[str, bytes]:
    out = {}
    for sub in ("reports", "outbox"):
        for p in (root / sub).rglob("*"):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def ledger_view(url: str) -> list[tuple]:
    db = open_db(url)
    try:
        with db.session() as s:
            rows = s.execute(sa.select(ReportRow.report_type, ReportRow.day, ReportRow.scope, ReportRow.rows,
                                       ReportRow.sha256, ReportRow.path)).all()
        return sorted((t, str(d), sc, n, h, Path(p).name) for t, d, sc, n, h, p in rows)
    finally:
        db.dispose()


def herald(cfg: Path, *args: str, env: dict | None = None,
           kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``herald run`` in a subprocess; with ``kill_at`` it is killed at that fault point
    (tests/killer.py installs the hook)."""
    entry = [str(Path(__file__).with_name("killer.py")), kill_at] if kill_at else ["-m", "herald.cli"]
    return subprocess.run([sys.executable, *entry, "run", "--config", str(cfg), "--date", DAY,
                           *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)


def test_run_records_ledger_and_audit_on_both_databases(repo_root, tmp_path, db):
    cfg = config(repo_root, tmp_path / "run", db.url if isinstance(db.url, str) else str(db.url))
    from herald.config import load_settings
    settings = load_settings(cfg)
    settings.database_url = db.url if isinstance(db.url, str) else db.engine.url.render_as_string(False)
    summary = run_day(settings, DAY)
    assert summary.ok and len(summary.reports) == 10
    run = ledger.last_run(db, DAY)
    assert run.status == "done" and len(run.inputs) == 13 and len(run.reports) == 10
    releases = [e for e in audit.query(db, action="report.release")]
    assert len(releases) == 10
    assert {e.details["sha256"] for e in releases} == {r["sha256"] for r in summary.reports}
    # re-running a finished day is a no-op
    again = run_day(settings, DAY)
    assert again.skipped and len(ledger.list_runs(db, DAY)) == 1


@pytest.mark.parametrize("kill_at", ["ingest:1", "ingest:7", "report:1", "report:6", "ledger"])
def test_killed_run_resumes_to_the_same_result(repo_root, tmp_path, kill_at):
    clean = tmp_path / "clean"
    cfg = config(repo_root, clean, f"sqlite:///{clean / 'data/herald.db'}")
    assert herald(cfg).returncode == 0
    crashed = tmp_path / "crashed"
    cfg2 = config(repo_root, crashed, f"sqlite:///{crashed / 'data/herald.db'}")
    killed = herald(cfg2, kill_at=kill_at)
    assert killed.returncode == -9, killed.stderr
    resumed = herald(cfg2)
    assert resumed.returncode == 0, resumed.stderr
    # same report and message bytes, same ledger of reports
    strip = lambda d, root: {k: v.replace(str(root).encode(), b"ROOT") for k, v in d.items()}
    assert strip(files(crashed), crashed) == strip(files(clean), clean)
    assert ledger_view(f"sqlite:///{crashed / 'data/herald.db'}") == ledger_view(f"sqlite:///{clean / 'data/herald.db'}")
    # nothing duplicated in the store: one Parquet file per input
    assert len(list((crashed / "data/events").rglob("*.parquet"))) == 13
    db = open_db(f"sqlite:///{crashed / 'data/herald.db'}")
    runs = ledger.list_runs(db, DAY)
    assert [r.status for r in runs] == ["done", "failed"]  # the crashed run was taken over
    db.dispose()

"""One message path: the daily run composes each report's message once; the outbox queues those
bytes (without OpenPGP the spooled message is the outbox .eml itself, a hard link)."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

from herald.config import settings_from_dict
from herald.deliver import compose
from herald.deliver.outbox import list_outbox
from herald.pipeline import run_day
from herald.store.db import open_db

DAY = "2026-11-30"


def test_each_message_is_composed_once_and_the_outbox_eml_is_the_queued_message(
        repo_root: Path, tmp_path: Path, monkeypatch):
    raw = tomllib.loads((repo_root / "examples" / "herald.toml").read_text())
    shutil.copytree(repo_root / "examples" / "inbox", tmp_path / "inbox")
    raw["paths"] = {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"}
    raw["database"] = {"url": f"sqlite:///{tmp_path / 'data' / 'herald.db'}"}
    raw["smtp"] = {"host": "127.0.0.1", "port": 25, "security": "none"}
    settings = settings_from_dict(raw, base=tmp_path)
    real = compose.compose
    log = tmp_path / "compose.log"

    def counting(spec, templates):
        # A file, not a list: with [run] workers > 1 the stage pool's forked workers compose.
        with open(log, "a") as fh:
            fh.write(f"{spec.key}\n")
        return real(spec, templates)

    monkeypatch.setattr(compose, "compose", counting)
    summary = run_day(settings, DAY)
    assert summary.ok and len(summary.reports) == 10
    calls = log.read_text().splitlines()
    assert len(calls) == len(summary.reports)  # composed once each, not again to queue them
    assert all(r["delivery"] == "queued" for r in summary.reports)
    queued = {e.message_id: e for e in list_outbox(open_db(settings.database_url))}
    assert len(queued) == 10
    for rep in summary.reports:
        spooled = Path(queued[rep["message_id"]].path)
        assert os.path.samefile(spooled, rep["message"])  # one artifact, two names
        assert queued[rep["message_id"]].subject == rep["subject"]

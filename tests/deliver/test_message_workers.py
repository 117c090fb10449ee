"""The daily run's message workers, on a generated 100k-event day (bench/generate.py): a worker
that dies makes the run fail, recorded in the ledger, instead of hanging.

(Throughput is measured by bench/run.py, not by a timed test: see bench/README.md, "Regression
guard".)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import generate  # noqa: E402  (bench/generate.py)

from herald.constituency.recipients import recipients_from_specs  # noqa: E402

DAY = "2026-11-30"
EVENTS = 100_000


@pytest.fixture(scope="module")
def day_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    assert generate.main(["--events", str(EVENTS), "--out", str(out), "--recipients", "400",
                          "--cidrs", "40000", "--seed", "3"]) == 0
    return out


def test_a_dying_message_worker_fails_the_run_instead_of_hanging(day_dir: Path, tmp_path: Path,
                                                                 request):
    """The day's messages are composed in worker processes (a type with 256 reports or more): a
    worker killed by a signal makes the run fail, recorded in the ledger, not wait for ever."""
    from concurrent.futures.process import BrokenProcessPool

    import tomllib

    from herald.config import settings_from_dict
    from herald.store import ledger
    from herald.store.db import open_db
    from tests.killer import run_with_worker_killed

    raw = tomllib.loads((day_dir / "herald.toml").read_text())
    raw["paths"] = {"inbox": str(day_dir / "inbox"), "data": str(tmp_path / "data"),
                    "reports": str(tmp_path / "reports"), "outbox": str(tmp_path / "outbox")}
    settings = settings_from_dict(raw, base=day_dir)
    recipients = recipients_from_specs(settings.recipients_spec)
    assert isinstance(run_with_worker_killed(settings, DAY, recipients, "compose", request),
                      BrokenProcessPool)
    runs = ledger.list_runs(open_db(settings.database_url))
    assert runs and runs[0].status == "failed" and "BrokenProcessPool" in (runs[0].error or "")

"""The run's stage pool (herald/parallel.py, ``[run] workers``): a run with two worker processes
writes the same bytes and counts as a run with one, on the example day and on a generated day of
several types; a worker that dies makes the run fail (ledger ``failed``) instead of hanging.

(The speed-up is measured by bench/cores.py, not by a timed test.)
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from herald.config import settings_from_dict
from herald.errors import ConfigError
from herald.pipeline import run_day
from herald.summary import COUNTS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import generate  # noqa: E402  (bench/generate.py)

DAY = "2026-11-30"


def settings_for(raw: dict, base: Path, root: Path, inbox: Path, workers: int):
    raw = {**raw, "run": {"workers": workers}}
    raw["paths"] = {"inbox": str(inbox), "data": str(root / "data"),
                    "reports": str(root / "reports"), "outbox": str(root / "outbox")}
    raw["database"] = {"url": f"sqlite:///{root / 'herald.db'}"}
    return settings_from_dict(raw, base=base)


def files(root: Path) -> dict[str, bytes]:
    out = {}
    for sub in ("reports", "outbox", "data/quarantine"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes().replace(str(root).encode(), b"ROOT")
    return out


def summary_view(summary) -> dict:
    d = summary.to_dict()
    strip = lambda v: v.replace(str(summary.paths["data"]).rsplit("/data", 1)[0], "ROOT") \
        if isinstance(v, str) else v
    return {"counts": {k: d[k] for k in COUNTS},
            "inputs": [{k: strip(v) for k, v in i.items()} for i in d["inputs"]],
            "reports": [{k: strip(v) for k, v in r.items() if k != "report_id"} for r in d["reports"]],
            "warnings": d["warnings"], "errors": d["errors"]}


def both(raw: dict, base: Path, inbox: Path, tmp_path: Path, recipients=None):
    out = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        settings = settings_for(raw, base, root, inbox, workers)
        summary = run_day(settings, DAY, recipients=recipients)
        assert summary.ok, summary.errors
        out[workers] = (files(root), summary_view(summary))
    return out


def test_two_workers_write_what_one_writes_on_the_example_day(tmp_path):
    raw = tomllib.loads((ROOT / "examples/herald.toml").read_text())
    out = both(raw, ROOT / "examples", ROOT / "examples/inbox", tmp_path)
    assert out[1][0] and out[2][0] == out[1][0]
    assert out[2][1] == out[1][1]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    # several types, split over several files each (more inputs than workers)
    assert generate.main(["--events", "60000", "--out", str(out), "--recipients", "300",
                          "--cidrs", "30000", "--seed", "5", "--rows-per-file", "5000"]) == 0
    return out


def test_two_workers_write_what_one_writes_on_a_generated_day(generated, tmp_path):
    from herald.constituency.recipients import recipients_from_specs

    raw = tomllib.loads((generated / "herald.toml").read_text())
    recipients = recipients_from_specs(settings_from_dict(raw, base=generated).recipients_spec)
    out = both(raw, generated, generated / "inbox", tmp_path, recipients)
    assert len({r["type"] for r in out[1][1]["reports"]}) >= 3
    assert out[2][0] == out[1][0]
    assert out[2][1] == out[1][1]


def test_a_dying_stage_worker_fails_the_run_instead_of_hanging(generated, tmp_path, request):
    from concurrent.futures.process import BrokenProcessPool

    from herald.constituency.recipients import recipients_from_specs
    from herald.store import ledger
    from herald.store.db import open_db
    from tests.killer import run_with_worker_killed

    raw = tomllib.loads((generated / "herald.toml").read_text())
    settings = settings_for(raw, generated, tmp_path, generated / "inbox", 2)
    recipients = recipients_from_specs(settings.recipients_spec)
    assert isinstance(run_with_worker_killed(settings, DAY, recipients, "stage", request),
                      BrokenProcessPool)
    db = open_db(settings.database_url)
    runs = ledger.list_runs(db)
    db.dispose()
    assert runs and runs[0].status == "failed" and "BrokenProcessPool" in (runs[0].error or "")


@pytest.mark.parametrize("value", [0, -1, "2", True, 1.5])
def test_run_workers_must_be_a_whole_number(tmp_path, value):
    with pytest.raises(ConfigError, match="run.workers"):
        settings_from_dict({"run": {"workers": value}}, base=tmp_path)


def test_unknown_run_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        settings_from_dict({"run": {"worker": 2}}, base=tmp_path)


def test_recipient_shards_write_what_the_whole_type_writes(generated, tmp_path):
    """``route_and_write(shard=(k, n))`` for every k, joined by ``merge_shards``, writes the same
    report files (bytes) with the same counts as the unsharded job, for 2 and 3 shards; a policy
    that is not inert refuses shards."""
    import hashlib

    from herald.constituency.recipients import recipients_from_specs
    from herald.reports.policy import RoutingPolicy
    from herald.reports.write import merge_shards, route_and_write
    from herald.route import Router
    from herald.schema import default_registry
    from herald.store.dedup import duckdb_connection
    from herald.store.events import event_files, event_types

    raw = tomllib.loads((generated / "herald.toml").read_text())
    settings = settings_for(raw, generated, tmp_path / "run", generated / "inbox", 1)
    recipients = recipients_from_specs(settings.recipients_spec)
    assert run_day(settings, DAY, recipients=recipients).ok
    data, reg = settings.paths.data, default_registry()
    con = duckdb_connection(tmp_path / "duck")

    def job(rtype, out: Path, shard):
        return route_and_write(con, out, DAY, rtype, [str(p) for p in event_files(data, DAY, rtype.name)],
                               Router(recipients), shard=shard)

    def digests(result):
        return {str(r.path.relative_to(r.path.parents[2])): (r.recipient, r.rows, r.sha256,
                hashlib.sha256(r.path.read_bytes()).hexdigest()) for r in result.reports}

    types = sorted(event_types(data, DAY))
    assert len(types) >= 3
    for name in types:
        rtype = reg.get(name)
        whole = job(rtype, tmp_path / "whole" / name, (0, 1))
        assert whole.reports
        for n in (2, 3):
            parts = [job(rtype, tmp_path / f"s{n}" / name, (k, n)) for k in range(n)]
            assert all(r.recipient % n == k for k, p in enumerate(parts) for r in p.reports)
            merged = merge_shards(parts)
            assert digests(merged) == digests(whole)
            assert (merged.distinct, merged.reported, merged.unrouted, merged.duplicate) == (
                whole.distinct, whole.reported, whole.unrouted, whole.duplicate)
            assert [r.recipient for r in merged.reports] == sorted(r.recipient for r in whole.reports)
    policy = RoutingPolicy(Router(recipients), DAY, data, max_window=1)
    with pytest.raises(ValueError, match="inert"):
        route_and_write(con, tmp_path / "x", DAY, reg.get(types[0]), [], Router(recipients),
                        policy=policy, shard=(0, 2))
    con.close()


@pytest.mark.parametrize("sizes,workers,expected", [
    ([300, 250, 200, 150, 100], 2, [1, 1, 1, 1, 1]),   # five similar types: no work repeated
    ([1000], 2, [2]),                                   # one type: split
    ([900, 50, 50], 2, [2, 1, 1]),                      # one dominant type: split
    ([500, 500], 2, [1, 1]),                            # already even
    ([500, 500, 400], 2, [2, 1, 1]),                    # 3 jobs on 2 workers: one is split
    ([700, 300], 3, [3, 3]),                            # 2 jobs on 3 workers: both split
    ([10, 10], 1, [1, 1]),
    ([], 2, []),
])
def test_a_type_is_split_only_when_a_worker_would_stand_idle(sizes, workers, expected):
    from herald.parallel import shard_counts

    assert shard_counts(sizes, workers) == expected


def test_a_day_of_one_type_is_split_over_the_workers_and_writes_what_one_worker_writes(tmp_path):
    """One report type: the pool splits it into recipient shards (shard_counts) and the run writes
    the same bytes and counts as one process."""
    from herald.constituency.recipients import recipients_from_specs
    from herald.parallel import shard_counts

    gen = tmp_path / "gen"
    assert generate.main(["--events", "20000", "--out", str(gen), "--recipients", "200",
                          "--cidrs", "10000", "--seed", "7", "--types", "scan_dns"]) == 0
    raw = tomllib.loads((gen / "herald.toml").read_text())
    recipients = recipients_from_specs(settings_from_dict(raw, base=gen).recipients_spec)
    assert shard_counts([1], 2) == [2]
    out = both(raw, gen, gen / "inbox", tmp_path, recipients)
    assert {r["type"] for r in out[1][1]["reports"]} == {"scan_dns"}
    assert len(out[1][1]["reports"]) > 20
    assert out[2][0] == out[1][0]
    assert out[2][1] == out[1][1]


def test_the_pools_route_jobs_compose_the_messages(generated, tmp_path):
    """With two workers and an inert policy every type's messages are composed in the route jobs
    (fault point ``compose`` in the workers, never in this process), and the driver still passes
    ``report:<n>`` once per message, in run order."""
    import os

    from herald import faults
    from herald.constituency.recipients import recipients_from_specs

    raw = tomllib.loads((generated / "herald.toml").read_text())
    recipients = recipients_from_specs(settings_from_dict(raw, base=generated).recipients_spec)
    settings = settings_for(raw, generated, tmp_path / "run", generated / "inbox", 2)
    log = tmp_path / "points.log"

    def record(name: str) -> None:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {name}\n")

    hook = faults.install(record)
    try:
        summary = run_day(settings, DAY, recipients=recipients)
    finally:
        faults.remove(hook)
    points = [line.split() for line in log.read_text().splitlines()]
    compose = [int(pid) for pid, name in points if name == "compose"]
    reports = [name for pid, name in points if name.startswith("report:")]
    types = {r["type"] for r in summary.reports}
    assert len(compose) >= len(types) >= 3 and os.getpid() not in compose
    assert reports == [f"report:{n}" for n in range(1, len(summary.reports) + 1)]
    assert {int(pid) for pid, name in points if name.startswith("report:")} == {os.getpid()}
    assert summary.reconciles and all(Path(r["message"]).is_file() for r in summary.reports)

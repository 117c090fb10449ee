"""Issue 14: a national CERT's policy run (abuse contacts, an inhibition, a re-notification
window) on Spark (``herald run --engine spark``, ``local[2]``) writes exactly what the local engine
writes.

The set-up is the stage pool's (``test_abuse_parallel.py``): RPSL fixtures imported, overrides,
an inhibition, three report types over two days (the second within the first's window), and two
mailboxes whose slugs collide across types.  Spark routes and writes each type in a task of its own
with the broadcast policy (``herald.engines.spark.SparkEngine.route_types``); the driver merges the
automatic recipients in type order, and routes a type again itself when a task named a new
mailbox otherwise than the merge does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_abuse_parallel import DAYS, TYPES, database_view, file_hashes, make_root, summary_view

import herald.reports.write as write
from herald.config import load_settings
from herald.pipeline import run_day
from tests.spark_support import SPARK


def _run(root: Path, engine: str) -> dict:
    """Both days with ``engine``; the driver's own route_and_write calls are counted (the Spark
    tasks run in Spark's Python workers, which this patch does not reach)."""
    cfg = make_root(root, 1, {"spark": dict(SPARK)} if engine == "spark" else None)
    settings = load_settings(cfg)
    calls: list[str] = []
    real = write.route_and_write

    def counting(*a, **k):
        calls.append(a[3].name)
        return real(*a, **k)

    write.route_and_write = counting
    try:
        summaries = [run_day(settings, day, engine=engine) for day in DAYS]
    finally:
        write.route_and_write = real
    return {"root": root, "summaries": summaries, "calls": calls, "files": file_hashes(root),
            "summary": [summary_view(s, root) for s in summaries],
            "db": database_view(settings.database_url, root)}


@pytest.fixture(scope="module")
def runs(spark_ready, tmp_path_factory):
    """The two days with the local engine (one process) and on Spark."""
    return {engine: _run(tmp_path_factory.mktemp(engine) / "run", engine)
            for engine in ("local", "spark")}


def test_policy_run_on_spark_is_byte_identical_to_local(runs):
    local, spark = runs["local"], runs["spark"]
    for s in local["summaries"] + spark["summaries"]:
        assert s.ok and s.reconciles, s.to_dict()
    # Every report, message and re-notification record, by SHA-256.
    assert spark["files"] == local["files"]
    assert any(k.startswith("data/notified/date=") for k in local["files"])
    assert sum(1 for k in local["files"] if k.startswith("outbox/") and k.endswith(".eml")) > 10
    # The summaries (counts, reports, warnings) and the stored automatic recipients and ledger.
    assert spark["summary"] == local["summary"]
    assert spark["db"] == local["db"]
    d1, d2 = local["summary"]
    assert d1["rows_inhibited"] == 4 and d2["rows_inhibited"] == 4
    assert d1["rows_renotify_suppressed"] == 0 and d2["rows_renotify_suppressed"] > 0
    assert sum(r[3] == "abuse_contact" for r in local["db"]["recipients"]) >= 3


def test_spark_tasks_routed_every_type_but_the_conflicting_ones(runs):
    # Local: every type of both days in the driver.  Spark: the tasks route every type; on day 1
    # the driver routes again scan_ftp and scan_http, whose tasks named desk@x.example without the
    # hash suffix (scan_dns's Desk@x.example has its slug in type order); on day 2 the stored
    # names are known to the tasks, so nothing is routed again.
    assert runs["local"]["calls"] == sorted(TYPES) * 2
    assert runs["spark"]["calls"] == ["scan_ftp", "scan_http"]
    s1 = runs["spark"]["summaries"][0].to_dict()
    assert "spark" in s1["stages_seconds"]


def test_the_broadcast_policy_pickles_without_the_contact_data(tmp_path):
    """No Spark needed: what the driver broadcasts pickles with the standard pickler (Spark's
    broadcasts use it), leaves the contact data out for the workers to load by generation, and
    leaves the driver's policy as it was."""
    import pickle

    from herald.constituency.sync import routing_recipients, sync_config
    from herald.engines.spark_tasks import shipped_policy
    from herald.reports.policy import policy_for_run
    from herald.route import Router
    from herald.store.db import open_db

    settings = load_settings(make_root(tmp_path / "run", 1))
    db = open_db(settings.database_url)
    try:
        sync_config(db, settings)
        policy, warnings = policy_for_run(settings, DAYS[0], Router(routing_recipients(db, DAYS[0])), db)
    finally:
        db.dispose()
    assert not warnings and not policy.inert and policy.inhibitions and policy.max_window == 2
    data = policy.abuse.data
    shipped, generation = shipped_policy(policy)
    copy = pickle.loads(pickle.dumps(shipped))
    assert generation == data.manifest["generation"]
    assert copy.abuse.data is None and policy.abuse.data is data
    assert [r.name for r in copy.router.recipients] == [r.name for r in policy.router.recipients]
    from herald.contacts.routing import AbuseContact

    auto = AbuseContact(name="abuse@example.net", email="abuse@example.net", kind="abuse_contact")
    assert copy.window_of(auto, "scan_http") == policy.window_of(auto, "scan_http") == 2
    assert len(copy.inhibitions) == len(policy.inhibitions) == 1

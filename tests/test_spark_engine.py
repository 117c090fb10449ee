"""``herald run --engine spark`` writes byte for byte what the local engine writes.

Each test runs the same day twice, into separate folders -- once with the local engine, once on
Spark (``local[2]``, small memory) -- and compares the SHA-256 of every file under ``reports/``
and ``outbox/`` (by relative path) and the summary's counts.  Days: the example day
(``examples/``) and a generated day of 100,000 events (``bench/generate.py``, small
constituency).

Spark needs ``pyspark`` and Java 17+.  Without them the tests skip locally, with the reason, but
FAIL under CI (``CI=true``): ``scripts/test.sh`` installs both (``spark_ready``,
``tests/spark_support.py``).  A national CERT's policy run on Spark:
``tests/contacts/test_abuse_spark.py``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from herald.config import settings_from_dict
from herald.errors import ConfigError
from herald.pipeline import run_day
from tests.spark_support import SPARK

DAY = "2026-11-30"


def _settings(raw: dict, base: Path, out: Path, inbox: Path):
    raw = dict(raw)
    raw["paths"] = {"inbox": str(inbox), "data": str(out / "data"), "reports": str(out / "reports"),
                    "outbox": str(out / "outbox")}
    raw["spark"] = dict(SPARK)
    return settings_from_dict(raw, base=base)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _counts(summary) -> dict:
    d = summary.to_dict()
    return {k: d[k] for k in d if k.startswith("rows_")} | {"reports": len(d["reports"])}


def _both(raw: dict, base: Path, inbox: Path, tmp_path: Path, recipients=None):
    """Run the day with both engines; return ``{engine: (counts, reports, outbox, summary)}``."""
    out = {}
    for engine in ("local", "spark"):
        s = _settings(raw, base, tmp_path / engine, inbox)
        summary = run_day(s, DAY, engine=engine, recipients=recipients)
        assert summary.ok and summary.reconciles, summary.errors
        out[engine] = (_counts(summary), _digests(tmp_path / engine / "reports"),
                       _digests(tmp_path / engine / "outbox"), summary)
    return out


def test_example_day_is_byte_identical_on_spark(spark_ready, repo_root, tmp_path):
    """The example day, with the IntelMQ twins of the reports (``[report] formats``) too."""
    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    raw.setdefault("report", {})["formats"] = ["intelmq"]
    res = _both(raw, repo_root / "examples", repo_root / "examples/inbox", tmp_path)
    local, spark = res["local"], res["spark"]
    assert local[0]["rows_reported"] > 0 and local[0]["rows_duplicate"] > 0
    assert spark[0] == local[0]
    assert spark[1] == local[1] and len(local[1]) == 2 * local[0]["reports"]
    assert sum(p.endswith(".intelmq.jsonl") for p in spark[1]) == local[0]["reports"]
    assert spark[2] == local[2] and local[2]
    # The driver recorded the reports in the ledger as the local run does.
    keys = ("recipient", "type", "rows", "sha256", "message_id", "subject", "report_id")
    assert [tuple(r[k] for k in keys) for r in spark[3].reports] == \
        [tuple(r[k] for k in keys) for r in local[3].reports]


def test_generated_100k_day_is_byte_identical_on_spark(spark_ready, repo_root, tmp_path):
    gen = tmp_path / "gen"
    subprocess.run([sys.executable, str(repo_root / "bench/generate.py"), "--events", "100000",
                    "--out", str(gen), "--recipients", "200", "--cidrs", "2000", "--day", DAY],
                   check=True, capture_output=True)
    raw = tomllib.loads((gen / "herald.toml").read_text())
    # User IP data on top of the embedded table: the Spark tasks load the run's table from the
    # file the driver saved (<data>/tmp/spark/), removed after the run.
    fake = repo_root / "tests/data/samples/enrichment/pyasn/ipasn.fake.dat"
    raw["enrich"] = {"ipdata": [{"format": "ipasn", "path": str(fake)}]}
    res = _both(raw, gen, gen / "inbox", tmp_path)
    assert not list((tmp_path / "spark/data/tmp/spark").glob("ipdata-*"))
    local, spark = res["local"], res["spark"]
    assert local[0]["rows_in"] == 100_000 and local[0]["rows_duplicate"] > 0
    assert local[0]["rows_reported"] > 0
    assert spark[0] == local[0]
    assert len(local[1]) == local[0]["reports"] > 10
    assert spark[1] == local[1]
    assert spark[2] == local[2]


def test_spark_section_is_typed(repo_root, tmp_path, monkeypatch):
    from herald.engines.spark_config import spark_settings

    monkeypatch.delenv("SPARK_MASTER", raising=False)
    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    s = _settings(raw, repo_root / "examples", tmp_path, repo_root / "examples/inbox")
    cfg = spark_settings(s)
    assert (cfg.master, cfg.driver_memory, cfg.shuffle_partitions) == ("local[2]", "1g", 4)
    raw["spark"] = {"master": "local[2]", "executors": 3}
    with pytest.raises(ConfigError, match="unknown key"):  # at load time, whatever the engine
        settings_from_dict(raw, base=repo_root / "examples")
    raw["spark"] = {"shuffle_partitions": "many"}
    with pytest.raises(ConfigError, match="positive integer"):
        spark_settings(settings_from_dict(raw, base=repo_root / "examples"))
    raw["spark"] = {}
    assert spark_settings(settings_from_dict(raw, base=repo_root / "examples")).master == "local[*]"


def test_spark_master_from_the_environment(repo_root, monkeypatch):
    from herald.engines.spark_config import spark_settings

    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    raw["spark"] = {"master": "local[2]"}
    monkeypatch.setenv("SPARK_MASTER", "spark://example:7077")
    assert spark_settings(settings_from_dict(raw, base=repo_root / "examples")).master == \
        "spark://example:7077"


def test_cli_run_engine_spark_matches_the_local_summary(spark_ready, repo_root, tmp_path, capsys,
                                                        monkeypatch):
    """``herald run --engine spark`` (master from ``SPARK_MASTER``) prints the local run's
    summary lines and exits 0."""
    import tomli_w

    from herald.cli import main

    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    outputs = {}
    for engine in ("local", "spark"):
        raw["paths"] = {"inbox": str(repo_root / "examples/inbox"), "data": str(tmp_path / engine / "data"),
                        "reports": str(tmp_path / engine / "reports"),
                        "outbox": str(tmp_path / engine / "outbox")}
        raw["spark"] = {"driver_memory": "1g", "shuffle_partitions": 4}
        cfg = tmp_path / f"{engine}.toml"
        cfg.write_bytes(tomli_w.dumps(raw).encode())
        assert main(["run", "--config", str(cfg), "--date", DAY, "--engine", engine]) == 0
        outputs[engine] = capsys.readouterr().out.replace(str(tmp_path / engine), "<out>")
    assert outputs["spark"] == outputs["local"] and "145 reported" in outputs["local"]


def test_write_reports_streams_a_report_split_across_batches(tmp_path):
    """The partition writer (no Spark needed): a report whose records come in several batches,
    sorted by (type, recipient, k), is one file -- header, then the records in ``k`` order --
    and the count rows are summed."""
    import pyarrow as pa

    from herald.constituency.recipients import Recipient
    from herald.engines.spark_tasks import DISTINCT, REPORTED, write_reports
    from herald.reports.render import csv_header, report_filename
    from herald.schema import default_registry

    class Value:
        def __init__(self, value):
            self.value = value

    rtype = default_registry().get("scan_dns")
    rcpts = [Recipient("Alpha Net", "a@x.example", asns=[1]), Recipient("Beta Net", "b@x.example", asns=[2])]
    # Sorted as Spark's sortWithinPartitions(t, rid, k) delivers them: counts first (rid < 0).
    rows = [(DISTINCT, 7, None), (REPORTED, 5, None), (REPORTED, 1, None),
            (0, 10, b"a1\n"), (0, 11, b"a2\n"), (0, 40, b"a3\n"), (1, 12, b"b1\n")]
    table = pa.table({"t": pa.array([0] * len(rows), pa.int32()),
                      "rid": pa.array([r[0] for r in rows], pa.int32()),
                      "k": pa.array([r[1] for r in rows], pa.int64()),
                      "line": pa.array([r[2] for r in rows], pa.binary()),
                      "jline": pa.nulls(len(rows), pa.binary())})
    batches = table.to_batches(max_chunksize=2)  # Alpha's records span two batches
    out = pa.Table.from_batches(list(write_reports(iter(batches), reports_dir=str(tmp_path),
                                                   day=DAY, rtypes=[rtype], recipients_bc=Value(rcpts))))
    got = {(r["rid"]): r for r in out.to_pylist()}
    assert got[REPORTED]["rows"] == 6 and got[DISTINCT]["rows"] == 7
    alpha = tmp_path / DAY / rcpts[0].slug / report_filename(DAY, rtype, rcpts[0])
    assert alpha.read_bytes() == csv_header(rtype) + b"a1\na2\na3\n"
    assert got[0]["rows"] == 3 and got[0]["path"] == str(alpha)
    assert got[0]["sha256"] == hashlib.sha256(alpha.read_bytes()).hexdigest()
    assert got[1]["rows"] == 1 and got[1]["intelmq"] is None


def test_spark_run_with_the_event_store_on_s3(spark_ready, s3, repo_root, tmp_path):
    """An S3 event store (moto, ``tests/s3_support.py``) on Spark: the reports and counts of the
    local engine with a local store.  Spark runs in a child process (``herald run``) started with
    the fake credentials in its environment, as executors must get them (never from the file)."""
    import os

    import tomli_w

    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    local = run_day(_settings(raw, repo_root / "examples", tmp_path / "local",
                              repo_root / "examples/inbox"), DAY)
    raw = dict(raw)
    raw["paths"] = {"inbox": str(repo_root / "examples/inbox"), "data": str(tmp_path / "s3/data"),
                    "reports": str(tmp_path / "s3/reports"), "outbox": str(tmp_path / "s3/outbox"),
                    "events": f"s3://{s3.bucket}/events"}
    raw["s3"] = s3.s3_section()
    raw["spark"] = dict(SPARK)
    cfg = tmp_path / "s3.toml"
    cfg.write_bytes(tomli_w.dumps(raw).encode())
    proc = subprocess.run([sys.executable, "-m", "herald.cli", "run", "--config", str(cfg),
                           "--date", DAY, "--engine", "spark"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "testing-secret" not in proc.stdout + proc.stderr
    assert _digests(tmp_path / "s3/reports") == _digests(tmp_path / "local/reports")
    summary = json.loads((tmp_path / "s3/data/runs" / f"{DAY}.json").read_text())
    assert {k: summary[k] for k in summary if k.startswith("rows_")} == \
        {k: v for k, v in _counts(local).items() if k.startswith("rows_")}
    assert not (tmp_path / "s3/data/events").exists()

"""The event store on S3 (``[paths] events = "s3://bucket/prefix"``, herald.eventstore), against
moto's S3 server (the ``s3`` fixture of tests/s3_support.py): the run's reports and counts are
those of a local store, markers make a resumed run skip stored inputs, de-duplication keeps the
same rows, purge deletes expired prefixes, and configuration mistakes are clear ConfigErrors that
name the setting and never show a credential."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from herald import faults
from herald.errors import ConfigError
from herald.eventstore import EventStore, S3Options, parse_event_store
from herald.pipeline import run_day
from herald.schema import default_registry
from herald.store import ingest as ingest_mod
from herald.store import ledger
from herald.store.dedup import duckdb_connection, first_occurrences, stored_rows
from tests.s3_support import example_settings

DAY = "2026-11-30"
REG = default_registry()
COUNT_KEYS = ("rows_in", "rows_stored", "rows_quarantined", "rows_failed", "rows_reported",
              "rows_unrouted", "rows_duplicate", "rows_inhibited", "rows_renotify_suppressed")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _counts(summary) -> dict:
    d = summary.to_dict()
    return {k: d[k] for k in COUNT_KEYS}


def _keys(s3, prefix: str) -> list[str]:
    import pyarrow.fs as pafs

    sel = pafs.FileSelector(f"{s3.bucket}/{prefix}", recursive=True, allow_not_found=True)
    return sorted(i.path for i in s3.filesystem().get_file_info(sel) if i.type == pafs.FileType.File)


@pytest.mark.parametrize("workers", [1, 2])
def test_run_on_s3_writes_the_reports_and_counts_of_a_local_store(repo_root, tmp_path, s3, workers):
    local = run_day(example_settings(repo_root, tmp_path / "local", workers=workers), DAY)
    remote_settings = example_settings(repo_root, tmp_path / "s3", events=f"s3://{s3.bucket}/events/prod",
                                s3=s3.s3_section(), workers=workers)
    remote = run_day(remote_settings, DAY)
    assert not remote.errors and not local.errors
    assert _counts(remote) == _counts(local)
    assert _files(tmp_path / "s3" / "reports") == _files(tmp_path / "local" / "reports")
    assert [r["sha256"] for r in remote.reports] == [r["sha256"] for r in local.reports]
    # the events and the markers are objects in the bucket, none in the local data folder
    keys = _keys(s3, "events/prod")
    assert any(k.endswith(".parquet") and f"date={DAY}/type=" in k for k in keys)
    assert any(f"date={DAY}/_inputs/" in k and k.endswith(".json") for k in keys)
    assert not (tmp_path / "s3" / "data" / "events").exists()
    local_parquet = sorted(p.name for p in (tmp_path / "local/data/events").rglob("*.parquet"))
    assert sorted(k.rsplit("/", 1)[1] for k in keys if k.endswith(".parquet")) == local_parquet
    # the summary holds the stored inputs' URIs nowhere, and no credential
    text = (tmp_path / "s3" / "data" / "runs" / f"{DAY}.json").read_text()
    assert "testing-secret" not in text


def test_forced_rerun_and_resumed_run_on_s3(repo_root, tmp_path, s3, monkeypatch):
    settings = example_settings(repo_root, tmp_path, events=f"s3://{s3.bucket}/ev", s3=s3.s3_section())
    reports = tmp_path / "reports"

    # A run killed after its third input is stored: the ledger entry stays "running".
    class Killed(BaseException):
        pass

    def kill(name):
        if name == "ingest:3":
            raise Killed()

    monkeypatch.setattr(ledger, "fail_run", lambda *a, **k: None)
    hook = faults.install(kill)
    try:
        with pytest.raises(Killed):
            run_day(settings, DAY)
    finally:
        faults.remove(hook)
    monkeypatch.undo()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}.items():
        monkeypatch.setenv(k, v)
    markers = [k for k in _keys(s3, "ev") if "/_inputs/" in k]
    assert len(markers) == 3

    parsed = []
    real = ingest_mod.ingest_input

    def counting(path, *a, **k):
        parsed.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(ingest_mod, "ingest_input", counting)
    resumed = run_day(settings, DAY)
    assert not resumed.errors
    n_inputs = len(resumed.inputs)
    assert len(parsed) == n_inputs - 3  # the stored three came from their markers
    first_files = _files(reports)

    # done: not run again; --force: run again, the same files and counts
    assert run_day(settings, DAY).skipped
    forced = run_day(settings, DAY, force=True)
    assert len(parsed) == 2 * n_inputs - 3  # a forced run parses every input again
    assert _files(reports) == first_files
    assert _counts(forced) == _counts(resumed)
    local = run_day(example_settings(repo_root, tmp_path / "local"), DAY)
    assert _counts(local) == _counts(forced)
    assert _files(tmp_path / "local" / "reports") == first_files


def _dupes_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"ip": pa.array([f"192.0.2.{i}" for i in rng.integers(0, 20, n)]),
                     "port": pa.array(rng.integers(0, 3, n), pa.int32()),
                     "note": pa.array([None if i % 7 == 0 else "x" for i in range(n)])})


def test_dedup_masks_through_arrow_equal_duckdbs_read_parquet(tmp_path, s3):
    rtype = REG.get("scan_http")
    cols = rtype.columns
    files, remote = [], []
    store = EventStore(f"s3://{s3.bucket}/d", S3Options(**s3.s3_section()))
    for i in range(3):
        t = _dupes_table(500 + 100 * i, i)
        t = t.rename_columns([cols[0], cols[1], cols[2]]) if i != 1 else \
            t.select([0, 1]).rename_columns([cols[0], cols[1]])  # a file lacking a column
        local = tmp_path / f"f{i}.parquet"
        pq.write_table(t, local, row_group_size=128)
        files.append(str(local))
        uri = store.path(f"f{i}.parquet")
        store.write_bytes(uri, local.read_bytes())
        remote.append(uri)
    con = duckdb_connection(tmp_path / "duck")
    try:
        want = first_occurrences(con, files, rtype)
        got = first_occurrences(con, remote, rtype, store)
    finally:
        con.close()
    assert [m.tolist() for m in got] == [m.tolist() for m in want]
    assert 0 < sum(int(m.sum()) for m in got) < stored_rows(remote, store)


def test_purge_deletes_expired_day_prefixes_on_s3(repo_root, tmp_path, s3):
    from herald.store.db import open_db
    from herald.store.purge import purge

    settings = example_settings(repo_root, tmp_path, events=f"s3://{s3.bucket}/ev", s3=s3.s3_section())
    store = settings.event_store
    for day in ("2026-10-01", "2026-11-29"):
        store.write_bytes(store.path(f"date={day}", "type=scan_http", "a.parquet"), b"x")
        store.write_bytes(store.path(f"date={day}", "_inputs", "a.json"), b"{}")
    (tmp_path / "data").mkdir(parents=True)
    db = open_db(settings.database_url)
    try:
        dry = purge(db, settings, date(2026, 11, 30), keep_days=30, dry_run=True)
        assert dry.event_days == [date(2026, 10, 1)]
        assert len(_keys(s3, "ev")) == 4
        done = purge(db, settings, date(2026, 11, 30), keep_days=30)
    finally:
        db.engine.dispose()
    assert done.event_days == [date(2026, 10, 1)]
    assert all("date=2026-11-29" in k for k in _keys(s3, "ev")) and len(_keys(s3, "ev")) == 2


@pytest.mark.parametrize("value, words", [
    ("hdfs://namenode/events", ["paths.events", "'hdfs' is not supported"]),
    ("gs://bucket/events", ["paths.events", "'gs' is not supported"]),
    ("s3a://Bad_Bucket/x", ["paths.events", "not a valid S3 bucket"]),
    ("s3:///events", ["paths.events", "not a valid S3 bucket"]),
    ("s3://Bad_Bucket/x", ["paths.events", "not a valid S3 bucket"]),
    ("s3://bucket/a/../b", ["paths.events", "'..'"]),
    ("file://relative/x", ["paths.events", "absolute"]),
])
def test_bad_event_store_uris_are_config_errors(repo_root, tmp_path, value, words):
    with pytest.raises(ConfigError) as err:
        example_settings(repo_root, tmp_path, events=value)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("value, uri", [
    ("s3a://bucket/events", "s3://bucket/events"),
    ("S3A://bucket//a/b/", "s3://bucket/a/b"),
    ("s3://bucket", "s3://bucket"),
])
def test_s3a_uris_name_the_same_s3_store(value, uri):
    store = parse_event_store(value, Path("/nonexistent"), S3Options(), "herald.toml")
    assert store.root == uri and not store.is_local


def test_credentials_in_the_file_are_refused_without_repeating_them(repo_root, tmp_path):
    with pytest.raises(ConfigError) as err:
        example_settings(repo_root, tmp_path, events="s3://bucket/x",
                  s3={"secret_key": "SUPERSECRET123", "region": "x"})
    assert "AWS_SECRET_ACCESS_KEY" in str(err.value) and "SUPERSECRET123" not in str(err.value)
    with pytest.raises(ConfigError, match="s3.scheme"):
        example_settings(repo_root, tmp_path, events="s3://bucket/x", s3={"scheme": "ftp"})
    with pytest.raises(ConfigError, match="unknown key"):
        example_settings(repo_root, tmp_path, events="s3://bucket/x", s3={"endpoint": "x"})


def test_missing_bucket_and_missing_credentials_are_config_errors(repo_root, tmp_path, s3,
                                                                   monkeypatch):
    settings = example_settings(repo_root, tmp_path, events="s3://no-such-bucket-here/ev",
                         s3=s3.s3_section())
    with pytest.raises(ConfigError) as err:
        run_day(settings, DAY)
    msg = str(err.value)
    assert "paths.events" in msg and "no-such-bucket-here" in msg and "does not exist" in msg
    assert "testing-secret" not in msg
    assert not (tmp_path / "data").exists()  # nothing started

    good = example_settings(repo_root, tmp_path, events=f"s3://{s3.bucket}/ev", s3=s3.s3_section())
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError) as err:
        run_day(good, DAY)
    assert "AWS_ACCESS_KEY_ID" in str(err.value) and "AWS_SECRET_ACCESS_KEY" in str(err.value)


def test_default_and_local_event_storeexample_settings(repo_root, tmp_path):
    default = example_settings(repo_root, tmp_path)
    assert default.events is None
    assert default.event_store == EventStore(str(tmp_path / "data" / "events"))
    other = example_settings(repo_root, tmp_path, events=str(tmp_path / "elsewhere"))
    assert other.event_store.is_local and other.event_store.root == str(tmp_path / "elsewhere")
    s3 = example_settings(repo_root, tmp_path, events="s3://bucket/a//b/", s3={"region": "eu-west-1"})
    assert s3.event_store == EventStore("s3://bucket/a/b", S3Options(region="eu-west-1"))
    assert "events" not in s3.paths.__dict__  # the summary's paths are unchanged


def test_a_failed_write_leaves_no_object(s3):
    from herald.store.events import write_events

    store = EventStore(f"s3://{s3.bucket}/ev", S3Options(**s3.s3_section()))
    schema = pa.schema([("ip", pa.string())])

    def batches():
        yield pa.record_batch([pa.array(["192.0.2.1"] * 10)], schema=schema)
        raise RuntimeError("parser failed")

    with pytest.raises(RuntimeError, match="parser failed"):
        write_events(Path("/unused"), DAY, "scan_http", "ab" * 32, batches(), schema, store=store)
    assert _keys(s3, "ev") == []
    uri, rows = write_events(Path("/unused"), DAY, "scan_http", "ab" * 32,
                             pa.table({"ip": ["192.0.2.1"] * 3}), schema, store=store)
    assert uri == f"s3://{s3.bucket}/ev/date={DAY}/type=scan_http/{'ab' * 16}.parquet"
    assert rows == 3 and store.parquet_file(uri).metadata.num_rows == 3


def test_a_local_event_store_elsewhere_gives_the_same_run(repo_root, tmp_path):
    default = run_day(example_settings(repo_root, tmp_path / "a"), DAY)
    moved = run_day(example_settings(repo_root, tmp_path / "b", events=str(tmp_path / "ev")), DAY)
    assert _counts(moved) == _counts(default)
    assert _files(tmp_path / "b" / "reports") == _files(tmp_path / "a" / "reports")
    parquet = {k: v for k, v in _files(tmp_path / "ev").items() if k.endswith(".parquet")}
    assert parquet and parquet == {k: v for k, v in _files(tmp_path / "a/data/events").items()
                                   if k.endswith(".parquet")}
    assert len(list((tmp_path / "ev").rglob("_inputs/*.json"))) == len(moved.inputs)
    assert not (tmp_path / "b" / "data" / "events").exists()


def test_an_unreachable_s3_service_is_a_config_error(repo_root, tmp_path, monkeypatch):
    from tests.s3_support import FAKE_ENV, free_port

    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    settings = example_settings(repo_root, tmp_path, events="s3://bucket-x/ev",
                         s3={"endpoint_override": f"127.0.0.1:{free_port()}", "scheme": "http",
                             "region": "us-east-1"})
    with pytest.raises(ConfigError) as err:
        run_day(settings, DAY)
    msg = str(err.value)
    assert msg.startswith("paths.events = 's3://bucket-x/ev': cannot reach the event store")
    assert "testing-secret" not in msg

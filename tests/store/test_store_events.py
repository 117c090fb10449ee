"""The event store's writer: Parquet written in a second thread must give the bytes a plain loop
gives, and a failure on either side must leave no file behind."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from herald.store.events import event_files, type_dir, write_events

SCHEMA = pa.schema([("ip", pa.string()), ("asn", pa.int64())])


def batches(n: int, size: int = 1000):
    for i in range(n):
        yield pa.record_batch([pa.array([f"10.0.{i % 256}.{j % 256}" for j in range(size)]),
                               pa.array(range(i * size, (i + 1) * size), pa.int64())], schema=SCHEMA)


def test_write_events_same_bytes_as_a_plain_writer(tmp_path):
    out, rows = write_events(tmp_path, "2026-11-30", "scan_http", "ab" * 32, batches(7), SCHEMA)
    assert rows == 7000 and out == type_dir(tmp_path, "2026-11-30", "scan_http") / ("ab" * 16 + ".parquet")
    plain = tmp_path / "plain.parquet"
    with pq.ParquetWriter(plain, SCHEMA, compression="zstd") as w:
        for b in batches(7):
            w.write_batch(b)
    assert out.read_bytes() == plain.read_bytes()
    assert pq.read_table(out).equals(pa.Table.from_batches(list(batches(7))))
    # Empty batches are skipped; a table is accepted too.
    empty = pa.record_batch([pa.array([], pa.string()), pa.array([], pa.int64())], schema=SCHEMA)
    _, rows = write_events(tmp_path, "2026-11-30", "scan_http", "cd" * 32,
                           pa.Table.from_batches([empty, *batches(2)]), SCHEMA)
    assert rows == 2000


def test_write_events_producer_failure_leaves_nothing(tmp_path):
    def failing():
        yield from batches(3)
        raise RuntimeError("bad input")

    with pytest.raises(RuntimeError, match="bad input"):
        write_events(tmp_path, "2026-11-30", "scan_http", "ab" * 32, failing(), SCHEMA)
    d = type_dir(tmp_path, "2026-11-30", "scan_http")
    assert list(d.iterdir()) == [] and event_files(tmp_path, "2026-11-30", "scan_http") == []


def test_write_events_writer_failure_is_raised_and_leaves_nothing(tmp_path):
    other = pa.record_batch([pa.array([1, 2], pa.int64())], names=["x"])  # not SCHEMA
    produced = []

    def mixed():
        for b in [*batches(2), other, *batches(50)]:
            produced.append(b)
            yield b

    with pytest.raises(ValueError, match="schema does not match"):
        write_events(tmp_path, "2026-11-30", "scan_http", "ab" * 32, mixed(), SCHEMA)
    assert list(type_dir(tmp_path, "2026-11-30", "scan_http").iterdir()) == []
    assert len(produced) < 53  # the producer stopped soon after the failure


def test_event_files_are_owner_only(tmp_path):
    """The event store holds the day's raw addresses (personal data): its Parquet files are
    created ``0600`` whatever the other outputs' mode."""
    import os
    import stat

    import pyarrow as pa

    from herald.store.events import write_events

    table = pa.table({"ip": ["192.0.2.1"], "port": pa.array([80], pa.int32())})
    path, rows = write_events(tmp_path, "2026-11-30", "scan_http", "ab" * 32, table, table.schema)
    assert rows == 1 and path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600

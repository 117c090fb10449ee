"""Within-day de-duplication of the daily run: first occurrences, in input order, across files."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from herald.store.dedup import distinct_batches, duckdb_connection
from herald.schema import default_registry

RT = default_registry().get("scan_http")


def _rows(rnd: random.Random, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        out.append({
            "timestamp": datetime(2026, 11, 30, rnd.randint(0, 1), 0, 0, tzinfo=timezone.utc),
            "ip": rnd.choice(["192.0.2.1", "192.0.2.2", "2001:db8::1", None]),
            "port": rnd.choice([80, 8080, None]),
            "asn": rnd.choice([64496, 0, None]),
            "geo": rnd.choice(["AT", "", None]),
            "http": rnd.choice(["a", "b", ""]),
        })
    return out


def _write(path, rows, columns, extra=False):
    schema = RT.arrow_schema
    cols = {c: pa.array([r.get(c) for r in rows], schema.field(c).type) for c in columns}
    if extra:
        # a sensor's extra column (not part of the type) does not make two events different
        cols["http_method"] = pa.array([random.choice(["GET", "POST"]) for _ in rows])
    pq.write_table(pa.table(cols), path)


def test_first_occurrences_in_input_order_across_files(tmp_path):
    rnd = random.Random(11)
    files, expected, seen = [], [], set()
    full = list(RT.columns)
    for i in range(4):
        rows = _rows(rnd, 300)
        # file 2 lacks the geo column (its rows are events with geo null)
        columns = [c for c in full if not (i == 2 and c == "geo")] if i != 1 else full
        present = [c for c in columns if c in ("timestamp", "ip", "port", "asn", "geo", "http")]
        p = tmp_path / f"{i}.parquet"
        _write(p, rows, columns, extra=(i == 3))
        files.append(str(p))
        for r in rows:
            key = tuple(r.get(c) if c in present else None for c in full)
            if key not in seen:
                seen.add(key)
                expected.append(key)
    con = duckdb_connection(tmp_path / "duck")
    got = []
    for t in distinct_batches(con, files, RT, batch_rows=97):
        assert t.schema == RT.arrow_schema
        for r in t.to_pylist():
            got.append(tuple(r[c] for c in full))
    # about two thirds of the 1,200 rows repeat an earlier one
    assert 100 < len(expected) < 1000
    assert got == expected

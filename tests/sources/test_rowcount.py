"""Rows of an input that cannot be read (issue 12 item 1): the counting rule of
``herald/sources/rowcount.py`` (docs/input.md, "Inputs that cannot be read")."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from herald.sources.rowcount import physical_rows


def test_csv_records_after_the_header_quote_aware(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b'"a","b"\r\n1,"two\nlines"\r\n\r\n3,"x, y"\n4,\xff\xfe\n')
    assert physical_rows(p) == 3
    (tmp_path / "h.csv").write_text('"a","b"\n')
    assert physical_rows(tmp_path / "h.csv") == 0
    (tmp_path / "e.csv").write_text("")
    assert physical_rows(tmp_path / "e.csv") == 0
    (tmp_path / "u.csv").write_text('a,b\n1,"unterminated\n2,3\n')
    assert physical_rows(tmp_path / "u.csv") == 1  # the open quote runs to the end of the file


def test_json_lines_arrays_and_parquet(tmp_path):
    (tmp_path / "e.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')
    assert physical_rows(tmp_path / "e.jsonl") == 3
    (tmp_path / "arr.txt").write_text('[{"a": 1}, {"a": 2}]')
    assert physical_rows(tmp_path / "arr.txt") == 2
    pq.write_table(pa.table({"a": [1, 2, 3, 4]}), tmp_path / "2026-11-30-x-y-1.parquet")
    assert physical_rows(tmp_path / "2026-11-30-x-y-1.parquet") == 4
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    assert physical_rows(tmp_path / "bad.parquet") == 0

"""Report files read back (:func:`herald.reports.read.read_report_csv`): the inverse of
:func:`herald.reports.render.render_csv` up to what a CSV keeps."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from herald.reports.read import read_report_csv
from herald.reports.render import render_csv
from herald.schema import default_registry


@pytest.fixture(scope="module")
def rtype():
    return default_registry().get("scan_http")


def _table(rtype, rows):
    return pa.Table.from_pylist(rows, schema=rtype.arrow_schema)


def test_round_trip_keeps_types_nulls_and_empty_strings(tmp_path, rtype):
    ts = datetime(2026, 11, 30, 12, 34, 56, 789000, tzinfo=timezone.utc)
    rows = [
        {"timestamp": ts, "ip": "192.0.2.1", "port": 80, "asn": 64500, "geo": "AT",
         "hostname": "", "tag": 'a,"b"\nc'},
        {"timestamp": None, "ip": "2001:db8::1", "port": None, "asn": None, "geo": None},
    ]
    table = _table(rtype, rows)
    path = tmp_path / "r.csv"
    path.write_bytes(render_csv(table, rtype))
    back = read_report_csv(path, rtype)
    assert back.schema == rtype.arrow_schema
    got = back.to_pylist()
    assert got[0]["timestamp"] == ts.replace(microsecond=0)  # the CSV keeps whole seconds
    assert got[0]["port"] == 80 and got[0]["asn"] == 64500 and got[0]["hostname"] == ""
    assert got[0]["tag"] == 'a,"b"\nc'
    assert got[1]["timestamp"] is None and got[1]["port"] is None and got[1]["geo"] is None
    expected = table.set_column(0, "timestamp", back.column("timestamp")).to_pylist()
    # the report's severity column holds the type's default where the event had none
    # (docs/reports.md)
    for row in expected:
        row["severity"] = row["severity"] or rtype.default_severity
    assert got == expected


def test_missing_and_extra_columns(tmp_path, rtype):
    """A column of the type missing from the file is null; a column not of the type is ignored."""
    path = tmp_path / "r.csv"
    path.write_text("extra,ip,port\nx,192.0.2.7,443\n")
    back = read_report_csv(path, rtype)
    assert back.schema == rtype.arrow_schema and back.num_rows == 1
    row = back.to_pylist()[0]
    assert row["ip"] == "192.0.2.7" and row["port"] == 443 and row["timestamp"] is None


def test_a_wrongly_typed_file_is_an_arrow_error(tmp_path, rtype):
    path = tmp_path / "r.csv"
    path.write_text("ip,port\n192.0.2.7,eighty\n")
    with pytest.raises(pa.ArrowInvalid):
        read_report_csv(path, rtype)


def test_formula_escaped_cells_come_back_as_their_values(tmp_path):
    """A report cell written as ``'=cmd`` (escaped against spreadsheet formulas) is read back as
    ``=cmd``; a value that merely starts with ``'`` is left alone."""
    rtype = default_registry().get("scan_http")
    path = tmp_path / "r.csv"
    path.write_text("timestamp,ip,server,hostname\n"
                    "2026-11-30 01:02:03,192.0.2.1,'=HYPERLINK(\"x\"),'quoted\n")
    t = read_report_csv(path, rtype)
    assert t.column("server").to_pylist() == ['=HYPERLINK("x")']
    assert t.column("hostname").to_pylist() == ["'quoted"]

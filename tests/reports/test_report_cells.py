"""Report cells (issue 12 item 4, issue 11): severity defaults and spreadsheet-formula escaping.

A report CSV opened in a spreadsheet must not run attacker text as a formula, and a machine reader
must recover the exact value (``herald/reports/cells.py``, ``docs/reports.md``)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from herald.reports.cells import escape_formula, escape_formulas, unescape_formula, unescape_formulas
from herald.reports.render import render_csv, render_lines
from herald.schema.registry import default_registry

RTYPE = default_registry().get("event4_sinkhole_http")
DANGER = ("=", "+", "-", "@", "\t", "\r")
# Text that stresses the rule: the dangerous characters and quotes, often at the start.
TEXT = st.text(alphabet=st.sampled_from(list("=+-@\t\r'\"a ,\n")) | st.characters(), max_size=12)
# Arrow strings are UTF-8: no lone surrogates.
UTF8 = st.text(alphabet=st.sampled_from(list("=+-@\t\r'\"a ,\n"))
               | st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=500, deadline=None)
@given(TEXT)
def test_escape_round_trips_and_never_leaves_a_formula(value):
    written = escape_formula(value)
    assert unescape_formula(written) == value
    assert not written.startswith(DANGER)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), UTF8), max_size=30))
def test_vectorized_escape_equals_the_scalar_rule(values):
    got = escape_formulas(pa.array(values, pa.string())).to_pylist()
    assert got == [None if v is None else escape_formula(v) for v in values]


def _table(rows: list[dict]) -> pa.Table:
    cols = {}
    for name, typ in RTYPE.column_types.items():
        cols[name] = pa.array([r.get(name) for r in rows], typ)
    return pa.table(cols)


EVIL = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "'=a", "ok", "",
        "'plain", "=1\n=2"]
TS = datetime(2026, 11, 30, 1, 2, 3, tzinfo=timezone.utc)


def test_report_string_cells_never_start_a_formula_and_read_back_exactly():
    rows = [{"timestamp": TS, "src_ip": "192.0.2.1", "src_port": 80, "http_agent": v, "http_url": v,
             "src_hostname": v, "severity": None} for v in EVIL]
    table = _table(rows)
    data = render_csv(table, RTYPE)
    # render_lines (the daily run's path) writes the same records
    lines = render_lines(table, RTYPE)
    assert data.split(b"\n", 1)[1] == b"".join(x.as_py() for x in lines)
    got = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    string_cols = [c for c, t in RTYPE.column_types.items() if pa.types.is_string(t)]
    for row, src in zip(got, rows):
        for c in string_cols:
            assert not row[c].startswith(DANGER), (c, row[c])
        for c in ("http_agent", "http_url", "src_hostname"):
            assert unescape_formula(row[c]) == src[c]
    assert got[0]["http_agent"].startswith("'=HYPERLINK")
    assert got[7]["http_agent"] == "ok" and got[9]["http_agent"] == "'plain"
    # integers and timestamps are not touched
    assert got[0]["src_port"] == "80" and got[0]["timestamp"] == "2026-11-30 01:02:03"


def test_report_severity_is_the_events_own_or_the_types_default():
    rows = [{"timestamp": TS, "src_ip": "192.0.2.1", "severity": s} for s in (None, "", "low", "high")]
    got = list(csv.DictReader(io.StringIO(render_csv(_table(rows), RTYPE).decode(), newline="")))
    assert RTYPE.default_severity == "critical"
    assert [r["severity"] for r in got] == ["critical", "critical", "low", "high"]
    # a type whose default differs
    other = default_registry().get("blocklist")
    if "severity" in other.columns:
        t = pa.table({n: pa.nulls(1, ty) for n, ty in other.column_types.items()})
        rec = list(csv.DictReader(io.StringIO(render_csv(t, other).decode(), newline="")))
        assert rec[0]["severity"] == other.default_severity


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), UTF8), max_size=30))
def test_vectorized_unescape_inverts_the_escape(values):
    arr = pa.array(values, pa.string())
    assert unescape_formulas(escape_formulas(arr)).to_pylist() == values


def test_xarf_documents_carry_the_exact_values_not_the_escaped_ones():
    from herald.deliver.xarf import reports_for_csv

    rows = [{"timestamp": TS, "src_ip": "192.0.2.1", "src_port": 80, "infection": "=cmd|x",
             "tag": "-t", "severity": None}]
    data = render_csv(_table(rows), RTYPE)
    assert b"'=cmd|x" in data and b"'-t" in data
    docs = reports_for_csv(RTYPE, data, recipient_slug="x", reporter_org="Herald", contact="a@b.example",
                           day="2026-11-30")
    assert docs[0]["malware_family"] == "=cmd|x"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), UTF8), st.one_of(st.none(), UTF8)), min_size=1,
                max_size=12))
@example([("a\nb", None), ("c", 'say "\n"\n')])  # the derandomized draws may hold no newline
def test_each_rendered_line_is_exactly_one_record(pairs):
    # Values with newlines and quotes: render_lines must cut records at record ends only.
    rows = [{"timestamp": TS, "src_ip": "192.0.2.1", "src_port": 80, "http_agent": a,
             "http_url": b} for a, b in pairs]
    table = _table(rows)
    lines = [x.as_py() for x in render_lines(table, RTYPE)]
    whole = list(csv.reader(io.StringIO(render_csv(table, RTYPE).decode(), newline="")))[1:]
    assert len(lines) == len(whole) == len(rows)
    for line, expected in zip(lines, whole):
        assert line.endswith(b"\n")
        assert list(csv.reader(io.StringIO(line.decode(), newline=""))) == [expected]

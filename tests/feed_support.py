"""Helpers shared by the feed tests (``tests/sources/test_feed*.py``): the invariants every parsed
feed file must hold, small file writers, and the routing of a parsed file.  Registered as a pytest
plugin in ``tests/conftest.py`` for the ``feeds`` fixture."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from herald.constituency.recipients import Recipient
from herald.route import Router

UTC = dt.timezone.utc


def ts(*args) -> dt.datetime:
    """An aware UTC datetime."""
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="session")
def feeds(data_dir) -> Path:
    """``tests/data/samples/feeds``: the real feed samples."""
    return data_dir / "samples" / "feeds"


def check(parsed, *, address_required: bool = True):
    """Invariants of every ParsedFile: exact schema, counts reconcile, time and address present."""
    rtype = parsed.report_type
    n = len(rtype.arrow_schema)
    assert parsed.table.schema.names[:n] == rtype.arrow_schema.names
    assert [f.type for f in parsed.table.schema][:n] == rtype.arrow_schema.types
    assert all(pa.types.is_string(f.type) for f in list(parsed.table.schema)[n:])
    assert parsed.rows_in == parsed.table.num_rows + len(parsed.quarantine)
    assert parsed.table.column("timestamp").null_count == 0
    if address_required:
        assert parsed.table.column(rtype.address_column).null_count == 0
    for q in parsed.quarantine.rows:
        assert q["file"] == parsed.path and q["line"] >= 1 and q["reason"]
    return parsed


def check_exact(parsed):
    """Exact schema (no extra columns), counts reconcile, every quarantined record has file, line
    and reason."""
    rtype = parsed.report_type
    assert parsed.table.schema.names == rtype.arrow_schema.names
    assert parsed.table.schema.types == rtype.arrow_schema.types
    assert parsed.rows_in == parsed.table.num_rows + len(parsed.quarantine)
    assert parsed.table.column("timestamp").null_count == 0
    for q in parsed.quarantine.rows:
        assert q["file"] == parsed.path and q["line"] >= 1 and q["reason"]
    return parsed


def rows(parsed) -> list[dict]:
    """The parsed table's rows as dicts."""
    return parsed.table.to_pylist()


def write(tmp_path: Path, name: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``tmp_path/name``; its path."""
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def routed(parsed, recipients: list[Recipient], key: str) -> dict[str, list]:
    """Recipient name -> the ``key`` column of the rows it receives."""
    a = Router(recipients).route(parsed.table, parsed.report_type)
    vals = parsed.table.column(key).to_pylist()
    out = {r.name: [] for r in recipients}
    for e, r in zip(a.event.tolist(), a.recipient.tolist()):
        out[recipients[r].name].append(vals[e])
    return out

"""The public dashboard under attack: subtraction of published figures, day-to-day differencing,
hostile ``geo`` values in the store, and its security headers (docs/dashboard.md)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from herald.config import settings_from_dict
from herald.crypto import ServerKey
from herald.web import dashboard
from herald.web.app import create_app

D1, D2 = date(2026, 11, 29), date(2026, 11, 30)
HOSTILE = ["198.51.100.8", "<script>alert(1)</script>", "de", "ZZ", "D3", "XX", ""]


def _write(data: Path, day: date, rtype: str, part: str, rows: list[tuple[str, str | None]]):
    d = data / "events" / f"date={day.isoformat()}" / f"type={rtype}"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"ip": [r[0] for r in rows], "geo": [r[1] for r in rows]}),
                   d / f"{part}.parquet")


def _addrs(prefix: str, n: int, cc: str | None) -> list[tuple[str, str | None]]:
    return [(f"{prefix}.{i}", cc) for i in range(1, n + 1)]


def _store(root: Path, fr_day1: int, fr_day2: int | None = None) -> Path:
    """Day 1: DE 10 addresses and FR ``fr_day1`` (scan_http), NL 7 (scan_ssl_poodle); day 2
    (when given): FR ``fr_day2`` and DE 1."""
    data = root / "data"
    _write(data, D1, "scan_http", "a", _addrs("10.1.1", 10, "DE") + _addrs("10.1.2", fr_day1, "FR"))
    _write(data, D1, "scan_ssl_poodle", "a", _addrs("10.1.3", 7, "NL"))
    if fr_day2 is not None:
        _write(data, D2, "scan_http", "a", _addrs("10.2.1", fr_day2, "FR") + _addrs("10.2.2", 1, "DE"))
    return data


@pytest.fixture()
def store(tmp_path):
    return _store(tmp_path, 3)


def test_totals_minus_published_cells_reveal_no_small_cell(tmp_path, store):
    data = dashboard.compute(store, D1)
    days = {d["type"]: d["victims"] for d in data["days"]}
    countries = {c["country"]: c["victims"] for c in data["countries"]}
    assert countries == {"DE": 10, "NL": 7} and "FR" not in countries
    # the total and the rows are sums of published cells only: subtraction gives 0, never FR's 3
    assert data["totals"]["victims"] == 17 and days == {"scan_http": 10, "scan_ssl_poodle": 7}
    assert data["totals"]["victims"] - sum(countries.values()) == 0
    assert days["scan_http"] - countries["DE"] == 0
    assert data["totals"]["victims"] - sum(days.values()) == 0
    # Whatever FR's small count is (1..4), every published figure is the same: nothing to solve for.
    for n in (1, 2, 4):
        assert dashboard.compute(_store(tmp_path / f"fr{n}", n), D1) == data


def test_day_to_day_comparison_reveals_no_small_cell(tmp_path, store):
    before = dashboard.compute(store, D1)
    # Day 2 brings 2 more French addresses and 1 German: small cells of their own.
    _write(store, D2, "scan_http", "a", _addrs("10.2.1", 2, "FR") + _addrs("10.2.2", 1, "DE"))
    after = dashboard.compute(store, D2)
    assert after["totals"]["victims"] == before["totals"]["victims"]
    assert after["countries"] == before["countries"]
    assert {d["day"]: d["victims"] for d in after["days"] if d["type"] == "scan_http"} == {
        D1.isoformat(): 10, D2.isoformat(): "<5"}
    # the day-2 snapshot is the same whatever the small day-2 counts are
    for n in (1, 3, 4):
        assert dashboard.compute(_store(tmp_path / f"d2_{n}", 3, n), D2) == after
    # A day leaving the window removes whole published cells (>= 5), never a small one.
    later = dashboard.compute(store, D1 + timedelta(days=dashboard.DAYS))
    assert later["totals"]["victims"] == 0 and later["countries"] == []


def _app(tmp_path: Path, data: Path):
    settings = settings_from_dict({"paths": {"data": str(data), "reports": str(tmp_path / "r"),
                                             "outbox": str(tmp_path / "o")},
                                   "database": {"url": f"sqlite:///{tmp_path / 'h.db'}"}},
                                  base=tmp_path)
    from herald.store.db import open_db

    dashboard.clear_cache()
    return create_app(settings, open_db(settings.database_url, upgrade=True), ServerKey(b"s" * 32),
                      clock=lambda: datetime(2026, 11, 30, 12, tzinfo=timezone.utc))


def test_only_assigned_iso_country_codes_are_published(tmp_path):
    data = tmp_path / "data"
    rows = _addrs("10.3.1", 6, "AT")
    for i, geo in enumerate(HOSTILE):
        rows += _addrs(f"10.4.{i}", 6, geo)
    _write(data, D2, "scan_http", "a", rows)
    client = TestClient(_app(tmp_path, data))
    page, js = client.get("/stats"), client.get("/stats.json")
    assert page.status_code == js.status_code == 200
    # "de" is normalised to DE; every other hostile value is an unknown country, never shown
    assert {c["country"] for c in js.json()["countries"]} == {"AT", "DE"}
    body = page.text + json.dumps(js.json())
    for bad in ["198.51.100.8", "<script>", "alert(1)", "ZZ", "D3", "XX"]:
        assert bad not in body, bad
    # the page itself is still well-formed: no hostile value became markup
    assert "&lt;script" not in page.text


SECURITY = {"content-security-policy", "x-content-type-options", "x-frame-options",
            "referrer-policy", "cache-control"}


def test_dashboard_has_the_portal_security_headers(tmp_path, store):
    client = TestClient(_app(tmp_path, store))
    login = client.get("/login")
    for path in ["/stats", "/stats.json"]:
        r = client.get(path)
        assert SECURITY <= set(r.headers), path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == login.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == dashboard.CACHE_CONTROL
    assert login.headers["cache-control"] == "no-store"
    assert login.headers["content-security-policy"] == r.headers["content-security-policy"]
    assert SECURITY <= set(login.headers)

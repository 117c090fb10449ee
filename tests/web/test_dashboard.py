"""The public statistics dashboard: aggregates only, small counts suppressed, no addresses."""

from __future__ import annotations

import csv
import json
import re
import tomllib
from datetime import date, datetime, timezone

from fastapi.testclient import TestClient

from herald.config import settings_from_dict
from herald.pipeline import run_day
from herald.web import dashboard
from herald.web.app import create_app

DAY = "2026-11-30"


def test_dashboard_counts_and_shows_no_address(repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HERALD_SECRET_KEY", "00" * 32)
    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    raw["paths"] = {"inbox": str(repo_root / "examples/inbox"), "data": str(tmp_path / "data"),
                    "reports": str(tmp_path / "reports"), "outbox": str(tmp_path / "outbox")}
    settings = settings_from_dict(raw, base=tmp_path)
    run_day(settings, DAY)
    data = dashboard.compute(settings.paths.data, today=date(2026, 12, 1))
    # expected, read independently with csv: base cells = distinct addresses per (type, country);
    # every figure is the sum of the base cells of at least 5 it covers (docs/dashboard.md)
    cells = {}
    for path in (repo_root / "examples/inbox" / DAY).glob("*.csv"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        addr = "src_ip" if "src_ip" in rows[0] else "ip"
        geo = "src_geo" if addr == "src_ip" else "geo"
        for cc in {r[geo] for r in rows}:
            cells[path.stem, cc] = len({r[addr] for r in rows if r[geo] == cc and r[addr]})
    per_type, per_cc = {}, {}
    for (t, cc), n in cells.items():
        per_type.setdefault(t, [0, False])
        per_type[t][0] += n if n >= 5 else 0
        per_type[t][1] |= n < 5
        if n >= 5:
            per_cc[cc] = per_cc.get(cc, 0) + n
    shown = lambda n, small: "<5" if n == 0 and small else n
    assert {d["type"]: d["victims"] for d in data["days"]} == {t: shown(*v) for t, v in per_type.items()}
    assert {c["country"]: c["victims"] for c in data["countries"]} == per_cc
    assert data["totals"]["victims"] == sum(per_cc.values())
    assert all(c["victims"] >= 5 for c in data["countries"])
    # a day outside the window is not counted
    assert dashboard.compute(settings.paths.data, today=date(2027, 3, 1))["days"] == []

    dashboard.clear_cache()
    client = TestClient(create_app(settings, clock=lambda: datetime(2026, 12, 1, 9, tzinfo=timezone.utc)))
    page = client.get("/stats")
    assert page.status_code == 200 and "Public statistics" in page.text
    body = page.text + json.dumps(client.get("/stats.json").json())
    assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", body)  # no IPv4 address
    assert "2001:" not in body and "2603:" not in body and "CC BY 4.0" in page.text

"""The public statistics dashboard: aggregates only, small counts suppressed, no addresses."""

from __future__ import annotations

import csv
import json
import re
import tomllib
from datetime import date

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
    # expected: distinct addresses per type and per country, read independently with csv
    per_type, per_cc = {}, {}
    for path in (repo_root / "examples/inbox" / DAY).glob("*.csv"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        addr = "src_ip" if "src_ip" in rows[0] else "ip"
        geo = "src_geo" if addr == "src_ip" else "geo"
        per_type[path.stem] = len({r[addr] for r in rows if r[addr]})
        for cc in {r[geo] for r in rows}:
            per_cc[cc] = per_cc.get(cc, 0) + len({r[addr] for r in rows if r[geo] == cc and r[addr]})
    shown = lambda n: n if n >= 5 else "<5"
    assert {d["type"]: d["victims"] for d in data["days"]} == {t: shown(n) for t, n in per_type.items()}
    assert {c["country"]: c["victims"] for c in data["countries"]} == {c: shown(n) for c, n in per_cc.items()}
    assert all(not isinstance(c["victims"], int) or c["victims"] >= 5 for c in data["countries"])
    # a day outside the window is not counted
    assert dashboard.compute(settings.paths.data, today=date(2027, 3, 1))["days"] == []

    dashboard._cache.clear()
    client = TestClient(create_app(settings))
    page = client.get("/stats")
    assert page.status_code == 200 and "Public statistics" in page.text
    body = page.text + json.dumps(client.get("/stats.json").json())
    assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", body)  # no IPv4 address
    assert "2001:" not in body and "2603:" not in body and "CC BY 4.0" in page.text

"""The daily job on the URL and domain feeds of issue 16 (URLhaus, PhishTank, DShield suspicious
domains): each recipient's report holds exactly the rows its domain or CIDR filter selects."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from herald.config import settings_from_dict
from herald.pipeline import run_day

DAY = "2026-11-30"
FEEDS = Path(__file__).parent / "data" / "feeds"
INPUTS = ["urlhaus/urlhaus_csv_recent.csv", "phishtank/phishtank_online-valid.json",
          "dshield_domains/suspiciousdomains_High.txt"]


def test_url_and_domain_feeds_reach_exactly_the_matching_recipients(tmp_path):
    inbox = tmp_path / "inbox" / DAY
    inbox.mkdir(parents=True)
    for rel in INPUTS:
        shutil.copy(FEEDS / rel, inbox / Path(rel).name)
    raw = {
        "paths": {"inbox": str(tmp_path / "inbox"), "data": str(tmp_path / "data"),
                  "reports": str(tmp_path / "reports"), "outbox": str(tmp_path / "outbox")},
        "report": {"tlp": "AMBER", "sender": "reports@herald.example"},
        "enrich": {"overwrite": False},
        "recipients": [
            {"name": "Example Registry", "email": "abuse@registry.example", "kind": "network_owner",
             "domains": ["example.com"], "min_severity": "info"},
            {"name": "Doc Net", "email": "noc@doc.example", "kind": "network_owner",
             "cidrs": ["192.0.2.0/24", "204.152.192.0/19"], "min_severity": "info"},
        ],
    }
    settings = settings_from_dict(raw, base=tmp_path)
    summary = run_day(settings, DAY)
    assert summary.errors == [] and summary.reconciles
    assert (summary.rows_in, summary.rows_quarantined) == (6 + 3 + 5, 1)
    got = {}
    for rep in summary.reports:
        with open(rep["path"], newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        key = "url" if rep["type"] != "herald_suspicious_domain" else "hostname"
        got[(rep["recipient"], rep["type"])] = sorted(r[key] for r in rows)
    assert got == {
        ("Example Registry", "herald_malware_url"): ["https://files.shop.example.com/loader/update.exe"],
        ("Example Registry", "herald_suspicious_domain"): ["cdn.bad.example.com", "malware-drop.example.com"],
        ("Doc Net", "herald_malware_url"): ["http://192.0.2.207:35491/Mozi.m"],
        ("Doc Net", "herald_phishing_url"): ["https://ardentig.top/"],
    }

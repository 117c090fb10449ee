"""Issue 14: a national CERT's policy run (abuse contacts, an inhibition, a re-notification
window) routed by two worker processes writes exactly what one process writes.

Each type's job applies the policy to its own copy of the run's state and returns the automatic
recipients it met; the driver merges them in type order (herald.reports.policy.RoutingPolicy.merge).
Two days (the second within the window of the first), three report types: a mailbox first met in
a later type, one met in several types, and two mailboxes whose slugs collide across types (the
later one gets the hash suffix in a one-process run, so the worker's name is wrong and the driver
routes that type again).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import tomli_w
from test_abuse_routing import CERT, EVENTS, INHIBIT_NET, OVERRIDE_MAIL, OVERRIDE_NET, OWNER, RPSL

import herald.reports.write as write
from herald.cli import main
from herald.config import load_settings
from herald.constituency.inhibitions import add_inhibition
from herald.contacts.overrides import add_override
from herald.pipeline import run_day
from herald.store.db import open_db

DAYS = ["2026-11-02", "2026-11-03"]
#: Two mailboxes with one slug (``desk_x_example``): the first is met in scan_dns (routed first),
#: the second in scan_http and scan_ftp.
DESK_DNS, DESK_HTTP = "Desk@x.example", "desk@x.example"
NET_DNS, NET_HTTP = "198.51.100.64/28", "198.51.100.80/28"
HEADER = ["timestamp", "ip", "protocol", "port", "hostname", "tag", "asn", "geo"]

#: per type: (ip, port, asn, geo)
TYPES = {
    "scan_http": EVENTS + [("198.51.100.81", 80, None, "NL")],
    # 192.0.2.200: abuse@example.net, met here first; 198.51.100.65: the first desk mailbox
    "scan_dns": [("192.0.2.200", 53, None, "NL"), ("198.51.100.65", 53, None, "NL"),
                 ("192.0.2.70", 53, None, "NL")],  # inhibited for scan_http only: reported
    "scan_ftp": [("198.51.100.82", 21, None, "NL"), ("192.0.2.161", 21, None, "NL"),
                 ("192.0.2.1", 21, None, "NL")],
}


def make_root(root: Path, workers: int, extra: dict | None = None) -> Path:
    """A CERT's set-up under ``root``: RPSL data imported, overrides, an inhibition, inputs;
    ``extra``: more configuration sections (``[spark]``)."""
    root.mkdir()
    url = f"sqlite:///{root / 'herald.db'}"
    raw = {"paths": {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"},
           "database": {"url": url}, "run": {"workers": workers},
           "abuse_contacts": {"enabled": True, "countries": ["NL"], "renotify_days": 2},
           "recipients": [OWNER, CERT], **(extra or {})}
    cfg = root / "herald.toml"
    cfg.write_text(tomli_w.dumps(raw))
    assert main(["contacts", "import", "--config", str(cfg), *map(str, sorted(RPSL.glob("*.db*")))]) == 0
    db = open_db(url)
    add_override(db, reason="desk", actor="test", network=OVERRIDE_NET, mailbox=OVERRIDE_MAIL)
    add_override(db, reason="dns desk", actor="test", network=NET_DNS, mailbox=DESK_DNS)
    add_override(db, reason="http desk", actor="test", network=NET_HTTP, mailbox=DESK_HTTP)
    add_inhibition(db, reason="honeypot", actor="test", network=INHIBIT_NET, report_type="scan_http")
    db.dispose()
    for day in DAYS:
        (root / "inbox" / day).mkdir(parents=True)
        for type_name, events in TYPES.items():
            with (root / "inbox" / day / f"{type_name}.csv").open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(HEADER)
                for ip, port, asn, geo in events:
                    w.writerow([f"{day} 00:01:00", ip, "tcp", port, "", "x", asn or "", geo])
    return cfg


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under reports/, outbox/ and the re-notification records."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes().replace(str(root).encode(), b"ROOT")).hexdigest()
            for sub in ("reports", "outbox", "data/notified") for p in sorted((root / sub).rglob("*"))
            if p.is_file()}


def summary_view(summary, root: Path) -> dict:
    """The summary without timings and run ids, paths relative to ``root``."""
    d = json.loads(json.dumps(summary.to_dict()).replace(str(root), "ROOT"))
    for k in ("stages_seconds", "run_id"):
        d.pop(k, None)
    for r in d["reports"]:
        r.pop("report_id", None)
    return d


def database_view(url: str, root: Path) -> dict:
    """Automatic recipients (by id) with their contacts, and the ledger's runs and reports."""
    eng = sa.create_engine(url)
    with eng.connect() as c:
        q = lambda sql: [tuple(r) for r in c.execute(sa.text(sql))]  # noqa: E731
        out = {
            "recipients": q("SELECT r.id, r.name, r.slug, r.kind, r.disabled, c.email, c.is_primary "
                            "FROM recipients r LEFT JOIN contacts c ON c.recipient_id = r.id ORDER BY r.id, c.id"),
            "runs": [(d, s, json.loads(n) if isinstance(n, str) else n) for d, s, n in
                     q("SELECT day, status, counts FROM runs ORDER BY id")],
            "reports": [tuple(str(v).replace(str(root), "ROOT") for v in row) for row in
                        q("SELECT r.day, n.name, r.report_type, r.scope, r.rows, r.sha256, r.path "
                          "FROM reports r JOIN recipients n ON n.id = r.recipient_id ORDER BY r.id")],
        }
    eng.dispose()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both days with ``[run] workers`` 1 and 2; driver-side route_and_write calls counted."""
    out = {}
    for workers in (1, 2):
        root = tmp_path_factory.mktemp(f"w{workers}") / "run"
        cfg = make_root(root, workers)
        settings = load_settings(cfg)
        calls: list[str] = []
        real = write.route_and_write

        def counting(*a, **k):  # only the driver's calls: the stage pool has its own binding
            calls.append(a[3].name)
            return real(*a, **k)

        write.route_and_write = counting
        try:
            summaries = [run_day(settings, day) for day in DAYS]
        finally:
            write.route_and_write = real
        out[workers] = {"root": root, "summaries": summaries, "calls": calls,
                        "files": file_hashes(root),
                        "summary": [summary_view(s, root) for s in summaries],
                        "db": database_view(settings.database_url, root)}
    return out


def test_policy_run_on_two_workers_is_byte_identical_to_one(runs):
    one, two = runs[1], runs[2]
    for s in one["summaries"] + two["summaries"]:
        assert s.ok and s.reconciles, s.to_dict()
    assert one["files"] == two["files"]
    assert one["summary"] == two["summary"]
    assert one["db"] == two["db"]
    # The policy did something on both days: inhibited pairs, suppressed pairs, mailboxes.
    d1, d2 = one["summary"]
    assert d1["rows_inhibited"] == 4 and d2["rows_inhibited"] == 4
    assert d1["rows_renotify_suppressed"] == 0 and d2["rows_renotify_suppressed"] > 0
    assert sum(1 for k in one["files"] if k.startswith("outbox/") and k.endswith(".eml")) > 10


def test_routing_ran_in_the_workers_except_the_conflicting_type(runs):
    # One process: every type, every day, in the driver.  Two workers: only scan_ftp and
    # scan_http on day 1, whose workers named desk@x.example without the hash suffix (its slug
    # belongs to scan_dns's Desk@x.example in type order), are routed again by the driver; not on
    # day 2 (the stored names are known then, so the workers suffix it as well).
    assert runs[1]["calls"] == sorted(TYPES) * 2
    assert runs[2]["calls"] == ["scan_ftp", "scan_http"]


def test_automatic_recipients_in_type_order_with_their_reasons(runs):
    rows = [r for r in runs[2]["db"]["recipients"] if r[3] == "abuse_contact"]
    names = [r[1] for r in rows]
    # scan_dns (first type) discovers abuse@example.net and Desk@x.example; desk@x.example comes
    # later and gets the hash suffix since its slug is taken.
    assert names[:2] == ["Desk@x.example", "abuse@example.net"]
    suffixed = f"desk@x.example {hashlib.sha256(b'desk@x.example').hexdigest()[:8]}"
    assert suffixed in names and DESK_HTTP not in names
    assert len(names) == len(set(names))
    s = runs[2]["summaries"][0]
    ftp = next(r for r in s.reports if r["type"] == "scan_ftp" and r["recipient"] == suffixed)
    http = next(r for r in s.reports if r["type"] == "scan_http" and r["recipient"] == suffixed)
    assert Path(ftp["path"]).parent.name == Path(http["path"]).parent.name != "desk_x_example"
    # No file of the worker's wrong name is left behind.
    assert not any(k.endswith("-desk_x_example-abuse_c.csv") and "scan_dns" not in k
                   for k in runs[2]["files"])

"""A takedown end to end: queries and requests to the sinkholes become next-day report rows for
the right recipients (the operation's law-enforcement partner and the network owner), and for
no one else."""

from __future__ import annotations

import csv
import http.client
from datetime import datetime, timezone

import dns.message
import dns.query
import dns.rcode

from herald.config import settings_from_dict
from herald.pipeline import run_day
from herald.sensors.batch import EventBatcher
from herald.sensors.config import load_sinkhole_config
from herald.sensors.runtime import BackgroundSensor
from herald.sensors.sinkhole_dns import DnsSinkhole
from herald.sensors.sinkhole_http import HttpSinkhole

LO = "127.0.0.1"


def test_sinkholed_victims_reach_the_right_recipients(tmp_path):
    raw = {
        "paths": {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"},
        "sinkhole": {"sensor_name": "e2e", "dns_listen": f"{LO}:0", "http_listen": [f"{LO}:0"],
                     "answer_ipv4": ["192.0.2.10"], "rate_per_client": 10000, "batch_rows": 7,
                     "domains": [{"name": "c2.virut.example", "family": "virut", "tag": "virut-takedown"}]},
        "recipients": [
            {"name": "Loopback ISP", "email": "abuse@loopback.example", "cidrs": ["127.0.0.0/8"]},
            {"name": "Other ISP", "email": "abuse@other.example", "cidrs": ["192.0.2.0/24"]},
            {"name": "Virut Task Force", "email": "tf@police.example", "kind": "law_enforcement"},
            {"name": "Mirai Task Force", "email": "mirai@police.example", "kind": "law_enforcement"},
        ],
        "operations": [
            {"name": "virut-takedown", "families": ["virut"], "start": "2020-01-01",
             "partners": [{"recipient": "Virut Task Force", "countries": ["NL"]}]},
            {"name": "mirai-takedown", "families": ["mirai"], "start": "2020-01-01",
             "partners": [{"recipient": "Mirai Task Force", "countries": ["NL"]}]},
        ],
    }
    settings = settings_from_dict(raw, base=tmp_path)
    cfg = load_sinkhole_config(settings)
    batcher = EventBatcher(cfg.inbox, "e2e", cfg.batch_rows, cfg.batch_seconds)
    bg = BackgroundSensor([DnsSinkhole(cfg, batcher), HttpSinkhole(cfg, batcher)], batcher).start()
    try:
        port = bg.port("dns-udp")
        for i in range(10):
            r = dns.query.udp(dns.message.make_query(f"h{i}.c2.virut.example", "A"), LO, port=port, timeout=2)
            assert r.rcode() == dns.rcode.NOERROR
        r = dns.query.udp(dns.message.make_query("unrelated.example", "A"), LO, port=port, timeout=2)
        assert r.rcode() == dns.rcode.REFUSED
        hport = bg.port("http")
        for i in range(5):
            conn = http.client.HTTPConnection(LO, hport, timeout=5)
            conn.request("GET", f"/gate.php?id={i}", headers={"Host": "c2.virut.example", "User-Agent": "bot"})
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        bg.stop()  # flushes every batch (as on SIGTERM)

    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    # The sensors record the client's country as unknown; give loopback a country for the
    # partners' jurisdiction through a user data set, as an operator would for a private range.
    rir = tmp_path / "delegated-test.txt"
    rir.write_text("2|ripencc|20260101|1|19700101|20260101|+0000\nripencc|NL|ipv4|127.0.0.0|16777216|20000101|assigned\n")
    raw["enrich"] = {"ipdata": [{"format": "rir-delegated", "path": str(rir)}]}
    settings = settings_from_dict(raw, base=tmp_path)
    summary = run_day(settings, day)
    assert summary.ok, summary.errors
    assert summary.rows_in == 15 and summary.rows_quarantined == 0
    by = {(r["recipient"], r["type"]): r for r in summary.reports}
    assert set(by) == {("Loopback ISP", "event4_sinkhole_dns"), ("Loopback ISP", "event4_sinkhole_http"),
                       ("Virut Task Force", "event4_sinkhole_dns"), ("Virut Task Force", "event4_sinkhole_http")}
    for (name, rtype), rep in by.items():
        with open(rep["path"], newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == (10 if rtype == "event4_sinkhole_dns" else 5)
        assert all(row["src_ip"] == LO for row in rows)
        if rtype == "event4_sinkhole_http":
            assert sorted(row["http_url"] for row in rows) == [f"/gate.php?id={i}" for i in range(5)]
    # the request method, which has no Shadowserver column, is kept in the event store
    import pyarrow.parquet as pq
    stored = pq.read_table(next((tmp_path / "data/events").rglob("type=event4_sinkhole_http/*.parquet")))
    assert set(stored.column("http_method").to_pylist()) == {"GET"}

"""Law-enforcement operations: partners, the day's scoped recipients, victim statistics."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from herald.constituency import operations as ops
from herald.constituency import repository as repo
from herald.errors import ConfigError
from herald.eventstore import EventStore, S3Options
from herald.store import audit
from herald.store.db import NotFound

PEOPLE = [
    {"name": "BKA", "email": "cyber@bka.example", "kind": "law_enforcement", "tlp": "RED",
     "report_types": ["event4_sinkhole"], "countries": ["ZZ"]},
    {"name": "Politie", "email": "hi@politie.example", "kind": "law_enforcement"},
    {"name": "Example ISP", "email": "abuse@example.net", "asns": [64496]},
]


@pytest.fixture
def op_db(db):
    repo.import_recipients(db, PEOPLE)
    ops.add_operation(db, "Endgame", "2026-05-01", actor="cli:alice", end_date="2026-12-31",
                      families=["Emotet", "qakbot"], tags=["Endgame"],
                      sinkholed_domains=["C2.Example.", "bad.example"], description="takedown")
    ops.add_partner(db, "Endgame", "BKA", ["de", "AT"], actor="cli:alice")
    ops.add_partner(db, "Endgame", "Politie", ["NL"], actor="cli:alice")
    return db


def test_add_and_show_operation(op_db):
    info = ops.get_operation(op_db, "Endgame")
    assert (info.families, info.tags, info.sinkholed_domains) == (
        ("emotet", "qakbot"), ("endgame",), ("bad.example", "c2.example"))
    assert [(p.recipient, p.countries) for p in info.partners] == [
        ("BKA", ("AT", "DE")), ("Politie", ("NL",))]
    assert ops.get_operation(op_db, info.id).name == "Endgame"
    assert [o.name for o in ops.list_operations(op_db)] == ["Endgame"]
    assert ops.list_operations(op_db, active_on=date(2027, 1, 1)) == []
    assert [e.action for e in audit.query(op_db, object_type="operation")] == [
        "operation.add", "operation.partner", "operation.partner"]
    # Changing a jurisdiction updates the partner and is audited; repeating it is a no-op.
    ops.add_partner(op_db, "Endgame", "Politie", ["NL", "BE"], actor="cli:bob")
    ops.add_partner(op_db, "Endgame", "Politie", ["BE", "NL"], actor="cli:bob")
    last = audit.query(op_db, object_type="operation")[-1]
    assert (last.actor, last.details["countries"], last.details["previous_countries"]) == (
        "cli:bob", ["BE", "NL"], ["NL"])
    assert len(audit.query(op_db, object_type="operation")) == 4


def test_operation_errors(op_db):
    with pytest.raises(ConfigError, match="already exists"):
        ops.add_operation(op_db, "Endgame", "2026-01-01", actor="t")
    with pytest.raises(ConfigError, match="before its start"):
        ops.add_operation(op_db, "Later", "2026-02-01", actor="t", end_date="2026-01-01")
    with pytest.raises(ConfigError, match="not a date"):
        ops.add_operation(op_db, "Later", "soon", actor="t")
    with pytest.raises(ConfigError, match="not law_enforcement"):
        ops.add_partner(op_db, "Endgame", "Example ISP", ["DE"], actor="t")
    with pytest.raises(ConfigError, match="jurisdiction"):
        ops.add_partner(op_db, "Endgame", "BKA", [], actor="t")
    with pytest.raises(ConfigError, match="alpha-2"):
        ops.add_partner(op_db, "Endgame", "BKA", ["DEU"], actor="t")
    with pytest.raises(NotFound):
        ops.add_partner(op_db, "Nope", "BKA", ["DE"], actor="t")
    with pytest.raises(NotFound):
        ops.get_operation(op_db, "Nope")


def test_operation_recipients_are_scoped_partners_of_active_operations(op_db):
    assert ops.operation_recipients(op_db, date(2026, 4, 30)) == []
    assert ops.operation_recipients(op_db, date(2027, 1, 1)) == []
    shares = ops.operation_recipients(op_db, "2026-12-31")
    assert [(r.name, r.operation, r.countries) for r in shares] == [
        ("BKA", "Endgame", ["AT", "DE"]), ("Politie", "Endgame", ["NL"])]
    bka = shares[0]
    assert (bka.kind, bka.families, bka.tags, bka.tlp, bka.email) == (
        "law_enforcement", ["emotet", "qakbot"], ["endgame"], "RED", "cyber@bka.example")
    # Its verified report-type filter applies; its own country filter does not widen the share.
    assert bka.report_types == ["event4_sinkhole"]
    assert bka.asns == [] and bka.cidrs == []
    assert bka.id == repo.get_recipient(op_db, "BKA").id
    # A partner with no end date operation, and a disabled partner.
    ops.add_operation(op_db, "Open", "2026-12-01", actor="t", families=["mirai"])
    ops.add_partner(op_db, "Open", "Politie", ["NL"], actor="t")
    repo.disable_recipient(op_db, "BKA", actor="t", reason="contact left")
    shares = ops.operation_recipients(op_db, date(2030, 1, 1))
    assert [(r.name, r.operation) for r in shares] == [("Politie", "Open")]


def _write(path, table):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _endgame_events() -> list[tuple[str, pa.Table]]:
    """(path under the event store, table) of two days of events for the Endgame statistics."""
    day = "date=2026-11-29"
    return [
        (f"{day}/type=botnet_drone/a.parquet", pa.table({
            "src_ip": ["192.0.2.1", "192.0.2.1", "192.0.2.2", "198.51.100.9", "203.0.113.5"],
            "src_asn": [64496, 64496, 64496, 64500, 64501],
            "src_geo": ["DE", "DE", "DE", "NL", "FR"],
            "infection": ["emotet", "Emotet", "qakbot", "emotet", "mirai"],
            "tag": ["", "", "", "", "endgame;other"],
        })),
        (f"{day}/type=sinkhole_http_drone/b.parquet", pa.table({
            "ip": ["203.0.113.77", "203.0.113.78"], "asn": [64501, 64501], "geo": ["FR", "FR"],
            "family": ["QAKBOT", "unrelated"],
        })),
        # Another day must not be counted.
        ("date=2026-11-28/type=botnet_drone/c.parquet",
         pa.table({"src_ip": ["192.0.2.99"], "src_asn": [1], "src_geo": ["DE"],
                   "infection": ["emotet"], "tag": [""]})),
    ]


def _check_endgame(stats, empty) -> None:
    assert stats.files == 2
    assert stats.total == 5  # 192.0.2.1 (twice), .2, 198.51.100.9, 203.0.113.5 (tag), .77
    assert stats.by_country == [("DE", 2), ("FR", 2), ("NL", 1)]
    assert stats.by_asn == [(64496, 2), (64501, 2), (64500, 1)]
    assert "192.0.2" not in repr(stats)
    assert (empty.total, empty.files) == (0, 0)


def test_operation_stats_counts_victims_without_addresses(op_db, tmp_path):
    data = tmp_path / "data"
    for rel, table in _endgame_events():
        _write(data / "events" / rel, table)
    _check_endgame(ops.operation_stats(op_db, data, "Endgame", "2026-11-29"),
                   ops.operation_stats(op_db, data, "Endgame", "2026-01-01"))


def test_operation_stats_of_an_s3_event_store(op_db, tmp_path, s3):
    fs = s3.filesystem()
    for rel, table in _endgame_events():
        pq.write_table(table, f"{s3.bucket}/events/{rel}", filesystem=fs)
    store = EventStore(f"s3://{s3.bucket}/events",
                       S3Options(endpoint_override=s3.endpoint, scheme="http", region="us-east-1"))
    # nothing local: the figures come from the bucket
    _check_endgame(ops.operation_stats(op_db, tmp_path / "data", "Endgame", "2026-11-29", store),
                   ops.operation_stats(op_db, tmp_path / "data", "Endgame", "2026-01-01", store))

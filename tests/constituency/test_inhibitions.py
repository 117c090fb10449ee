"""Inhibitions: stored and audited rules, and the vectorized mask the run will call."""

from __future__ import annotations

import ipaddress
import json
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.cli import main
from herald.constituency.inhibitions import (
    Inhibition, InhibitionError, add_inhibition, inhibited_mask, list_inhibitions, remove_inhibition,
)
from herald.store.db import AuditRow, RecipientRow, open_db

UTC = timezone.utc
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def inh(i=1, network=None, asn=None, report_type=None, tag=None, recipient=None, expires_at=None):
    return Inhibition(i, network, asn, report_type, tag, recipient, "why", "cli:t", T0, expires_at)


EVENTS = pa.table({
    "ip": ["192.0.2.1", "192.0.2.200", "198.51.100.7", "2001:db8::1", "2001:db9::1", None],
    "asn": pa.array([64496, 64497, 64496, 64500, None, 64496], pa.int64()),
    "tag": ["ssh-brute;Mirai", "mirai", "", "scan", None, "x,ssh-brute"],
})


def test_mask_criteria_combine_with_and_and_inhibitions_with_or():
    day = "2026-12-01"
    assert inhibited_mask(EVENTS, [inh(network="192.0.2.0/25")], day).tolist() == [1, 0, 0, 0, 0, 0]
    assert inhibited_mask(EVENTS, [inh(network="2001:db8::/32")], day).tolist() == [0, 0, 0, 1, 0, 0]
    assert inhibited_mask(EVENTS, [inh(asn=64496)], day).tolist() == [1, 0, 1, 0, 0, 1]
    assert inhibited_mask(EVENTS, [inh(tag="mirai")], day).tolist() == [1, 1, 0, 0, 0, 0]
    assert inhibited_mask(EVENTS, [inh(tag="ssh-brute", asn=64496)], day).tolist() == [1, 0, 0, 0, 0, 1]
    both = [inh(network="192.0.2.0/24", asn=64497), inh(2, network="2001:db8::/32")]
    assert inhibited_mask(EVENTS, both, day).tolist() == [0, 1, 0, 1, 0, 0]


def test_mask_type_recipient_and_expiry():
    day = date(2026, 12, 1)
    typed = [inh(asn=64496, report_type="scan_http")]
    assert not inhibited_mask(EVENTS, typed, day, report_type="scan_rdp").any()
    assert inhibited_mask(EVENTS, typed, day, report_type="scan_http").sum() == 3
    mine = [inh(asn=64496, recipient="CERT.at")]
    assert not inhibited_mask(EVENTS, mine, day).any()            # everyone: only general ones
    assert not inhibited_mask(EVENTS, mine, day, recipient="Other").any()
    assert inhibited_mask(EVENTS, mine, day, recipient="CERT.at").sum() == 3
    ends = [inh(asn=64496, expires_at=datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))]
    assert inhibited_mask(EVENTS, ends, day).sum() == 3            # in force during that day
    assert not inhibited_mask(EVENTS, ends, date(2026, 12, 2)).any()
    assert not inhibited_mask(EVENTS.drop(["asn"]), [inh(asn=64496)], day).any()


@settings(max_examples=50, deadline=None)
@given(nets=st.lists(st.tuples(st.integers(0, 255), st.integers(24, 32)), min_size=1, max_size=5),
       ips=st.lists(st.integers(0, 255), min_size=1, max_size=30))
def test_mask_matches_ipaddress_reference(nets, ips):
    base = int(ipaddress.IPv4Address("192.0.2.0"))
    prefixes = [str(ipaddress.ip_network((base + a, plen), strict=False)) for a, plen in nets]
    addrs = [str(ipaddress.IPv4Address(base + k)) for k in ips]
    got = inhibited_mask(pa.table({"ip": addrs}), [inh(i, network=p) for i, p in enumerate(prefixes)], "2026-12-01")
    want = [any(ipaddress.ip_address(a) in ipaddress.ip_network(p) for p in prefixes) for a in addrs]
    assert got.tolist() == want
    assert got.dtype == np.bool_


def test_store_add_list_remove_audited(db):
    with db.session() as s:
        s.add(RecipientRow(name="CERT.at", slug="cert_at", kind="national_cert"))
    a = add_inhibition(db, reason="customer's honeypot", actor="cli:alice", network="192.0.2.7/24",
                       recipient="CERT.at", expires_at=datetime(2026, 12, 31, tzinfo=UTC))
    b = add_inhibition(db, reason="known scanner", actor="cli:alice", asn=64496, tag="research")
    assert a.network == "192.0.2.0/24" and a.recipient == "CERT.at"
    assert [i.id for i in list_inhibitions(db)] == [a.id, b.id]
    assert [i.id for i in list_inhibitions(db, "2027-01-01")] == [b.id]
    with pytest.raises(InhibitionError, match="needs a network"):
        add_inhibition(db, reason="x", actor="t")
    with pytest.raises(InhibitionError, match="not a CIDR"):
        add_inhibition(db, reason="x", actor="t", network="192.0.2.0/33")
    with pytest.raises(InhibitionError, match="no recipient"):
        add_inhibition(db, reason="x", actor="t", asn=1, recipient="Nobody")
    with pytest.raises(InhibitionError, match="timezone-aware"):
        add_inhibition(db, reason="x", actor="t", asn=1, expires_at=datetime(2027, 1, 1))
    removed = remove_inhibition(db, a.id, "cli:bob", "customer moved")
    assert removed.network == "192.0.2.0/24"
    assert [i.id for i in list_inhibitions(db)] == [b.id]
    with pytest.raises(InhibitionError):
        remove_inhibition(db, a.id, "cli:bob")
    with db.session() as s:
        acts = s.execute(sa.select(AuditRow.action, AuditRow.actor, AuditRow.object_id)
                         .where(AuditRow.object_type == "inhibition").order_by(AuditRow.id)).all()
    assert acts == [("inhibition.add", "cli:alice", str(a.id)), ("inhibition.add", "cli:alice", str(b.id)),
                    ("inhibition.remove", "cli:bob", str(a.id))]


def test_cli(db_url, tmp_path, capsys):
    cfg = tmp_path / "herald.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n')
    open_db(db_url, upgrade=True).dispose()
    assert main(["inhibitions", "add", "--config", str(cfg), "--network", "198.51.100.0/24", "--tag", "scan",
                 "--expires", "2099-01-01", "--reason", "lab network", "--actor", "cli:t"]) == 0
    assert "network 198.51.100.0/24, tag scan  for everyone  expires 2099-01-01T00:00:00Z" in capsys.readouterr().out
    assert main(["inhibitions", "add", "--config", str(cfg), "--reason", "x"]) == 1
    capsys.readouterr()
    assert main(["inhibitions", "list", "--config", str(cfg), "--all", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["network"] == "198.51.100.0/24" and row["created_by"] == "cli:t"
    assert main(["inhibitions", "remove", "--config", str(cfg), str(row["id"]), "--reason", "done"]) == 0
    assert main(["inhibitions", "remove", "--config", str(cfg), str(row["id"])]) == 1

"""Contact overrides: the operator's corrections and suppressions of RPSL abuse contacts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from herald.cli import main
from herald.contacts.lookup import lookup_contacts
from herald.contacts.overrides import (
    OverrideError, add_override, apply_overrides, list_overrides, remove_override,
)
from herald.ipaddr import parse_ips
from herald.store.db import AuditRow, open_db
from tests.contacts.test_contacts import config, data_dir, dumps  # noqa: F401

IPS = ["192.0.2.1", "192.0.2.130", "192.0.2.161", "198.51.100.1", "2001:db8::1", "bad"]


def test_store_and_audit(db):
    a = add_override(db, reason="desk moved", actor="cli:alice", network="192.0.2.9/24",
                     mailbox="Abuse@Example.NET")
    b = add_override(db, reason="reports unwanted", actor="cli:alice", asn=64500)
    assert (a.network, a.mailbox) == ("192.0.2.0/24", "Abuse@example.net")
    assert b.mailbox is None and b.label == f"override #{b.id} (AS64500)"
    assert [o.id for o in list_overrides(db)] == [a.id, b.id]
    for kwargs, msg in [({}, "network or an ASN"), ({"network": "x"}, "not a CIDR"),
                        ({"asn": 1, "network": "192.0.2.0/24"}, "network or an ASN"),
                        ({"asn": 1, "mailbox": "nobody"}, "not an e-mail")]:
        with pytest.raises(OverrideError, match=msg):
            add_override(db, reason="r", actor="t", **kwargs)
    remove_override(db, a.id, "cli:bob", "back")
    with pytest.raises(OverrideError):
        remove_override(db, a.id, "cli:bob")
    with db.session() as s:
        acts = s.scalars(sa.select(AuditRow.action).where(AuditRow.object_type == "contact_override")
                         .order_by(AuditRow.id)).all()
    assert acts == ["contact_override.add", "contact_override.add", "contact_override.remove"]


def test_apply_precedence(db, data_dir):
    from herald.contacts.store import load_contacts

    data = load_contacts(data_dir)
    parsed = parse_ips(pa.array(IPS))
    asn = np.array([-1, -1, 64496, 64500, 64496, 64496])
    base = lookup_contacts(data, parsed, asn)
    wide = add_override(db, reason="r", actor="t", network="192.0.2.0/24", mailbox="wide@example.net")
    narrow = add_override(db, reason="r", actor="t", network="192.0.2.160/29")   # suppress
    by_as = add_override(db, reason="r", actor="t", asn=64496, mailbox="as@example.net")
    out = apply_overrides(base, parsed, list_overrides(db), asn).to_pylist()
    assert (out[0]["mailbox"], out[0]["source"], out[0]["via"]) == (
        "wide@example.net", f"override #{wide.id} (network 192.0.2.0/24)", "override")
    assert out[1]["mailbox"] == "wide@example.net"
    # The most specific network override wins over the ASN one, and suppresses.
    assert (out[2]["mailbox"], out[2]["via"], out[2]["source"]) == (
        None, "suppressed", f"override #{narrow.id} (network 192.0.2.160/29)")
    assert out[3] == base.to_pylist()[3]                       # no override for AS64500
    assert (out[4]["mailbox"], out[4]["role"]) == ("as@example.net", None)
    assert out[4]["network"] == base.to_pylist()[4]["network"]  # network columns untouched
    assert out[5]["mailbox"] is None                            # not an address: no ASN override
    assert by_as.id > narrow.id
    # A newer override of the same prefix wins.
    newer = add_override(db, reason="r", actor="t", network="192.0.2.0/24", mailbox="new@example.net")
    assert apply_overrides(base, parsed, list_overrides(db), asn).column("source")[0].as_py() == newer.label
    assert apply_overrides(base, parsed, [], asn) is base


def test_cli_override_and_lookup(config, dumps, capsys):  # noqa: F811
    assert main(["contacts", "import", "--config", str(config), *map(str, dumps)]) == 0
    assert main(["contacts", "override", "add", "--config", str(config), "--network", "192.0.2.128/26",
                 "--mailbox", "fixed@example.net", "--reason", "confirmed by phone", "--actor", "cli:t"]) == 0
    assert main(["contacts", "override", "add", "--config", str(config), "--asn", "64500",
                 "--suppress", "--reason", "asked us not to"]) == 0
    capsys.readouterr()
    assert main(["contacts", "lookup", "--config", str(config), "--json", "192.0.2.130"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["mailbox"] == "fixed@example.net" and row["via"] == "override"
    assert main(["contacts", "lookup", "--config", str(config), "--json", "--no-overrides", "192.0.2.130"]) == 0
    assert json.loads(capsys.readouterr().out)["mailbox"] == "abuse@example.net"
    assert main(["contacts", "lookup", "--config", str(config), "--asn", "64500", "--json", "198.51.100.1"]) == 0
    assert json.loads(capsys.readouterr().out)["via"] == "suppressed"
    assert main(["contacts", "override", "list", "--config", str(config), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["mailbox"] for r in rows] == ["fixed@example.net", None]
    assert main(["contacts", "override", "remove", "--config", str(config), str(rows[0]["id"])]) == 0
    assert main(["contacts", "override", "remove", "--config", str(config), str(rows[0]["id"])]) == 1
    assert main(["contacts", "override", "add", "--config", str(config), "--suppress", "--reason", "x"]) == 1
    db = open_db(f"sqlite:///{config.parent / 'var' / 'data' / 'herald.db'}")
    assert len(list_overrides(db)) == 1
    db.dispose()


def test_an_override_may_name_a_mailbox_list(db):
    """The override's mailbox replaces the RPSL answer as a whole and may itself list several
    addresses: each is checked, domains lower-cased, duplicates dropped, stored as ``a, b``."""
    from herald.contacts.values import split_mailbox

    o = add_override(db, reason="two desks", actor="t", asn=64501,
                     mailbox=' Desk@Example.NET,"abuse desk"@Other.example, desk@example.net ')
    assert o.mailbox == 'Desk@example.net, "abuse desk"@other.example'
    assert split_mailbox(o.mailbox) == ["Desk@example.net", '"abuse desk"@other.example']
    for bad in ("a@x.example, nobody", "a@x.example, b@", ", ".join(f"a{i}@x.example" for i in range(700))):
        with pytest.raises(OverrideError):
            add_override(db, reason="r", actor="t", asn=1, mailbox=bad)

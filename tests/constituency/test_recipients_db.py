"""Recipients and filters in the database: import, verification, routing view, conflicts."""

from __future__ import annotations

import ipaddress
from datetime import date

import pytest

from herald.constituency import repository as repo
from herald.constituency.recipients import recipients_from_specs
from herald.errors import ConfigError
from herald.store import audit
from herald.store.db import NotFound

SPECS = [
    {"name": "Example ISP", "email": "abuse@example.net", "asns": ["AS64496"],
     "cidrs": ["192.0.2.0/24", "2001:db8::/32"], "min_severity": "medium", "tlp": "green"},
    {"name": "CERT-Example (national)", "email": "cert@example.org", "kind": "national_cert",
     "countries": ["xx"], "report_types": ["scan_ssh"], "domains": ["Example.ORG."]},
]


def _by_name(recipients):
    return {r.name: r for r in recipients}


def test_import_stores_config_filters_as_verified_and_loads_them(db):
    result = repo.import_recipients(db, SPECS, actor="config")
    assert result.added == ["Example ISP", "CERT-Example (national)"]
    loaded = _by_name(repo.load_recipients(db))
    expected = _by_name(recipients_from_specs(SPECS))
    for name, want in expected.items():
        got = loaded[name]
        assert got.id is not None
        assert (got.email, got.kind, sorted(got.asns), sorted(map(str, got.cidrs)),
                got.countries, got.report_types, got.min_severity) == (
            want.email, want.kind, sorted(want.asns), sorted(map(str, want.cidrs)),
            want.countries, want.report_types, want.min_severity)
    assert loaded["Example ISP"].tlp == "GREEN"
    assert all(isinstance(c, (ipaddress.IPv4Network, ipaddress.IPv6Network))
               for c in loaded["Example ISP"].cidrs)
    info = repo.get_recipient(db, "cert_example_national")
    assert {(f.kind, f.value, f.state, f.decided_by) for f in info.filters} == {
        ("country", "XX", "verified", "config"), ("report_type", "scan_ssh", "verified", "config"),
        ("domain", "example.org", "verified", "config")}


def test_reimport_is_idempotent(db):
    repo.import_recipients(db, SPECS)
    before_audit = len(audit.query(db))
    before = repo.list_recipients(db)
    again = repo.import_recipients(db, SPECS)
    assert not again.changed
    assert again.unchanged == ["Example ISP", "CERT-Example (national)"]
    assert repo.list_recipients(db) == before
    assert len(audit.query(db)) == before_audit


def test_reimport_applies_changes_and_rejects_dropped_config_filters(db):
    repo.import_recipients(db, SPECS)
    portal = repo.add_filter(db, "Example ISP", "asn", 64511, actor="portal:noc@example.net")
    repo.verify_filter(db, portal.id, actor="cli:admin", reason="RIPE object checked")
    changed = [dict(SPECS[0], email="noc@example.net", cidrs=["192.0.2.0/24"],
                    min_severity="high"), SPECS[1]]
    result = repo.import_recipients(db, changed)
    assert result.updated == ["Example ISP"] and result.unchanged == ["CERT-Example (national)"]
    r = _by_name(repo.load_recipients(db))["Example ISP"]
    assert r.email == "noc@example.net"
    assert [str(c) for c in r.cidrs] == ["192.0.2.0/24"]
    assert r.min_severity == "high"
    assert sorted(r.asns) == [64496, 64511]  # the admin-verified filter is not the config's
    states = {(f.kind, f.value): (f.state, f.reason) for f in repo.get_recipient(db, r.id).filters}
    assert states[("cidr", "2001:db8::/32")] == ("rejected", "no longer in the configuration")
    assert states[("min_severity", "medium")][0] == "rejected"
    updates = audit.query(db, action="recipient.update")
    assert updates[-1].details["email"] == ["abuse@example.net", "noc@example.net"]


def test_invalid_spec_imports_nothing(db):
    with pytest.raises(ConfigError, match="cidrs"):
        repo.import_recipients(db, [SPECS[0], {"name": "Bad", "email": "a@b.example",
                                                "cidrs": ["300.1.2.0/24"]}])
    assert repo.list_recipients(db) == []
    with pytest.raises(ConfigError, match="report type"):
        repo.import_recipients(db, [dict(SPECS[1], report_types=["no_such_type"])])
    assert repo.list_recipients(db) == []


def test_only_verified_filters_of_enabled_recipients_route(db):
    repo.add_recipient(db, "Small ISP", "abuse@small.example", actor="cli:admin")
    f1 = repo.add_filter(db, "Small ISP", "cidr", "198.51.100.7/24", actor="portal:x")
    assert f1.value == "198.51.100.0/24" and f1.state == "pending"
    f2 = repo.add_filter(db, "Small ISP", "asn", "AS64500", actor="portal:x")
    r = _by_name(repo.load_recipients(db))["Small ISP"]
    assert (r.cidrs, r.asns) == ([], [])
    repo.verify_filter(db, f1.id, actor="cli:admin")
    repo.reject_filter(db, f2.id, actor="cli:admin", reason="AS belongs to someone else")
    r = _by_name(repo.load_recipients(db))["Small ISP"]
    assert ([str(c) for c in r.cidrs], r.asns) == (["198.51.100.0/24"], [])
    repo.reject_filter(db, f1.id, actor="cli:admin", reason="customer left")
    assert _by_name(repo.load_recipients(db))["Small ISP"].cidrs == []
    repo.verify_filter(db, f1.id, actor="cli:admin")
    repo.disable_recipient(db, "small_isp", actor="cli:admin", reason="bounces")
    assert "Small ISP" not in _by_name(repo.load_recipients(db))
    assert repo.get_recipient(db, "Small ISP").disabled
    repo.enable_recipient(db, "Small ISP", actor="cli:admin")
    assert "Small ISP" in _by_name(repo.load_recipients(db))
    actions = [e.action for e in audit.query(db)]
    assert actions == ["recipient.add", "filter.request", "filter.request", "filter.verify",
                       "filter.reject", "filter.reject", "filter.verify", "recipient.disable",
                       "recipient.enable"]
    reject = audit.query(db, action="filter.reject")[0]
    assert (reject.actor, reject.reason, reject.object_id) == (
        "cli:admin", "AS belongs to someone else", str(f2.id))


def test_verifying_a_min_severity_supersedes_the_previous_one(db):
    repo.add_recipient(db, "R", "r@example.net", actor="t")
    low = repo.add_filter(db, "R", "min_severity", "LOW", actor="t", verified=True)
    high = repo.add_filter(db, "R", "min_severity", "high", actor="t", verified=True)
    states = {f.id: (f.state, f.reason) for f in repo.get_recipient(db, "R").filters}
    assert states[low.id] == ("rejected", f"superseded by filter {high.id}")
    assert states[high.id][0] == "verified"
    assert _by_name(repo.load_recipients(db))["R"].min_severity == "high"


def test_add_recipient_and_filter_errors(db):
    repo.add_recipient(db, "Example ISP", "abuse@example.net", actor="t")
    with pytest.raises(ConfigError, match="clashes"):
        repo.add_recipient(db, "example-isp", "x@example.net", actor="t")
    with pytest.raises(ConfigError, match="email"):
        repo.add_recipient(db, "Other", "not-an-address", actor="t")
    with pytest.raises(ConfigError, match="kind"):
        repo.add_recipient(db, "Other", "o@example.net", actor="t", kind="vendor")
    with pytest.raises(ConfigError, match="TLP"):
        repo.add_recipient(db, "Other", "o@example.net", actor="t", tlp="PURPLE")
    with pytest.raises(NotFound):
        repo.add_filter(db, "Nobody", "asn", 1, actor="t")
    with pytest.raises(NotFound):
        repo.verify_filter(db, 12345, actor="t")
    with pytest.raises(ConfigError, match="reason"):
        repo.reject_filter(db, 1, actor="t", reason="")
    again = repo.add_filter(db, "Example ISP", "asn", "64496", actor="t")
    assert repo.add_filter(db, "Example ISP", "asn", "AS64496", actor="t").id == again.id


@pytest.mark.parametrize("kind,value,canonical", [
    ("asn", "as64496", "64496"), ("cidr", "2001:DB8::1/32", "2001:db8::/32"),
    ("country", "de", "DE"), ("domain", "Bücher.Example.", "xn--bcher-kva.example"),
    ("min_severity", "HIGH", "high"), ("report_type", "scan_ssh", "scan_ssh"),
])
def test_normalize_filter(kind, value, canonical):
    assert repo.normalize_filter(kind, value) == canonical


@pytest.mark.parametrize("kind,value", [
    ("asn", "0"), ("asn", "4294967296"), ("asn", "ASX"), ("cidr", "192.0.2.0/33"),
    ("country", "DEU"), ("domain", "localhost"), ("domain", "-bad-.example"),
    ("min_severity", "urgent"), ("port", "22"),
])
def test_normalize_filter_rejects(kind, value):
    with pytest.raises(ConfigError):
        repo.normalize_filter(kind, value)


def test_conflicts(db):
    repo.import_recipients(db, [
        {"name": "A", "email": "a@a.example", "asns": [64496], "cidrs": ["10.0.0.0/8", "2001:db8::/32"]},
        {"name": "B", "email": "b@b.example", "asns": [64496], "cidrs": ["10.1.0.0/16"]},
        {"name": "C", "email": "c@c.example", "cidrs": ["192.0.2.0/24", "2001:db8:1::/48"]},
        {"name": "National", "email": "n@n.example", "kind": "national_cert",
         "asns": [64496], "cidrs": ["10.0.0.0/8"]},
    ])
    repo.add_recipient(db, "D", "d@d.example", actor="t")
    pending = repo.add_filter(db, "D", "cidr", "192.0.2.128/25", actor="portal:d")
    found = repo.conflicts(db)
    summary = {(c.kind, frozenset(x.recipient for x in c.claims)) for c in found}
    assert summary == {
        ("asn_duplicate", frozenset({"A", "B"})),
        ("cidr_overlap", frozenset({"A", "B"})),
        ("cidr_overlap", frozenset({"A", "C"})),
        ("cidr_overlap", frozenset({"C", "D"})),
    }
    assert any(x.filter_id == pending.id and x.state == "pending" for c in found for x in c.claims)
    assert len(repo.conflicts(db, states=("verified",))) == 3

    def ipdata(addr: str):
        return 64496 if ipaddress.ip_address(addr) in ipaddress.ip_network("192.0.2.0/24") else None

    inside = [c for c in repo.conflicts(db, ipdata=ipdata) if c.kind == "cidr_in_asn"]
    assert {(c.claims[0].recipient, c.claims[1].recipient) for c in inside} == {
        ("C", "A"), ("C", "B"), ("D", "A"), ("D", "B")}
    repo.disable_recipient(db, "B", actor="t", reason="gone")
    repo.reject_filter(db, pending.id, actor="t", reason="not theirs")
    assert {c.kind for c in repo.conflicts(db)} == {"cidr_overlap"}


def test_conflicts_with_ipdata_table(db):
    """The CIDR-in-ASN check also takes Herald's IPData (vectorized look-up)."""
    import pyarrow as pa

    class Table:  # the IPData.lookup interface: addresses in, an Arrow table with "asn" out
        def lookup(self, values, columns=("asn",)):
            asns = [64496 if v.startswith("192.0.2.") else None for v in values]
            return pa.table({"asn": pa.array(asns, pa.int64())})

    repo.import_recipients(db, [
        {"name": "A", "email": "a@a.example", "asns": [64496]},
        {"name": "C", "email": "c@c.example", "cidrs": ["192.0.2.0/25", "198.51.100.0/24"]},
    ])
    found = repo.conflicts(db, ipdata=Table())
    assert [(c.kind, c.claims[0].value, c.claims[1].recipient) for c in found] == [
        ("cidr_in_asn", "192.0.2.0/25", "A")]


def test_renotify_days_is_stored_with_the_recipient_and_audited(db):
    """The re-notification window is a property of the stored recipient: set at creation or with
    :func:`set_renotify_days` (audited as ``recipient.update``; unchanged: no entry), loaded with
    the routing view and the operation shares; automatic recipients are refused."""
    from herald.constituency import operations as ops

    info = repo.add_recipient(db, "DB CERT", "cert@db.example", "cli:alice", kind="national_cert",
                              renotify_days=7, reason="asked for weekly reminders")
    assert info.renotify_days == 7
    added = audit.query(db, action="recipient.add")[-1]
    assert added.details["renotify_days"] == 7 and added.actor == "cli:alice"
    assert _by_name(repo.load_recipients(db))["DB CERT"].renotify_days == 7
    assert repo.set_renotify_days(db, "DB CERT", 3, "cli:bob", "daily is too much").renotify_days == 3
    assert repo.set_renotify_days(db, "db_cert", 3, "cli:bob").renotify_days == 3  # no change
    assert repo.set_renotify_days(db, info.id, None, "cli:bob").renotify_days is None
    updates = audit.query(db, action="recipient.update")
    assert [(e.actor, e.object_id, e.details, e.reason) for e in updates] == [  # oldest first
        ("cli:bob", str(info.id), {"renotify_days": [7, 3]}, "daily is too much"),
        ("cli:bob", str(info.id), {"renotify_days": [3, None]}, None)]
    assert repo.get_recipient(db, "DB CERT").renotify_days is None
    for bad in (-1, True, "7", 1.5):
        with pytest.raises(ConfigError, match="renotify_days"):
            repo.set_renotify_days(db, "DB CERT", bad, "t")
        with pytest.raises(ConfigError, match="renotify_days"):
            repo.add_recipient(db, f"Bad {bad!r}", "x@bad.example", "t", renotify_days=bad)
    with pytest.raises(NotFound):
        repo.set_renotify_days(db, "Nobody", 1, "t")
    # An operation share carries its recipient's window.
    lea = repo.add_recipient(db, "Task Force", "tf@police.example", "t", kind="law_enforcement",
                             renotify_days=2)
    ops.add_operation(db, "op", date(2026, 11, 1), "t", families=["virut"])
    ops.add_partner(db, "op", lea.name, ["NL"], "t")
    (share,) = ops.operation_recipients(db, "2026-11-02")
    assert (share.name, share.renotify_days) == ("Task Force", 2)
    # Automatic recipients take [abuse_contacts] renotify_days: refused here.
    from herald.contacts.autorecipients import store_automatic_recipients
    from herald.contacts.routing import AbuseContact

    store_automatic_recipients(db, [AbuseContact(name="m@x.example", email="m@x.example",
                                                 kind="abuse_contact")])
    with pytest.raises(ConfigError, match="automatic recipient"):
        repo.set_renotify_days(db, "m@x.example", 1, "t")


def test_import_sets_and_clears_renotify_days(db):
    """A ``[[recipients]]`` table's ``renotify_days`` is stored; changing or removing it in the
    file changes the stored window (the file is authoritative, as for ``tlp``), audited."""
    specs = [dict(SPECS[0], renotify_days=5), SPECS[1]]
    repo.import_recipients(db, specs, actor="config")
    loaded = _by_name(repo.load_recipients(db))
    assert loaded["Example ISP"].renotify_days == 5 and loaded["CERT-Example (national)"].renotify_days is None
    assert repo.import_recipients(db, specs, actor="config").updated == []
    result = repo.import_recipients(db, [dict(SPECS[0], renotify_days=0), SPECS[1]], actor="config")
    assert result.updated == ["Example ISP"]
    assert audit.query(db, action="recipient.update")[-1].details == {"renotify_days": [5, 0]}
    assert _by_name(repo.load_recipients(db))["Example ISP"].renotify_days == 0
    repo.import_recipients(db, SPECS, actor="config")
    assert _by_name(repo.load_recipients(db))["Example ISP"].renotify_days is None
    with pytest.raises(ConfigError, match="renotify_days must be an integer"):
        repo.import_recipients(db, [dict(SPECS[0], renotify_days=-2)], actor="config")

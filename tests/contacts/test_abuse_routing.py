"""Issue 15: abuse-contact routing, inhibitions and re-notification windows in ``herald run``.

Every report row is checked against a naive reference (``ipaddress`` over the RPSL fixture
objects in ``tests/data/rpsl/``), in both directions: each expected (recipient, address) is in
a report and each report row is expected.
"""

from __future__ import annotations

import csv
import email
import email.policy
import ipaddress
from pathlib import Path

import pyarrow as pa
import pytest
import tomli_w

from herald.cli import main
from herald.config import abuse_contact_settings, load_settings
from herald.constituency.inhibitions import add_inhibition
from herald.constituency.recipients import slugify
from herald.contacts.overrides import add_override
from herald.errors import ConfigError
from herald.pipeline import run_day
from herald.reports.renotify import event_keys
from herald.store.db import open_db

RPSL = Path(__file__).resolve().parents[1] / "data" / "rpsl"
DAYS = ["2026-11-02", "2026-11-03", "2026-11-04"]
WINDOW = 2  # day 1 reported, day 2 suppressed, day 3 (= 1 + WINDOW) reported again

#: Cleaned abuse-mailbox of each role of the fixtures (the reference resolves *which* role).
ROLE_MAILBOX = {
    "AR100-RIPE": "abuse@example.net",
    "AR200-RIPE": "abuse@customer.example.net, noc@customer.example.net",
    "AR300-RIPE": '"abuse desk"@c.example.net',
    "AR400-RIPE": "as-abuse@example.net",
    "AA1-AP": "ap-abuse@example.net",
    "AA2-AP": "org-abuse@ap.example.net",
}
OWNER = {"name": "Customer B ISP", "email": "abuse@isp-b.example", "kind": "network_owner",
         "cidrs": ["192.0.2.128/27"]}
CERT = {"name": "CERT-NL", "email": "cert@cert.example", "kind": "national_cert", "countries": ["NL"]}
OVERRIDE_NET = "192.0.2.0/28"        # mailbox override
OVERRIDE_MAIL = "desk@override.example"
SUPPRESS_ASN = 64500                 # suppression
INHIBIT_NET = "192.0.2.64/26"        # inhibited for everyone, scan_http

#: (ip, port, asn, geo)
EVENTS = [
    ("192.0.2.1", 80, None, "NL"),        # override -> desk@override.example
    ("192.0.2.20", 80, None, "NL"),       # CUSTOMER-A: org's abuse-c
    ("192.0.2.20", 8080, None, "NL"),     # same address, another event
    ("192.0.2.70", 80, None, "NL"),       # inhibited (parent's abuse-c otherwise)
    ("192.0.2.100", 80, None, "NL"),      # inhibited too
    ("192.0.2.200", 80, None, "NL"),      # EXAMPLE-PARENT
    ("192.0.2.130", 80, None, "NL"),      # the owner claims it: not the RIR contact
    ("192.0.2.161", 443, None, "NL"),     # CUSTOMER-C's own abuse-c (outside the owner's /27)
    ("192.0.2.190", 80, None, "NL"),      # CUSTOMER-B has none: parent's
    ("198.51.100.5", 80, 64496, "NL"),    # dangling abuse-c: aut-num AS64496 via org
    ("198.51.100.6", 80, SUPPRESS_ASN, "NL"),  # aut-num AS64500, suppressed by override
    ("203.0.113.200", 80, None, "NL"),    # no answer: only the CERT
    ("192.0.2.101", 80, None, "DE"),      # out of scope: nobody
]


def _objects() -> list[dict[str, str]]:
    """The fixture objects: first value of each attribute, comments dropped (naive)."""
    out = []
    for f in sorted(RPSL.glob("*.db*")):
        for block in f.read_text().split("\n\n"):
            attrs: dict[str, str] = {}
            for line in block.splitlines():
                if not line or line[0] in "%# \t+" or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                attrs.setdefault(k.strip().lower(), v.split("#")[0].strip())
            if attrs:
                out.append(attrs)
    return out


def naive_mailbox(ip: str, asn: int | None) -> str | None:
    """Reference: RIPE rules over the objects with ``ipaddress``, then the test's overrides."""
    addr = ipaddress.ip_address(ip)
    if addr in ipaddress.ip_network(OVERRIDE_NET):
        return OVERRIDE_MAIL
    if asn == SUPPRESS_ASN:
        return None
    objs = _objects()
    org_abuse = {o["organisation"].upper(): o.get("abuse-c", "").upper() for o in objs if "organisation" in o}
    nets = []
    for o in objs:
        if "inet6num" in o and addr.version == 6:
            net6 = ipaddress.ip_network(o["inet6num"])
            if addr in net6:
                nets.append((net6.num_addresses, o))
        if "inetnum" in o and o.get("netname") != "IANA-BLK" and addr.version == 4:
            v = o["inetnum"]
            try:
                if "/" in v:  # a prefix, maybe abbreviated (LACNIC/APNIC style 203.0.113/25)
                    net, plen = v.split("/")
                    net = ipaddress.ip_network(".".join((net.split(".") + ["0"] * 4)[:4]) + "/" + plen)
                    a, b = net[0], net[-1]
                else:
                    a, b = (ipaddress.ip_address(x.strip()) for x in v.split("-"))
            except ValueError:
                continue
            if a <= addr <= b:
                nets.append((int(b) - int(a), o))

    def answer(o):
        own = ROLE_MAILBOX.get(o.get("abuse-c", "").upper())
        return own or ROLE_MAILBOX.get(org_abuse.get(o.get("org", "").upper(), ""))

    for _size, o in sorted(nets, key=lambda x: x[0]):
        if answer(o):
            return answer(o)
    for o in objs:
        if "aut-num" in o and asn is not None and o["aut-num"].upper() == f"AS{asn}":
            return answer(o)
    return None


def expected(day_index: int) -> set[tuple[str, str, int]]:
    """(recipient slug, ip, port) pairs of a day of the reference."""
    out = set()
    for ip, port, asn, geo in EVENTS:
        addr = ipaddress.ip_address(ip)
        if addr in ipaddress.ip_network(INHIBIT_NET):
            continue
        owned = addr in ipaddress.ip_network(OWNER["cidrs"][0])
        if owned:
            out.add((slugify(OWNER["name"]), ip, port))
        if geo == "NL":
            out.add((slugify(CERT["name"]), ip, port))
            mb = None if owned else naive_mailbox(ip, asn)
            if mb and day_index != 1:  # day 2: within the window of day 1
                out.add((slugify(mb), ip, port))
    return out


def write_input(inbox: Path, day: str) -> None:
    d = inbox / day
    d.mkdir(parents=True, exist_ok=True)
    with (d / "scan_http.csv").open("w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
        w.writerow(["timestamp", "ip", "protocol", "port", "hostname", "tag", "asn", "geo"])
        for ip, port, asn, geo in EVENTS:
            w.writerow([f"{day} 00:01:00", ip, "tcp", port, "", "http", asn or "", geo])


def message_text(path: str) -> str:
    msg = email.message_from_bytes(Path(path).read_bytes(), policy=email.policy.default)
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def report_pairs(root: Path, day: str) -> set[tuple[str, str, int]]:
    out = set()
    for p in (root / "reports" / day).rglob("*.csv"):
        with p.open(newline="") as fh:
            for row in csv.DictReader(fh):
                out.add((p.parent.name, row["ip"], int(row["port"])))
    return out


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    url = f"sqlite:///{root / 'herald.db'}"
    raw = {"paths": {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"},
           "database": {"url": url},
           "abuse_contacts": {"enabled": True, "countries": ["NL"], "renotify_days": WINDOW},
           "recipients": [OWNER, CERT]}
    cfg = root / "herald.toml"
    cfg.write_text(tomli_w.dumps(raw))
    assert main(["contacts", "import", "--config", str(cfg), *map(str, sorted(RPSL.glob("*.db*")))]) == 0
    for day in DAYS:
        write_input(root / "inbox", day)
    settings = load_settings(cfg)
    db = open_db(url)
    add_override(db, reason="desk confirmed", actor="test", network=OVERRIDE_NET, mailbox=OVERRIDE_MAIL)
    add_override(db, reason="asked us not to", actor="test", asn=SUPPRESS_ASN)
    add_inhibition(db, reason="honeypot", actor="test", network=INHIBIT_NET, report_type="scan_http")
    yield root, settings
    db.dispose()


def test_run_routes_each_event_to_the_right_mailbox_with_window_and_inhibitions(setup):
    root, settings = setup
    summaries = [run_day(settings, day) for day in DAYS]
    for i, (day, s) in enumerate(zip(DAYS, summaries)):
        assert s.ok and s.reconciles, s.to_dict()
        assert report_pairs(root, day) == expected(i), day
        # 192.0.2.70 and .100: the CERT's pair and the abuse mailbox's pair each.
        assert s.rows_inhibited == 4
        assert s.rows_unrouted == 3  # the two inhibited events and the out-of-scope DE event
    abuse_day1 = {p for p in expected(0) if p[0] not in (slugify(OWNER["name"]), slugify(CERT["name"]))}
    assert summaries[0].rows_renotify_suppressed == 0
    assert summaries[1].rows_renotify_suppressed == len(abuse_day1) == 7
    assert summaries[2].rows_renotify_suppressed == 0
    # File names and messages of the automatic recipients.
    slug = slugify('"abuse desk"@c.example.net')
    rep = root / "reports" / DAYS[0] / slug / f"{DAYS[0]}-scan_http-{slug}-abuse_c.csv"
    assert rep.exists()
    entry = next(r for r in summaries[0].reports if r["path"] == str(rep))
    assert entry["kind"] == "abuse_contact" and entry["email"] == '"abuse desk"@c.example.net'
    body = message_text(entry["message"])
    assert "network: inetnum 192.0.2.160 - 192.0.2.167" in body
    assert "contact from: inetnum 192.0.2.160 - 192.0.2.167" in body
    assert "ask to be registered\nas a network owner" in body and "wrong address" in body
    aut = next(r for r in summaries[0].reports if r["recipient"] == "abuse@example.net")
    text = message_text(aut["message"])
    assert "contact from: aut-num AS64496" in text and "contact from: inetnum 192.0.2.0 - 192.0.2.255" in text
    # The summary's informational counters, also on the command's summary lines.
    d = summaries[1].to_dict()
    assert d["rows_renotify_suppressed"] == 7 and d["rows_inhibited"] == 4
    from herald.commands.run import summary_lines

    assert ("  (event, recipient) pairs removed: 4 inhibited, 7 within a re-notification window"
            in summary_lines(d, settings.paths))


def test_rerun_is_byte_identical(setup):
    root, settings = setup
    run_day(settings, DAYS[0])

    def snapshot():
        return {str(p.relative_to(root)): p.read_bytes() for sub in ("reports", "outbox", "data/notified")
                for p in (root / sub).rglob("*") if p.is_file()}

    first = snapshot()
    run_day(settings, DAYS[1])
    again = run_day(settings, DAYS[0], force=True)
    assert again.ok
    now = {k: v for k, v in snapshot().items() if DAYS[1] not in k}
    assert now == first


def test_disabled_sends_nothing_to_mailboxes(setup):
    root, settings = setup
    settings.raw["abuse_contacts"]["enabled"] = False
    s = run_day(settings, DAYS[0])
    assert s.reconciles
    assert {p[0] for p in report_pairs(root, DAYS[0])} == {slugify(OWNER["name"]), slugify(CERT["name"])}


def test_settings_validation():
    s = abuse_contact_settings({"abuse_contacts": {"enabled": True, "cidrs": ["192.0.2.0/24"],
                                                   "renotify_types": {"scan_http": 3}}})
    assert s.window("scan_http") == 3 and s.window("other") == 0
    for bad, msg in [({"enabled": True}, "needs a scope"), ({"countrys": ["AT"]}, "unknown key"),
                     ({"countries": ["AUT"]}, "alpha-2"), ({"cidrs": ["192.0.2.1/24"]}, "cidrs"),
                     ({"renotify_days": -1}, "renotify_days")]:
        with pytest.raises(ConfigError, match=msg):
            abuse_contact_settings({"abuse_contacts": bad})


def test_event_keys_default_columns():
    t = pa.table({"ip": ["192.0.2.1", "192.0.2.1", "192.0.2.1", None], "port": [80, 80, 81, 80],
                  "tag": ["a", "a", "a", "a"], "other": ["x", "y", "x", "x"]})
    k = event_keys(t, "ip")
    assert k[0] == k[1] and len({k[0], k[2], k[3]}) == 3
    assert event_keys(t, "ip", ("ip",))[2] == event_keys(t, "ip", ("ip",))[0]


def test_recipient_inhibition_and_own_window(setup):
    root, settings = setup
    cert = slugify(CERT["name"])
    settings.raw["recipients"][1]["renotify_days"] = 2  # the CERT's own window
    s1 = run_day(settings, DAYS[0])
    assert report_pairs(root, DAYS[0]) == expected(0)
    db = open_db(settings.database_url)
    try:  # the recipient exists in the database once the run synced the configuration
        add_inhibition(db, reason="CERT has it", actor="test", network="192.0.2.0/28", recipient=CERT["name"])
    finally:
        db.dispose()
    s2 = run_day(settings, DAYS[1])
    # Day 2: every pair of day 1 is within a window (the CERT's own, the mailboxes' default)
    # except the owner's, which has none.
    owner = {(slugify(OWNER["name"]), "192.0.2.130", 80)}
    assert report_pairs(root, DAYS[1]) == owner
    # Not counted: the owner's pair and the CERT's 192.0.2.1, inhibited for it.
    assert s2.rows_renotify_suppressed == len(expected(0)) - 2
    assert s2.rows_inhibited == s1.rows_inhibited + 1 and s2.reconciles
    s3 = run_day(settings, DAYS[2])
    assert report_pairs(root, DAYS[2]) == expected(2) - {(cert, "192.0.2.1", 80)}
    assert s3.rows_renotify_suppressed == 0


def test_owner_precedence_and_scope_property():
    """Random addresses, ASNs and countries: the abuse-contact step agrees with the reference."""
    from hypothesis import given, settings as hsettings
    from hypothesis import strategies as st

    import numpy as np

    from herald.constituency.recipients import recipients_from_specs
    from herald.contacts.importer import import_dumps
    from herald.contacts.routing import AbuseContactRouter
    from herald.contacts.overrides import ContactOverride
    from herald.contacts.store import load_contacts, write_contacts
    from herald.route import Router
    from herald.schema.registry import default_registry
    import datetime as dt
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    write_contacts(tmp, import_dumps(sorted(RPSL.glob("*.db*"))))
    data = load_contacts(tmp)
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    overrides = [ContactOverride(1, OVERRIDE_NET, None, OVERRIDE_MAIL, "r", "t", now),
                 ContactOverride(2, None, SUPPRESS_ASN, None, "r", "t", now)]
    rtype = default_registry().get("scan_http")
    ac = abuse_contact_settings({"abuse_contacts": {"enabled": True, "countries": ["NL"],
                                                    "cidrs": ["198.51.100.0/24"]}})
    addrs = st.one_of(st.integers(0, 255).map(lambda i: f"192.0.2.{i}"),
                      st.integers(0, 255).map(lambda i: f"198.51.100.{i}"),
                      st.sampled_from(["2001:db8::1", "2001:db8:1234::5", "2001:db9::1"]))
    rows = st.lists(st.tuples(addrs, st.sampled_from([None, 64496, 64500, 64511]),
                              st.sampled_from(["NL", "DE", None])), min_size=1, max_size=40)

    @hsettings(max_examples=60, deadline=None)
    @given(rows)
    def check(events):
        router = Router(recipients_from_specs([OWNER, CERT]))
        step = AbuseContactRouter(router, data, ac, overrides)
        table = pa.table({"ip": [e[0] for e in events], "asn": pa.array([e[1] for e in events], pa.int64()),
                          "geo": [e[2] for e in events], "port": [80] * len(events)})
        a = step.extend(table, rtype, router.route(table, rtype))
        got = {(int(e), router.recipients[r].email) for e, r in zip(a.event, a.recipient)}
        want = set()
        for i, (ip, asn, geo) in enumerate(events):
            addr = ipaddress.ip_address(ip)
            owned = addr.version == 4 and addr in ipaddress.ip_network(OWNER["cidrs"][0])
            if owned:
                want.add((i, OWNER["email"]))
            if geo == "NL":
                want.add((i, CERT["email"]))
            in_scope = geo == "NL" or (addr.version == 4 and addr in ipaddress.ip_network("198.51.100.0/24"))
            mb = naive_mailbox(ip, asn) if in_scope and not owned else None
            if mb:
                want.add((i, mb))
        assert got == want
        assert np.array_equal(a.routed, np.isin(np.arange(len(events)), a.event))
        order = np.lexsort((a.event, a.recipient))
        assert np.array_equal(order, np.arange(len(order)))

    check()


def test_message_workers_see_recipients_added_by_later_types(setup, monkeypatch):
    """Messages composed in forked workers: a mailbox first met in a later type (after the
    workers were forked) still gets its message, with its reasons."""
    import herald.deliver.messages as messages

    root, settings = setup
    monkeypatch.setattr(messages, "PARALLEL_MESSAGES", 1)
    monkeypatch.setattr(messages.MessageWorkers, "available", lambda self: True)
    day = DAYS[0]
    # scan_dns (routed before scan_http) has only 192.0.2.200; scan_http adds new mailboxes.
    with (root / "inbox" / day / "scan_dns.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "ip", "protocol", "port", "hostname", "tag", "asn", "geo"])
        w.writerow([f"{day} 00:01:00", "192.0.2.200", "udp", 53, "", "dns", "", "NL"])
    s = run_day(settings, day)
    assert s.ok, s.to_dict()
    by_type = {(r["type"], r["recipient"]) for r in s.reports}
    assert ("scan_dns", "abuse@example.net") in by_type
    entry = next(r for r in s.reports if r["type"] == "scan_http" and r["recipient"] == '"abuse desk"@c.example.net')
    assert "contact from: inetnum 192.0.2.160 - 192.0.2.167" in message_text(entry["message"])


def test_configuration_load_rejects_a_bad_abuse_contacts_section(tmp_path):
    cfg = tmp_path / "herald.toml"
    cfg.write_text('[abuse_contacts]\nenabled = true\ncountrys = ["AT"]\n')
    with pytest.raises(ConfigError, match="unknown key.*countrys"):
        load_settings(cfg)


def test_recipient_inhibition_covers_every_share_of_a_partner(tmp_path):
    """A law-enforcement partner has one routing entry per operation; an inhibition naming it
    removes the pairs of all of them, and only theirs."""
    import datetime as dt

    from herald.constituency.inhibitions import Inhibition
    from herald.constituency.recipients import Recipient
    from herald.reports.policy import RoutingPolicy
    from herald.route import Router
    from herald.schema.registry import default_registry

    rtype = default_registry().get("scan_http")
    lea = [Recipient(name="LEA", email="lea@police.example", kind="law_enforcement", countries=["NL"],
                     operation=op, families=[fam]) for op, fam in (("op1", "mirai"), ("op2", "qbot"))]
    cert = Recipient(name="CERT", email="c@cert.example", kind="national_cert", countries=["NL"])
    router = Router([cert, *lea])
    table = pa.table({"ip": ["192.0.2.1", "192.0.2.2"], "geo": ["NL", "NL"], "infection": ["mirai", "qbot"]})
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    inh = Inhibition(1, "192.0.2.0/24", None, None, None, "LEA", "r", "t", now, None)
    policy = RoutingPolicy(router, DAYS[0], tmp_path, inhibitions=[inh])
    before = router.route(table, rtype)
    assert sorted(before.recipient.tolist()) == [0, 0, 1, 2]
    after = policy.apply(table, rtype, before)
    assert after.recipient.tolist() == [0, 0] and policy.inhibited == 2
    assert after.routed.tolist() == [True, True]


def test_abuse_contact_message_lists_at_most_20_networks(tmp_path):
    from herald.config import settings_from_dict
    from herald.contacts.routing import AbuseContact
    from herald.deliver.compose import Templates
    from herald.deliver.report_message import compose_report_message
    from herald.deliver.settings import delivery_settings
    from herald.schema.registry import default_registry

    reasons = sorted((f"inetnum 10.0.{i}.0 - 10.0.{i}.255", "aut-num AS64496") for i in range(25))
    r = AbuseContact(name="abuse@x.example", email="abuse@x.example", kind="abuse_contact",
                     reasons={"scan_http": reasons})
    assert r.filter_label == "abuse_c"
    ds = delivery_settings(settings_from_dict({}, base=tmp_path))
    c = compose_report_message(ds, Templates(ds.mail.templates), r, default_registry().get("scan_http"),
                               DAYS[0], "AMBER", filename="x.csv", data=b"ip\n192.0.2.1\n",
                               sha256="0" * 64, rows=1)
    path = tmp_path / "m.eml"
    path.write_bytes(c.as_bytes())
    text = message_text(str(path))
    assert text.count("  network: ") == 20 and "and 5 more network(s)" in text
    assert f"network: {reasons[0][0]}" in text

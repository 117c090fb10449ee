"""Property test: the vectorized abuse-contact lookup equals a naive reference.

Random RPSL dumps (nested and overlapping inetnum ranges, inet6num prefixes, roles with and
without ``abuse-mailbox``, dangling ``abuse-c``, organisations, aut-nums) are written as text,
imported and stored; random addresses (and ASNs) are looked up and compared with plain Python over
all objects with :mod:`ipaddress`: the smallest covering object with an answer (ties: the one
given last), else the aut-num.
"""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.contacts.importer import import_dumps
from herald.contacts.lookup import lookup_contacts
from herald.contacts.store import build_tables, load_contacts, write_contacts

V4_BASE = int(ipaddress.IPv4Address("192.0.2.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))
ROLES = ["R1", "R2", "R3", "R4"]          # R4 has no abuse-mailbox
ORGS = ["ORG-A", "ORG-B", "ORG-C"]        # ORG-C has no abuse-c; ORG-B points to R4
HANDLES = ROLES + ["MISSING"]
ASNS = [64496, 64497, 64498]


def _mail(role: str) -> str | None:
    return None if role in ("R4", "MISSING") else f"{role.lower()}@example.net"


ORG_ABUSE = {"ORG-A": "R2", "ORG-B": "R4", "ORG-C": None}


def _answer(abuse_c, org):
    if abuse_c and _mail(abuse_c):
        return _mail(abuse_c), abuse_c
    if org and ORG_ABUSE.get(org) and _mail(ORG_ABUSE[org]):
        return _mail(ORG_ABUSE[org]), ORG_ABUSE[org]
    return None, None


v4_net = st.tuples(st.just(4), st.integers(0, 300), st.integers(0, 120),
                   st.sampled_from(HANDLES + [None]), st.sampled_from(ORGS + [None]))
v6_net = st.tuples(st.just(6), st.integers(0, 255), st.integers(120, 128),
                   st.sampled_from(HANDLES + [None]), st.sampled_from(ORGS + [None]))
autnum = st.tuples(st.sampled_from(ASNS), st.sampled_from(HANDLES + [None]), st.sampled_from(ORGS + [None]))


def _bounds(net):
    fam, a, b, _, _ = net
    if fam == 4:
        return V4_BASE + a, V4_BASE + a + b
    host = (1 << (128 - b)) - 1
    first = (V6_BASE + a) & ~host
    return first, first | host


def _dump(nets, autnums) -> str:
    out = []
    for i, net in enumerate(nets):
        fam, a, b, ac, org = net
        first, last = _bounds(net)
        if fam == 4:
            key = f"inetnum: {ipaddress.IPv4Address(first)} - {ipaddress.IPv4Address(last)}"
        else:
            key = f"inet6num: {ipaddress.IPv6Network((first, b))}"
        lines = [key, f"netname: NET-{i}"]
        if ac:
            lines.append(f"abuse-c: {ac}")
        if org:
            lines.append(f"org: {org}")
        out.append("\n".join(lines))
    for asn, ac, org in autnums:
        lines = [f"aut-num: AS{asn}"] + ([f"abuse-c: {ac}"] if ac else []) + ([f"org: {org}"] if org else [])
        out.append("\n".join(lines))
    for r in ROLES:
        out.append(f"role: Role {r}\nnic-hdl: {r}" + (f"\nabuse-mailbox: {_mail(r)}" if _mail(r) else ""))
    for o, ac in ORG_ABUSE.items():
        out.append(f"organisation: {o}" + (f"\nabuse-c: {ac}" if ac else ""))
    return "# synthetic\n\n" + "\n\n".join(out) + "\n"


def _naive(nets, autnums, ip: str, asn: int | None):
    addr = ipaddress.ip_address(ip)
    fam, n = addr.version, int(addr)
    best_net = best_ans = None
    for i, net in enumerate(nets):
        if net[0] != fam:
            continue
        first, last = _bounds(net)
        if not first <= n <= last:
            continue
        size = last - first
        if best_net is None or size <= best_net[0]:
            best_net = (size, i)
        mail, role = _answer(net[3], net[4])
        if mail and (best_ans is None or size <= best_ans[0]):
            best_ans = (size, i, mail, role)
    network = None if best_net is None else f"NET-{best_net[1]}"
    if best_ans is not None:
        return best_ans[2], best_ans[3], f"NET-{best_ans[1]}", network
    last_aut = {a: (ac, org) for a, ac, org in autnums}  # the later aut-num of an ASN wins
    if asn in last_aut:
        mail, role = _answer(*last_aut[asn])
        if mail:
            return mail, role, f"AS{asn}", network
    return None, None, None, network


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nets=st.lists(st.one_of(v4_net, v6_net), max_size=25),
       autnums=st.lists(autnum, max_size=4),
       probes=st.lists(st.tuples(st.booleans(), st.integers(0, 450), st.sampled_from(ASNS + [None])),
                       min_size=1, max_size=40))
def test_lookup_matches_naive_reference(nets, autnums, probes):
    ips = [str(ipaddress.IPv4Address(V4_BASE + k)) if v4 else str(ipaddress.IPv6Address(V6_BASE + k))
           for v4, k, _ in probes]
    asns = [a for _, _, a in probes]
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "whole.db"
        dump.write_text(_dump(nets, autnums))
        write_contacts(Path(tmp) / "data", import_dumps([dump]))
        data = load_contacts(Path(tmp) / "data")
        rows = lookup_contacts(data, ips, asns).to_pylist()
        # Flattening block by block (bounded memory) gives exactly the one-block tables.
        assert build_tables(data.networks, block=2) == build_tables(data.networks, block=1 << 30)
    for ip, asn, row in zip(ips, asns, rows):
        mail, role, src, network = _naive(nets, autnums, ip, asn)
        assert row["mailbox"] == mail, (ip, asn)
        assert row["role"] == role, (ip, asn)
        got_src = None
        if row["source"] is not None:
            got_src = row["source"].split()[1] if row["source"].startswith("aut-num") else None
        if src is not None and src.startswith("AS"):
            assert got_src == src
        elif src is not None:
            # The answering object: same range as NET-i, and the netname of that row.
            first, last = _bounds(nets[int(src[4:])])
            assert row["source"].split(" ", 1)[1] in _texts(nets[int(src[4:])][0], first, last)
        assert row["netname"] == network, (ip, asn)
        if network is not None:
            n_first, n_last = _bounds(nets[int(network[4:])])
            assert row["network"].split(" ", 1)[1] in _texts(nets[int(network[4:])][0], n_first, n_last)


def _texts(fam, first, last) -> set[str]:
    if fam == 4:
        return {f"{ipaddress.IPv4Address(first)} - {ipaddress.IPv4Address(last)}"}
    return {str(n) for n in ipaddress.summarize_address_range(ipaddress.IPv6Address(first),
                                                              ipaddress.IPv6Address(last))}

"""Routing: the vectorized router must equal a naive, obviously-correct per-pair check.

The property test is the "never leaks" guarantee: for random recipients (overlapping IPv4 and IPv6
CIDRs, ASNs, countries, type and severity filters, operation scopes) and random events, the set of
(event, recipient) pairs the router produces is exactly the set the rules allow.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.constituency.recipients import Recipient
from herald import route
from herald.route import DOMAIN_COLUMNS, Router, _KeyIndex, _row_pairs, country_codes
from herald.schema import SEVERITY_LEVELS, default_registry, severity_rank

REG = default_registry()
TYPES = [REG.get("event4_sinkhole_http"), REG.get("scan_http"), REG.get("event6_sinkhole_http")]
COUNTRIES = ["AT", "DE", "US", "NL", "ZZ"]
DOMAINS = ["isp.example", "cert.example", "b.isp.example", "example"]
HOSTS = [None, "", "isp.example", "a.b.isp.example", "xisp.example", "ISP.Example.", "cert.example.org",
         "www.cert.example", "other.test"]

# A small address universe so that random events hit random CIDRs often.
v4_addr = st.builds(lambda a, b: f"10.{a}.{b}.{(a * b) % 256}", st.integers(0, 7), st.integers(0, 255))
v6_addr = st.builds(lambda a, b: str(ipaddress.IPv6Address((0x20010DB8 << 96) | (a << 80) | b)),
                    st.integers(0, 7), st.integers(0, 2**16))
v4_net = st.builds(lambda a, p: ipaddress.ip_network(f"10.{a}.0.0/{p}", strict=False),
                   st.integers(0, 7), st.integers(8, 24))
v6_net = st.builds(lambda a, p: ipaddress.ip_network(((0x20010DB8 << 96) | (a << 80), p), strict=False),
                   st.integers(0, 7), st.sampled_from([32, 40, 48, 112, 128]))


@st.composite
def recipients(draw):
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        families = draw(st.sampled_from([[], [], ["virut"], ["necurs", "virut"]]))
        out.append(Recipient(
            name=f"r{i}", email=f"r{i}@x.example",
            kind="law_enforcement" if families else "network_owner",
            asns=draw(st.lists(st.integers(1, 6), max_size=2)),
            cidrs=draw(st.lists(st.one_of(v4_net, v6_net), max_size=3)),
            countries=draw(st.lists(st.sampled_from(COUNTRIES), max_size=2)),
            domains=draw(st.lists(st.sampled_from(DOMAINS), max_size=2)),
            report_types=draw(st.sampled_from([[], [], [TYPES[0].name], [TYPES[1].name, TYPES[2].name]])),
            min_severity=draw(st.sampled_from(SEVERITY_LEVELS)),
            families=families,
        ))
    return out


@st.composite
def events(draw):
    n = draw(st.integers(0, 40))
    return {
        "ip": draw(st.lists(st.one_of(v4_addr, v6_addr, st.just(""), st.just("not-an-ip")),
                            min_size=n, max_size=n)),
        "asn": draw(st.lists(st.one_of(st.none(), st.integers(0, 8)), min_size=n, max_size=n)),
        "geo": draw(st.lists(st.one_of(st.none(), st.sampled_from(COUNTRIES + ["at", "X"])),
                             min_size=n, max_size=n)),
        "severity": draw(st.lists(st.one_of(st.none(), st.sampled_from(list(SEVERITY_LEVELS) + ["bogus"])),
                                  min_size=n, max_size=n)),
        "family": draw(st.lists(st.sampled_from([None, "virut", "VIRUT", "necurs", "mirai"]),
                                min_size=n, max_size=n)),
        "host": draw(st.lists(st.sampled_from(HOSTS), min_size=n, max_size=n)),
    }


def build_table(rtype, ev) -> pa.Table:
    addr, asn, geo = rtype.address_column, rtype.asn_column, rtype.geo_column
    cols = {}
    n = len(ev["ip"])
    for c, t in rtype.column_types.items():
        cols[c] = pa.nulls(n, t)
    cols[addr] = pa.array([x or None for x in ev["ip"]], pa.string())
    cols[asn] = pa.array(ev["asn"], pa.int64())
    cols[geo] = pa.array(ev["geo"], pa.string())
    cols["severity"] = pa.array(ev["severity"], pa.string())
    cols["family"] = pa.array(ev["family"], pa.string())
    cols[host_column(rtype)] = pa.array(ev["host"], pa.string())
    return pa.table(cols)


def host_column(rtype) -> str:
    return next(c for c in DOMAIN_COLUMNS if c in rtype.columns)


def naive(rtype, ev, recips) -> set[tuple[int, int]]:
    """The routing rules, one pair at a time with the ipaddress module."""
    pairs = set()
    for i in range(len(ev["ip"])):
        try:
            ip = ipaddress.ip_address(ev["ip"][i])
        except ValueError:
            ip = None
        sev = ev["severity"][i]
        rank = severity_rank(sev) if sev in SEVERITY_LEVELS else severity_rank(rtype.default_severity)
        geo = (ev["geo"][i] or "").upper()
        host = (ev["host"][i] or "").lower().rstrip(".")
        for j, r in enumerate(recips):
            hit = (ip is not None and any(ip.version == net.version and ip in net for net in r.cidrs)) \
                or (ev["asn"][i] is not None and ev["asn"][i] in r.asns) \
                or (geo in r.countries) \
                or any(host == d or host.endswith("." + d) for d in r.domains)
            if not hit:
                continue
            if r.report_types and rtype.name not in r.report_types:
                continue
            if rank < severity_rank(r.min_severity):
                continue
            if r.families and (ev["family"][i] or "").lower() not in r.families:
                continue
            pairs.add((i, j))
    return pairs


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recips=recipients(), ev=events(), tidx=st.integers(0, len(TYPES) - 1))
def test_router_equals_naive_rules(recips, ev, tidx):
    rtype = TYPES[tidx]
    table = build_table(rtype, ev)
    a = Router(recips).route(table, rtype)
    got = set(zip(a.event.tolist(), a.recipient.tolist()))
    assert got == naive(rtype, ev, recips)
    # routed flags agree with the pairs
    assert a.routed.tolist() == [any(p[0] == i for p in got) for i in range(table.num_rows)]
    # pairs are unique and sorted by recipient, then event
    keys = list(zip(a.recipient.tolist(), a.event.tolist()))
    assert keys == sorted(set(keys))


def test_nested_and_overlapping_cidrs_of_different_recipients():
    r = [Recipient("outer", "o@x.example", cidrs=[ipaddress.ip_network("192.0.2.0/24")]),
         Recipient("inner", "i@x.example", cidrs=[ipaddress.ip_network("192.0.2.128/25")]),
         Recipient("v6", "v@x.example", cidrs=[ipaddress.ip_network("2001:db8::/127")])]
    rtype = REG.get("scan_http")
    ev = {"ip": ["192.0.2.1", "192.0.2.200", "192.0.3.1", "2001:db8::1", "2001:db8::2"],
          "asn": [None] * 5, "geo": [None] * 5, "severity": [None] * 5, "family": [None] * 5,
          "host": [None] * 5}
    a = Router(r).route(build_table(rtype, ev), rtype)
    assert set(zip(a.event.tolist(), a.recipient.tolist())) == {(0, 0), (1, 0), (1, 1), (3, 2)}
    assert a.routed.tolist() == [True, True, False, True, False]


def test_ranges_reaching_the_top_of_the_address_space():
    r = [Recipient("top6", "t@x.example", cidrs=[ipaddress.ip_network("8000::/1")]),
         Recipient("last6", "l@x.example", cidrs=[ipaddress.ip_network("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")]),
         Recipient("top4", "f@x.example", cidrs=[ipaddress.ip_network("255.255.255.255/32")])]
    rtype = REG.get("scan_http")
    ev = {"ip": ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "8000::", "7fff::1", "255.255.255.255"],
          "asn": [None] * 4, "geo": [None] * 4, "severity": [None] * 4, "family": [None] * 4,
          "host": [None] * 4}
    a = Router(r).route(build_table(rtype, ev), rtype)
    assert set(zip(a.event.tolist(), a.recipient.tolist())) == {(0, 0), (0, 1), (1, 0), (3, 2)}


def test_country_codes():
    codes = country_codes(pa.array(["AT", "at", None, "A", "A1", "ZZ"]))
    assert codes.tolist() == [0 * 26 + 19, 19, -1, -1, -1, 25 * 26 + 25]
    assert np.all(country_codes(pa.array([], pa.string())) == [])


# --------------------------------------------------------------------------------------------------
# The router's building blocks against plain references

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(-3, 40), st.integers(2**20 - 2, 2**20 + 2),
                                    st.integers(2**32 - 2, 2**32 + 2)), st.integers(0, 5)), max_size=20),
       st.lists(st.one_of(st.integers(-3, 40), st.integers(2**20 - 2, 2**20 + 2),
                          st.integers(2**32 - 2, 2**32 + 2)), max_size=30))
def test_key_index_find_equals_dict(entries, queries):
    idx = _KeyIndex(np.array([k for k, _ in entries], dtype=np.int64), np.array([r for _, r in entries], dtype=np.int32))
    got = idx.find(np.array(queries, dtype=np.int64))
    keys = sorted({k for k, _ in entries})
    assert got.tolist() == [keys.index(q) if q in keys else -1 for q in queries]
    for i, k in enumerate(keys):
        assert idx.members[idx.offsets[i]:idx.offsets[i + 1]].tolist() == sorted({r for kk, r in entries if kk == k})


@st.composite
def parts(draw):
    n = draw(st.integers(1, 12))
    out = []
    for _ in range(draw(st.integers(1, 4))):
        members = np.array(draw(st.lists(st.integers(0, 9), min_size=1, max_size=8)), dtype=np.int32)
        single = draw(st.booleans())
        start = np.array(draw(st.lists(st.integers(0, len(members) - 1), min_size=n, max_size=n)), dtype=np.int64)
        hi = 1 if single else 8
        count = np.array([draw(st.integers(0, min(hi, len(members) - s))) for s in start], dtype=np.int32)
        out.append((start, count, members, single))
    return n, out


@settings(max_examples=200, deadline=None)
@given(parts())
def test_row_pairs_equals_loop(case):
    n, ps = case
    ev, rid = _row_pairs(n, ps)
    ref = [(i, int(m[s[i] + k])) for i in range(n) for s, c, m, _ in ps for k in range(c[i])]
    assert list(zip(ev.tolist(), rid.tolist())) == ref


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recips=recipients(), ev=events(), tidx=st.integers(0, len(TYPES) - 1))
def test_router_int32_sort_path_equals_uint16(recips, ev, tidx):
    rtype = TYPES[tidx]
    table = build_table(rtype, ev)
    a = Router(recips).route(table, rtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(route, "_RADIX_MAX", 0)
        b = Router(recips).route(table, rtype)
    assert np.array_equal(a.event, b.event) and np.array_equal(a.recipient, b.recipient)
    assert a.event.dtype == b.event.dtype == np.int64 and a.recipient.dtype == b.recipient.dtype == np.int32


def _country_codes_reference(values) -> list[int]:
    return [(ord(v[0].upper()) - 65) * 26 + ord(v[1].upper()) - 65
            if v and len(v) == 2 and v.isascii() and v.isalpha() else -1 for v in values]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["AT", "at", "zZ", "A", "A1", "é", "éa", "ab ", "@[", "`{", ""]),
                          st.text(max_size=3)), max_size=30),
       st.integers(0, 3), st.booleans())
def test_country_codes_equal_reference(values, cut, chunked):
    arr = pa.array(values, pa.string())
    arr = arr.slice(min(cut, len(arr)))  # a non-zero array offset
    expect = _country_codes_reference(arr.to_pylist())
    col = pa.chunked_array([arr.slice(0, len(arr) // 2), arr.slice(len(arr) // 2)], pa.string()) if chunked else arr
    assert country_codes(col).tolist() == expect


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 12), st.integers(0, 3)), max_size=12),
       st.lists(st.integers(0, 80), max_size=40))
def test_segments_equal_covering_ranges(ranges, keys):
    """Merged neighbouring segments still give each address exactly the recipients of the ranges
    that cover it (adjacent ranges of one recipient are common: they get merged)."""
    from herald.route import _Segments
    seg = _Segments(np.array([a for a, _, _ in ranges], dtype=np.uint64),
                    np.array([a + w for a, w, _ in ranges], dtype=np.uint64),
                    np.array([r for _, _, r in ranges], dtype=np.int32))
    got = seg.lookup_v4(np.array(keys, dtype=np.uint32))
    for key, s in zip(keys, got.tolist()):
        members = [] if s < 0 else seg.members[seg.offsets[s]:seg.offsets[s + 1]].tolist()
        assert members == sorted({r for a, w, r in ranges if a <= key < a + w})
    assert len(seg.bounds) < 2 or all(
        seg.members[seg.offsets[i]:seg.offsets[i + 1]].tolist() != seg.members[seg.offsets[i + 1]:seg.offsets[i + 2]].tolist()
        for i in range(len(seg.bounds) - 1))

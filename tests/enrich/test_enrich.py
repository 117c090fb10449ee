"""Tests of herald.enrich: RangeTable, IPData (bundled data, pyasn and RIR loaders), enrich().

Lookups are checked against independent reference answers computed with Python's ``ipaddress``
module and plain loops over the real sample files of ``tests/data/samples/enrichment``.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import gzip
import ipaddress
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from herald.cli import main
from herald.enrich import IPData, RangeTable, enrich
from herald.enrich import iprange
from herald.errors import ConfigError, InputError
from herald.ipaddr import parse_ips
from herald.schema import default_registry

HSET = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="session")
def samples(data_dir: Path) -> Path:
    return data_dir / "samples" / "enrichment"


@pytest.fixture(scope="session")
def default() -> IPData:
    return IPData.default()


# --------------------------------------------------------------------------------------------------
# Reference implementations (plain Python, ipaddress module)

def naive_ipasn(path: Path) -> list[tuple[ipaddress._BaseNetwork, int]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        prefix, asn = line.split()
        out.append((ipaddress.ip_network(prefix, strict=False), int(asn)))
    return out


def naive_longest(nets, addr) -> int | None:
    best, best_len = None, -1
    for net, asn in nets:
        if net.version == addr.version and addr in net and net.prefixlen >= best_len:
            best, best_len = asn, net.prefixlen
    return best


def naive_rir(text: str) -> list[tuple[int, int, int, str]]:
    """(version, first, last, cc) of allocated/assigned ipv4/ipv6 records."""
    out = []
    for line in text.splitlines():
        f = line.strip().split("|")
        if line.startswith("#") or len(f) < 7 or f[5] == "summary" or f[2] not in ("ipv4", "ipv6"):
            continue
        if f[6] not in ("allocated", "assigned") or len(f[1]) != 2 or f[1].upper() == "ZZ":
            continue
        if f[2] == "ipv4":
            first = int(ipaddress.IPv4Address(f[3]))
            out.append((4, first, first + int(f[4]) - 1, f[1].upper()))
        else:
            net = ipaddress.IPv6Network(f"{f[3]}/{f[4]}", strict=False)
            out.append((6, int(net.network_address), int(net.broadcast_address), f[1].upper()))
    return out


class DisjointRanges:
    """Reference lookup over disjoint (version, first, last, value) ranges with :mod:`bisect`.

    RIR files list disjoint ranges; the constructor asserts that, so a plain bisect is the
    complete reference rule.
    """

    def __init__(self, ranges) -> None:
        self.by_version = {}
        for v in (4, 6):
            rs = sorted((a, b, val) for ver, a, b, val in ranges if ver == v)
            assert all(rs[i][1] < rs[i + 1][0] for i in range(len(rs) - 1)), "reference ranges overlap"
            self.by_version[v] = ([a for a, _, _ in rs], rs)

    def __call__(self, addr) -> str | None:
        starts, rs = self.by_version[addr.version]
        i = bisect.bisect_right(starts, int(addr)) - 1
        return rs[i][2] if i >= 0 and int(addr) <= rs[i][1] else None


def addresses_in(nets_or_bounds, draw_v6: bool = True):
    """Hypothesis strategy: addresses at, inside and just around the given (version, first, last)."""
    bounds = list(nets_or_bounds)

    @st.composite
    def strat(draw):
        v, first, last = draw(st.sampled_from(bounds))
        top = (1 << 32) - 1 if v == 4 else (1 << 128) - 1
        kind = draw(st.sampled_from(["first", "last", "in", "before", "after", "random"]))
        x = {"first": first, "last": last, "before": max(first - 1, 0), "after": min(last + 1, top),
             "in": draw(st.integers(first, last)), "random": draw(st.integers(0, top))}[kind]
        return ipaddress.ip_address(x) if v == 6 or x > top else ipaddress.IPv4Address(x)

    return strat()


def bounds_of(nets):
    return [(n.version, int(n.network_address), int(n.broadcast_address)) for n, _ in nets]


# --------------------------------------------------------------------------------------------------
# pyasn ipasn files

def test_ipasn_fake_nested_prefixes_longest_match(samples):
    data = IPData.load_ipasn(samples / "pyasn" / "ipasn.fake.dat")
    got = data.lookup(["1.0.0.1", "1.0.0.3", "1.0.0.4", "1.0.0.255", "2.0.0.9", "3.0.0.1", "3.127.255.255",
                       "3.128.0.0", "3.255.255.255", "4.0.0.0", "0.255.255.255"])
    assert got["asn"].to_pylist() == [1, 1, 2, 2, 3, 5, 5, 4, 4, None, None]
    assert got["as_name"].null_count == len(got)  # ipasn files carry no names
    assert got["cc"].null_count == len(got)
    assert data.asn_ranges.n_v4 == 5
    assert data.meta["skipped_lines"] == 0


def test_ipasn_fake_ranges_exact(samples):
    t = IPData.load_ipasn(samples / "pyasn" / "ipasn.fake.dat").asn_ranges
    a = [str(ipaddress.IPv4Address(int(x))) for x in t.v4_start]
    b = [str(ipaddress.IPv4Address(int(x))) for x in t.v4_end]
    assert list(zip(a, b)) == [("1.0.0.0", "1.0.0.3"), ("1.0.0.4", "1.0.0.255"), ("2.0.0.0", "2.0.0.255"),
                               ("3.0.0.0", "3.127.255.255"), ("3.128.0.0", "3.255.255.255")]
    assert t.v4_payload.tolist() == [0, 1, 2, 4, 3]  # indexes into asns [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", ["ipasn_20140513.head.dat", "ipasn6_20151101.head.dat"])
def test_ipasn_real_files_match_naive(samples, name):
    path = samples / "pyasn" / name
    nets = naive_ipasn(path)
    data = IPData.load_ipasn(path)
    assert data.meta["records"] == len(nets)

    @HSET
    @given(st.lists(addresses_in(bounds_of(nets)), min_size=1, max_size=40))
    def check(addrs):
        got = data.lookup([str(a) for a in addrs])["asn"].to_pylist()
        assert got == [naive_longest(nets, a) for a in addrs]

    check()


def test_ipasn_dates(samples):
    assert IPData.load_ipasn(samples / "pyasn" / "ipasn_20140513.head.dat").meta["date"] == "2014-05-13"
    assert IPData.load_ipasn(samples / "pyasn" / "ipasn6_20151101.head.dat").meta["date"] == "2015-11-01"
    assert IPData.load_ipasn(samples / "pyasn" / "ipasn.fake.dat").meta["date"] is None


def test_ipasn_gzip_and_crlf(samples, tmp_path):
    src = (samples / "pyasn" / "ipasn_20140513.head.dat").read_bytes()
    gz = tmp_path / "ipasn_20140513.dat.gz"
    gz.write_bytes(gzip.compress(src.replace(b"\n", b"\r\n")))
    a = IPData.load_ipasn(gz)
    b = IPData.load_ipasn(samples / "pyasn" / "ipasn_20140513.head.dat")
    assert a.asn_ranges == b.asn_ranges


def _with_lines(src: Path, dst: Path, insert: dict[int, str]) -> Path:
    lines = src.read_text().splitlines()
    for at in sorted(insert, reverse=True):
        lines.insert(at - 1, insert[at])
    dst.write_text("\n".join(lines) + "\n")
    return dst


@pytest.mark.parametrize("bad, reason", [
    ("1.2.3.0/24", "expected '<prefix><TAB><asn>'"),
    ("1.2.3.0/33\t64500", "not an IP prefix"),
    ("1.2.300.0/24\t64500", "not an IP prefix"),
    ("1.2.3.0/24\tAS64500", "AS number"),
    ("1.2.3.0/24\t4294967296", "AS number"),
    ("2001:db8::/129\t64500", "not an IP prefix"),
    ("1.2.3.0/24\t64500\textra", "expected '<prefix><TAB><asn>'"),
])
def test_ipasn_malformed_line_names_file_and_line(samples, tmp_path, bad, reason):
    path = _with_lines(samples / "pyasn" / "ipasn_20140513.head.dat", tmp_path / "ipasn.dat", {20: bad})
    with pytest.raises(InputError) as ei:
        IPData.load_ipasn(path)
    assert ei.value.path == str(path) and ei.value.line == 20
    assert f"{path}:20:" in str(ei.value) and reason in str(ei.value)


def test_ipasn_lenient_skips_and_counts(samples, tmp_path):
    src = samples / "pyasn" / "ipasn_20140513.head.dat"
    path = _with_lines(src, tmp_path / "ipasn.dat", {10: "garbage", 30: "1.2.3.0/24\tAS1", 31: "::/200\t5"})
    data = IPData.load_ipasn(path, strict=False)
    assert data.meta["skipped_lines"] == 3
    assert data.meta["skipped_examples"][0].startswith(f"{path}:10:")
    assert data.asn_ranges == IPData.load_ipasn(src).asn_ranges


def test_ipasn_unreadable(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        IPData.load_ipasn(tmp_path / "missing.dat")
    p = tmp_path / "latin1.dat"
    p.write_bytes(b"; comment\n1.0.0.0/24\t1\n; caf\xe9\n")
    with pytest.raises(InputError) as ei:
        IPData.load_ipasn(p)
    assert ei.value.line == 3


# --------------------------------------------------------------------------------------------------
# RIR delegated-extended files

@pytest.mark.parametrize("name", ["delegated-afrinic-extended-20260505.gz", "delegated-ripencc-extended.excerpt.txt",
                                  "delegated-afrinic-extended.excerpt.txt"])
def test_rir_matches_naive(samples, name):
    path = samples / "rir" / name
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    ref = naive_rir(text)
    data = IPData.load_rir_delegated(path)
    assert data.meta["records"] == len(ref)
    assert data.asn_ranges.n_v4 == 0 and len(data.asns) == 0  # country only
    assert data.meta["asn_records"] == sum(1 for ln in text.splitlines() if ln.split("|")[2:3] == ["asn"]
                                           and not ln.endswith("summary"))

    reference = DisjointRanges(ref)

    @HSET
    @given(st.lists(addresses_in([(v, a, b) for v, a, b, _ in ref]), min_size=1, max_size=40))
    def check(addrs):
        got = data.lookup([str(a) for a in addrs])["cc"].to_pylist()
        assert got == [reference(a) for a in addrs]

    check()


def test_rir_dates_and_counts(samples):
    afr = IPData.load_rir_delegated(samples / "rir" / "delegated-afrinic-extended-20260505.gz")
    assert afr.meta["date"] == "2026-05-05"
    assert afr.meta["asn_records"] == 4350
    ripe = IPData.load_rir_delegated(samples / "rir" / "delegated-ripencc-extended.excerpt.txt")
    assert ripe.meta["date"] == "2026-06-26"  # enddate field; RIPE's serial is an epoch
    got = ripe.lookup(["2.3.4.5", "1.178.112.1", "1.178.111.255"])["cc"].to_pylist()
    assert got == ["FR", "PS", None]


@pytest.mark.parametrize("bad, reason", [
    ("ripencc|FR|ipv4|2.3.0.0|65536", "at least 7"),
    ("ripencc|FR|ipv5|2.3.0.0|65536|20100712|allocated", "type must be"),
    ("ripencc|FR|ipv4|2.3.0.0|6x|20100712|allocated", "bad value"),
    ("ripencc|FR|ipv4|255.255.255.0|1024|20100712|allocated", "bad value"),
    ("ripencc|FR|ipv4|2001:db8::|256|20100712|allocated", "start is not an address"),
    ("ripencc|FR|ipv6|2001:db8::|129|20100712|allocated", "bad value"),
])
def test_rir_malformed_line_names_file_and_line(samples, tmp_path, bad, reason):
    path = _with_lines(samples / "rir" / "delegated-ripencc-extended.excerpt.txt", tmp_path / "d.txt", {7: bad})
    with pytest.raises(InputError) as ei:
        IPData.load_rir_delegated(path)
    assert ei.value.line == 7 and f"{path}:7:" in str(ei.value) and reason in str(ei.value)
    lenient = IPData.load_rir_delegated(path, strict=False)
    assert lenient.meta["skipped_lines"] == 1
    assert lenient.cc_ranges == IPData.load_rir_delegated(
        samples / "rir" / "delegated-ripencc-extended.excerpt.txt").cc_ranges


def test_rir_unassigned_records_skipped(tmp_path):
    p = tmp_path / "delegated-test-extended-20260101"
    p.write_text("2|test|20260101|4|19700101|20260101|+0000\n"
                 "test|*|ipv4|*|3|summary\n"
                 "# a comment\n"
                 "test|NL|ipv4|192.0.2.0|256|20200101|allocated|x\n"
                 "test||ipv4|198.51.100.0|256||available||\n"
                 "test|ZZ|ipv4|203.0.113.0|128||reserved|\n"
                 "test|de|ipv6|2001:db8::|32|20200101|assigned|y\n"
                 "test|US|asn|64496|1|20200101|allocated|z\n")
    d = IPData.load_rir_delegated(p)
    assert d.meta["unassigned_records"] == 2 and d.meta["asn_records"] == 1
    assert d.lookup(["192.0.2.255", "198.51.100.1", "203.0.113.1", "2001:db8:ffff::1"])["cc"].to_pylist() == \
        ["NL", None, None, "DE"]


# --------------------------------------------------------------------------------------------------
# Bundled data

def _excerpt_rows(path: Path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("name", ["asn-ipv4.excerpt.csv", "asn-ipv6.excerpt.csv"])
def test_default_matches_ip_location_db_excerpt(default, samples, name):
    rows = _excerpt_rows(samples / "ip-location-db" / name)
    addrs, want = [], []
    for start, end, asn, org in rows:
        a, b = ipaddress.ip_address(start), ipaddress.ip_address(end)
        for x in (a, b, ipaddress.ip_address((int(a) + int(b)) // 2)):
            addrs.append(str(x))
            want.append((int(asn), org))
    got = default.lookup(addrs)
    assert list(zip(got["asn"].to_pylist(), got["as_name"].to_pylist())) == want


def test_default_country_matches_excerpt(default, samples):
    rows = _excerpt_rows(samples / "ip-location-db" / "asn-country-ipv4.excerpt.csv")
    addrs = [r[0] for r in rows] + [r[1] for r in rows]
    assert default.lookup(addrs)["cc"].to_pylist() == [r[2] for r in rows] * 2


def test_default_info_and_attribution(default, repo_root):
    info = default.info(today=dt.date(2026, 7, 1))
    assert info["date"] == "2026-06-17" and info["version"] == "2.3.2026061719"
    assert "CC BY 4.0" in info["licence"] and info["age_days"] == 14 and "warning" not in info
    meta = json.loads((repo_root / "herald" / "enrich" / "data" / "ipdata.json").read_text())
    assert info["asn_ranges_v4"] == meta["counts"]["asn_ranges_v4"] > 400_000
    assert info["ranges_v6"] == meta["counts"]["asn_ranges_v6"] + meta["counts"]["cc_ranges_v6"]
    old = default.info(today=dt.date(2026, 9, 16))
    assert old["age_days"] == 91 and "91 days old" in old["warning"]
    attribution = (repo_root / "herald" / "enrich" / "data" / "ATTRIBUTION.md").read_text()
    for word in ("CC BY 4.0", "RouteViews", "DB-IP", "NRO", "ip-location-db", "2.3.2026061719"):
        assert word in attribution
    assert (repo_root / "herald" / "enrich" / "data" / "ipdata.npz").stat().st_size < 6_000_000


def test_lookup_edge_inputs(default):
    got = default.lookup(pa.array(["", None, "not an ip", " 1.1.1.1 ", "0.0.0.0", "255.255.255.255",
                                   "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "10.1.2.3"]))
    assert got.schema.names == ["asn", "as_name", "cc"] and got.num_rows == 9
    assert got["asn"].to_pylist() == [None, None, None, 13335, None, None, None, None, None]
    assert default.lookup([]).num_rows == 0
    assert default.lookup(["1.1.1.1"], columns=["cc"]).to_pylist() == [{"cc": "AU"}]
    with pytest.raises(ValueError):
        default.lookup(["1.1.1.1"], columns=["nope"])


def test_save_load_roundtrip_is_byte_identical(samples, tmp_path):
    d = IPData.load_ipasn(samples / "pyasn" / "ipasn_20140513.head.dat").combine(
        IPData.load_rir_delegated(samples / "rir" / "delegated-ripencc-extended.excerpt.txt"))
    d.save(tmp_path / "a.npz")
    d.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = IPData.load(tmp_path / "a.npz")
    assert back.asn_ranges == d.asn_ranges and back.cc_ranges == d.cc_ranges
    assert back.ccs.to_pylist() == d.ccs.to_pylist() and list(back.asns) == list(d.asns)
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(InputError, match="a.json"):
        IPData.load(tmp_path / "a.npz")


# --------------------------------------------------------------------------------------------------
# combine

def test_combine_user_ipasn_overrides_asn_keeps_country_and_names(default, samples):
    user = IPData.load_ipasn(samples / "pyasn" / "ipasn.fake.dat")
    both = default.combine(user)
    got = both.lookup(["1.0.0.1", "1.0.0.200", "8.8.8.8", "3.200.0.1"]).to_pylist()
    base = default.lookup(["1.0.0.1", "1.0.0.200", "8.8.8.8", "3.200.0.1"]).to_pylist()
    assert [r["asn"] for r in got] == [1, 2, 15169, 4]
    assert [r["cc"] for r in got] == [r["cc"] for r in base]  # countries still from the default data
    name_of = dict(zip(default.asns.tolist(), default.as_names.to_pylist()))
    assert [r["as_name"] for r in got] == [name_of[1], name_of[2], name_of[15169], name_of[4]]
    info = both.info(today=dt.date(2026, 7, 1))
    assert len(info["components"]) == 2 and info["date"] == "2026-06-17" and info["age_days"] == 14
    assert "date of pyasn ipasn file ipasn.fake.dat is unknown" in info["warning"]  # no date in it
    assert "days old" not in info["warning"]


def test_combine_rir_overrides_country(default, samples):
    rir = IPData.load_rir_delegated(samples / "rir" / "delegated-afrinic-extended-20260505.gz")
    both = default.combine(rir)
    ref = naive_rir(gzip.decompress((samples / "rir" / "delegated-afrinic-extended-20260505.gz")
                                    .read_bytes()).decode())
    addrs = [str(ipaddress.ip_address(first)) for v, first, last, cc in ref[:300]]
    got = both.lookup(addrs)
    assert got["cc"].to_pylist() == [cc for *_, cc in ref[:300]]
    assert got["asn"].to_pylist() == default.lookup(addrs)["asn"].to_pylist()
    assert both.info()["date"] == "2026-05-05"  # the oldest part decides


def test_from_specs(samples):
    specs = [{"format": "ipasn", "path": str(samples / "pyasn" / "ipasn.fake.dat")},
             {"format": "rir-delegated", "path": str(samples / "rir" / "delegated-ripencc-extended.excerpt.txt")}]
    d = IPData.from_specs(specs, base=IPData.empty())
    assert d.lookup(["1.0.0.1", "2.0.0.1", "2.3.0.1", "9.9.9.9"]).to_pylist() == [
        {"asn": 1, "as_name": None, "cc": None}, {"asn": 3, "as_name": None, "cc": "SE"},
        {"asn": None, "as_name": None, "cc": "FR"}, {"asn": None, "as_name": None, "cc": None}]
    with pytest.raises(ConfigError, match="unknown IP data format"):
        IPData.from_specs([{"format": "mmdb", "path": "x"}])


# --------------------------------------------------------------------------------------------------
# RangeTable

@st.composite
def overlapping_ranges(draw, bits: int):
    top = (1 << bits) - 1
    n = draw(st.integers(0, 12))
    out = []
    for _ in range(n):
        a = draw(st.one_of(st.integers(0, top), st.sampled_from([0, top, top // 2])))
        b = draw(st.one_of(st.integers(a, top), st.integers(a, min(a + 300, top))))
        out.append((a, b, draw(st.integers(0, 5)), draw(st.integers(0, 1))))
    return out


def _winner(ranges, x):
    """Reference rule: highest tier, then smallest, then the last given."""
    best = None
    for i, (a, b, p, t) in enumerate(ranges):
        if a <= x <= b:
            key = (t, -(b - a), i)
            if best is None or key > best[0]:
                best = (key, p)
    return -1 if best is None else best[1]


@settings(max_examples=50, deadline=None)
@given(overlapping_ranges(32), overlapping_ranges(128), st.lists(st.integers(0, (1 << 32) - 1), max_size=10),
       st.lists(st.integers(0, (1 << 128) - 1), max_size=10))
def test_rangetable_from_ranges_matches_naive(r4, r6, extra4, extra6):
    def split(v):
        return np.array([v >> 64 for v in v], dtype=np.uint64), np.array([v & (2**64 - 1) for v in v], dtype=np.uint64)

    s6h, s6l = split([a for a, *_ in r6])
    e6h, e6l = split([b for _, b, *_ in r6])
    t = RangeTable.from_ranges([a for a, *_ in r4], [b for _, b, *_ in r4], [p for *_, p, _ in r4],
                               s6h, s6l, e6h, e6l, [p for *_, p, _ in r6],
                               v4_tier=[x for *_, x in r4], v6_tier=[x for *_, x in r6])
    probe4 = extra4 + [y for a, b, *_ in r4 for y in (a, b, max(a - 1, 0), min(b + 1, 2**32 - 1))]
    probe6 = extra6 + [y for a, b, *_ in r6 for y in (a, b, max(a - 1, 0), min(b + 1, 2**128 - 1))]
    texts = [str(ipaddress.IPv4Address(x)) for x in probe4] + [str(ipaddress.IPv6Address(x)) for x in probe6]
    got = t.lookup(parse_ips(pa.array(texts, pa.string()))).tolist()
    assert got == [_winner(r4, x) for x in probe4] + [_winner(r6, x) for x in probe6]
    # The result is a valid non-overlapping table: rebuilding it from itself changes nothing.
    assert RangeTable(*[getattr(t, a) for a in ("v4_start", "v4_end", "v4_payload", "v6_start_hi",
                                                 "v6_start_lo", "v6_end_hi", "v6_end_lo", "v6_payload")]) == t


def test_rangetable_rejects_bad_input():
    with pytest.raises(ValueError, match="overlap"):
        RangeTable([0, 5], [10, 20], [1, 2])
    with pytest.raises(ValueError, match="start above its end"):
        RangeTable([10], [5], [1])
    with pytest.raises(ValueError, match="payloads"):
        RangeTable([0], [5], [-1])
    with pytest.raises(ValueError, match="row 1"):
        RangeTable.from_prefixes(["192.0.2.0/24", "192.0.2.0/40"], [1, 2])


def test_rangetable_threaded_lookup_equals_single(monkeypatch, default):
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 2**32, 50_000, dtype=np.uint64).astype(np.uint32)
    table = default.asn_ranges
    one = table.lookup_v4(keys, threads=1)
    monkeypatch.setattr(iprange, "THREAD_CHUNK", 1000)
    two = table.lookup_v4(keys, threads=2)
    assert np.array_equal(one, two)
    pos = np.searchsorted(table.v4_start, keys, side="right") - 1  # plain binary search per key
    ref = np.where((pos >= 0) & (keys <= table.v4_end[np.maximum(pos, 0)]), table.v4_payload[np.maximum(pos, 0)], -1)
    assert np.array_equal(one, ref)


def test_from_prefixes_matches_ipaddress():
    prefixes = ["198.51.100.0/24", "198.51.100.128/25", "198.51.100.7/32", "2001:db8::/32", "2001:db8:1::/48",
                "0.0.0.0/0", "192.0.2.77/24"]
    t = RangeTable.from_prefixes(prefixes, range(len(prefixes)))
    nets = [(ipaddress.ip_network(p, strict=False), i) for i, p in enumerate(prefixes)]
    probes = ["198.51.100.7", "198.51.100.8", "198.51.100.200", "2001:db8:1::5", "2001:db8:2::5", "8.8.8.8",
              "192.0.2.1", "2001:db9::1"]
    got = t.lookup(parse_ips(pa.array(probes))).tolist()
    want = [naive_longest(nets, ipaddress.ip_address(p)) for p in probes]
    assert got == [-1 if w is None else w for w in want]


# --------------------------------------------------------------------------------------------------
# enrich()

def test_enrich_fills_only_empty_values(default):
    rt = default_registry().get("event4_sinkhole")
    ips = ["1.1.1.1", "8.8.8.8", "1.1.1.1", "10.0.0.1", "not-an-ip", None, "2a00:1450:4001::1"]
    cols = {c: pa.nulls(len(ips), t) for c, t in rt.column_types.items()}
    cols["src_ip"] = pa.array(ips, pa.string())
    cols["src_asn"] = pa.array([None, 0, 64500, None, 7, None, None], pa.int64())
    cols["src_geo"] = pa.array(["", None, "XX", "YY", None, None, "DE"], pa.string())
    table = pa.table(cols)
    out = enrich(table, rt, default)
    assert out.schema == table.schema
    assert out["src_asn"].to_pylist() == [13335, 15169, 64500, None, 7, None, 15169]
    assert out["src_geo"].to_pylist() == ["AU", "US", "XX", "YY", None, None, "DE"]
    assert table["src_asn"].to_pylist()[0] is None  # input untouched
    over = enrich(table, rt, default, overwrite=True)
    assert over["src_asn"].to_pylist() == [13335, 15169, 13335, None, 7, None, 15169]
    assert over["src_geo"].to_pylist() == ["AU", "US", "AU", "YY", None, None, "IE"]


def test_enrich_other_types_and_missing_columns(default):
    reg = default_registry()
    scan = reg.get("scan_http")
    t = pa.table({"timestamp": pa.nulls(2, pa.timestamp("us", tz="UTC")), "ip": pa.array(["1.1.1.1", "8.8.8.8"])})
    out = enrich(t, scan, default)
    assert out.column_names == ["timestamp", "ip", "asn", "geo"]
    assert out["asn"].type == pa.int64() and out["asn"].to_pylist() == [13335, 15169]
    noaddr = reg.get("compromised_account") if "compromised_account" in reg else None
    if noaddr is not None:
        assert noaddr.address_column is None
        assert enrich(t, noaddr, default) is t
    full = pa.table({"ip": ["1.1.1.1"], "asn": pa.array([5], pa.int64()), "geo": ["NL"]})
    assert enrich(full, scan, default) is full  # nothing to fill: returned as is


def test_enrich_chunked_input(default):
    rt = default_registry().get("scan_http")
    t = pa.Table.from_batches([pa.record_batch({"ip": ["1.1.1.1"], "asn": pa.array([None], pa.int64()),
                                                "geo": pa.array([None], pa.string())})] * 3)
    out = enrich(t, rt, default)
    assert out["asn"].to_pylist() == [13335] * 3 and out["geo"].to_pylist() == ["AU"] * 3


# --------------------------------------------------------------------------------------------------
# CLI

def test_cli_lookup_and_info(capsys, samples):
    assert main(["ipdata", "lookup", "1.1.1.1", "2001:4860:4860::8888"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["1.1.1.1\t13335\tCloudflare, Inc.\tAU", "2001:4860:4860::8888\t15169\tGoogle LLC\tUS"]
    assert main(["ipdata", "lookup", "--ipasn", str(samples / "pyasn" / "ipasn.fake.dat"), "--json",
                 "1.0.0.1", "bogus"]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out)["asn"] == 1 and "'bogus' is not an IP address" in cap.err
    assert main(["ipdata", "info"]) == 0
    cap = capsys.readouterr()
    assert "2026-06-17" in cap.out and "CC BY 4.0" in cap.out and "ip-location-db" in cap.out
    today = dt.datetime.now(dt.timezone.utc).date()
    assert ("warning" in cap.err) == ((today - dt.date(2026, 6, 17)).days > 90)


def test_enrich_real_shadowserver_file(default, data_dir):
    from herald.sources.shadowserver_csv import read_file

    parsed = read_file(data_dir / "samples" / "shadowserver" / "event4_sinkhole.csv")
    rt, t = parsed.report_type, parsed.table
    assert enrich(t, rt, default).equals(t)  # every row already has asn and geo: kept as given
    blank = t.set_column(t.column_names.index("src_asn"), "src_asn", pa.nulls(t.num_rows, pa.int64()))
    out = enrich(blank, rt, default)
    want = default.lookup(t["src_ip"])["asn"].to_pylist()
    assert out["src_asn"].to_pylist() == want and any(w is not None for w in want)
    assert out["src_geo"].to_pylist() == t["src_geo"].to_pylist()  # geo was not empty: untouched
    assert out.drop_columns(["src_asn"]).equals(t.drop_columns(["src_asn"]))


def test_ipdata_threaded_lookup_equals_single(monkeypatch, default):
    import herald.enrich.ipdata as ipdata_mod

    rng = np.random.default_rng(11)
    v4 = rng.integers(0, 2**32, 20_000, dtype=np.uint64)
    texts = [str(ipaddress.IPv4Address(int(x))) for x in v4]
    texts[::50] = [f"2a00:1450:{i:x}::1" for i in range(len(texts[::50]))]
    texts[::77] = ["not an ip"] * len(texts[::77])
    parsed = parse_ips(pa.array(texts, pa.string()))
    one = default.lookup(parsed, threads=1)
    monkeypatch.setattr(ipdata_mod, "THREAD_CHUNK", 1000)
    monkeypatch.setattr(iprange, "THREAD_CHUNK", 1000)
    three = default.lookup(parsed, threads=3)
    assert three["asn"].num_chunks == 3 and three.equals(one)
    assert one["asn"].null_count < len(texts)  # a real mix of hits and misses

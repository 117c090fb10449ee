"""IP address parsing: the vectorized parser must equal :mod:`ipaddress`, value by value.

``parse_ips`` decodes plain dotted quads from the Arrow buffers with numpy and sends everything else
(IPv6, white space, empty, malformed text) through the general rules; these property tests compare
the whole with a per-value reference built on :mod:`ipaddress`, and the fast path alone with the
general rules, so neither can drift.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.enrich import enrich
from herald.enrich.ipdata import IPData
from herald.ipaddr import fast_v4, parse_general, parse_ips, remember_parsed
from herald.schema import default_registry
from herald.sources.shadowserver_csv import normalize_batch


def reference(value: str | None) -> tuple[int, int, int, str | None]:
    """``(version, integer, 0, canonical text)`` of one value by :mod:`ipaddress`: version 0 for
    null/empty/white space, -1 for text that is not an address or has a zone id, 4 for IPv4-mapped
    IPv6 (``parse_ips``'s contract)."""
    if value is None or not value.strip():
        return 0, 0, 0, None
    t = value.strip()
    try:
        a = ipaddress.IPv4Address(t)
        return 4, int(a), 0, str(a)
    except ValueError:
        pass
    if ":" in t and "%" not in t:  # a zone id (RFC 4007) is not an address here (issue 12)
        try:
            a = ipaddress.IPv6Address(t)
            if a.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 address (issue 12)
                return 4, int(a.ipv4_mapped), 0, str(a.ipv4_mapped)
            return 6, int(a), 0, str(a)
        except ValueError:
            pass
    return -1, 0, 0, None


octet = st.one_of(st.integers(0, 255).map(str), st.integers(0, 1100).map(str),
                  st.sampled_from(["00", "01", "001", "010", "099", "0255", "256", "", "+1", "-1",
                                   "1a", " 1", "\u0661", "\uff11"]))
valid_v4 = st.integers(0, 2**32 - 1).map(lambda x: str(ipaddress.IPv4Address(x)))
quads = st.lists(octet, min_size=1, max_size=6).map(".".join)
valid_v6 = st.integers(0, 2**128 - 1).flatmap(lambda x: st.sampled_from(
    [str(ipaddress.IPv6Address(x)), ipaddress.IPv6Address(x).exploded,
     ipaddress.IPv6Address(x).exploded.upper()]))
# Addresses with runs of zero groups (where "::" goes), IPv4-mapped/-compatible ones included.
zeroish_v6 = st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xABC, 0x10]), min_size=8, max_size=8).map(
    lambda h: str(ipaddress.IPv6Address(int.from_bytes(b"".join(x.to_bytes(2, "big") for x in h), "big"))))
white = st.sampled_from(["", " ", "\t", "  ", "\n", "\u00a0", "\u3000"])
garbage = st.text(alphabet="0123456789.:/% abfx\u0661", max_size=18)
value = st.one_of(
    valid_v4, valid_v4, quads, valid_v6, zeroish_v6, zeroish_v6.map(str.upper), garbage, white, st.none(),
    st.sampled_from(["1.2.3.4/24", "::ffff:1.2.3.4", "::1.2.3.4", "::", "::1", "1::", "1:::2", "::g", "fe80::1%eth0", "1.2.3",
                     "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "0.0.0.0", "255.255.255.255",
                     "999.999.999.999", "1..3.4", ".1.2.3", "1.2.3.", "1.2.3.4\x00"]),
    st.tuples(white, valid_v4, white).map("".join),
)


def check(values: list[str | None], parsed) -> None:
    want = [reference(v) for v in values]
    assert parsed.version.tolist() == [w[0] for w in want]
    assert parsed.v4.tolist() == [w[1] if w[0] == 4 else 0 for w in want]
    v6 = [(int(h) << 64) | int(lo) for h, lo in zip(parsed.v6_hi, parsed.v6_lo)]
    assert v6 == [w[1] if w[0] == 6 else 0 for w in want]
    assert parsed.text.to_pylist() == [w[3] for w in want]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(value, max_size=60), st.sampled_from([pa.string(), pa.large_string()]),
       st.integers(0, 3))
def test_parse_ips_matches_ipaddress(values, typ, cut):
    arr = pa.array(["x"] * cut + values, typ).slice(cut)  # a non-zero array offset too
    check(values, parse_ips(arr))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(quads, valid_v4, garbage), min_size=1, max_size=60))
def test_fast_path_takes_exactly_the_plain_dotted_quads(values):
    arr = pa.array(values, pa.string())
    ok, v4 = fast_v4(arr)
    general = parse_general(arr)
    plain = np.array([v == v.strip() for v in values])
    # Everything the fast path takes, the general rules take with the same number...
    assert (general.version[ok] == 4).all()
    assert (v4[ok] == general.v4[ok]).all() and (v4[~ok] == 0).all()
    # ... and it takes every dotted quad without white space (else it would not be the fast path).
    assert (ok == ((general.version == 4) & plain)).all()


def test_parse_ips_edge_layouts():
    values = ["1.2.3.4", None, "10.0.0.1", "", "2001:db8::1", " 8.8.8.8 ", "1.2.3.4.5"]
    check(values, parse_ips(pa.array(values)))
    check(values, parse_ips(pa.chunked_array([values[:3], values[3:]])))
    check([], parse_ips(pa.array([], pa.string())))
    check([None, None], parse_ips(pa.array([None, None], pa.string())))
    check(["", ""], parse_ips(pa.array(["", ""])))
    # A null slot whose bytes look like an address is still null (the validity bitmap rules).
    data = b"1.2.3.49.9.9.9"
    offsets = np.array([0, 7, 14], dtype=np.int32)
    arr = pa.Array.from_buffers(pa.string(), 2, [pa.py_buffer(np.packbits([1, 0], bitorder="little")),
                                                 pa.py_buffer(offsets), pa.py_buffer(data)], null_count=1)
    check(["1.2.3.4", None], parse_ips(arr))
    # Many rows: several blocks of the fast path.
    rng = np.random.default_rng(3)
    ints = rng.integers(0, 2**32, 300_000, dtype=np.uint64)
    texts = [str(ipaddress.IPv4Address(int(x))) for x in ints]
    texts[::1000] = ["01.2.3.4"] * len(texts[::1000])
    got = parse_ips(pa.array(texts))
    assert (got.version[::1000] == -1).all() and (got.version != 4).sum() == len(texts[::1000])
    keep = np.ones(len(texts), dtype=bool)
    keep[::1000] = False
    assert (got.v4[keep] == ints[keep].astype(np.uint32)).all()


def test_remember_parsed_returns_the_registered_result_for_the_same_buffers_only():
    values = pa.array(["1.2.3.4", "2001:db8::1", "bogus", None])
    parsed = parse_ips(values)
    remember_parsed(values, parsed)
    assert parse_ips(values) is parsed
    assert parse_ips(pa.chunked_array([values])) is parsed  # same buffers, another wrapper
    copy = pa.array(values.to_pylist())
    assert parse_ips(copy) is not parsed  # equal text, other buffers: parsed again
    assert parse_ips(values.slice(1)) is not parsed
    with pytest.raises(ValueError):
        parsed.version[0] = 6  # shared: read-only
    with pytest.raises(ValueError):
        remember_parsed(values.slice(1), parsed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(value, valid_v4), min_size=1, max_size=40))
def test_source_registration_equals_a_fresh_parse(values):
    """The source registers the address column it builds; what later stages get back for it must
    be exactly what parsing a copy of that column gives."""
    # Addresses with a zone id are quarantined by the source (test_zone_id_is_quarantined).
    values = [v for v in values if v is None or "%" not in v] or ["192.0.2.1"]
    rt = default_registry().get("scan_http")
    n = len(values)
    batch = pa.record_batch({"timestamp": pa.array(["2026-11-30 00:00:00"] * n),
                             "ip": pa.array([v if v is not None else "" for v in values], pa.string())})
    typed, problems = normalize_batch(batch, rt, [])
    assert not problems
    col = typed.column("ip")
    fresh = parse_ips(pa.array(col.to_pylist(), pa.string()))
    got = parse_ips(col)
    for f in ("version", "v4", "v6_hi", "v6_lo"):
        assert np.array_equal(getattr(got, f), getattr(fresh, f)), f
    assert got.text.equals(fresh.text)
    # Valid addresses are canonical, other text is kept as given, empty values are null.
    want = []
    for v in values:
        r = reference(v if v is not None else "")
        want.append(r[3] if r[0] > 0 else (None if not v else v))
    assert col.to_pylist() == want


def test_enrich_of_a_source_batch_equals_enrich_of_a_copy():
    rt = default_registry().get("scan_http")
    ips = ["1.1.1.1", "8.8.8.8", "2a00:1450:4001::1", "bogus", "", "10.0.0.1", " 9.9.9.9"]
    geo = ["", "  ", "DE", "", "", "", ""]
    batch = pa.record_batch({"timestamp": pa.array(["2026-11-30 00:00:00"] * len(ips)),
                             "ip": pa.array(ips), "asn": pa.array(["", "0", "", "", "", "", ""]),
                             "geo": pa.array(geo)})
    typed, _ = normalize_batch(batch, rt, [])
    table = pa.Table.from_batches([typed])
    copy = pa.Table.from_pylist(table.to_pylist(), schema=table.schema)
    ipdata = IPData.default()
    out = enrich(table, rt, ipdata)
    assert out.equals(enrich(copy, rt, ipdata))
    assert out["asn"].to_pylist() == [13335, 15169, 15169, None, None, None, 19281]
    # "  " is trimmed by the source to an empty (null) country, so it is filled.
    assert out["geo"].to_pylist() == ["AU", "US", "DE", None, None, None, "US"]

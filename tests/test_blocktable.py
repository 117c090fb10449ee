"""herald.blocktable: block lookups agree with a plain searchsorted; router and IP data use it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from herald.blocktable import SPLIT, BlockTable
from herald.enrich.iprange import RangeTable
from herald.route import _Segments

ADDR = st.integers(0, 2**32 - 1)


def _reference(bounds: np.ndarray, values: np.ndarray, addresses: np.ndarray) -> np.ndarray:
    return values[np.searchsorted(bounds, addresses.astype(np.uint64), side="right")]


def _fallback_counting(bounds, values, calls):
    def fallback(addresses):
        calls.append(len(addresses))
        return _reference(bounds, values, addresses)
    return fallback


@given(st.sets(st.integers(0, 2**32), max_size=60), st.lists(ADDR, max_size=200))
@example({0, 256, 2**32}, [0, 255, 256, 2**32 - 1])             # bounds on block starts, the /0 end
@example({1, 2**32 - 1}, [0, 1, 2, 2**32 - 2, 2**32 - 1])       # bounds inside the first/last block
@example(set(), [0, 12345, 2**32 - 1])                          # no bound: one value everywhere
@example({2**31, 2**31 + 5}, [0, 2**31 - 1, 2**31, 2**31 + 5])  # addresses below the first bound
def test_lookup_equals_searchsorted(bounds, addresses):
    b = np.array(sorted(bounds), dtype=np.uint64)
    values = np.arange(len(b) + 1, dtype=np.int64) * 7 - 3
    table = BlockTable(b, values)
    a = np.array(addresses, dtype=np.uint32)
    calls: list[int] = []
    got = table.lookup(a, _fallback_counting(b, values, calls))
    assert got.dtype == np.int64
    assert got.tolist() == _reference(b, values, a).tolist()
    # Only addresses in a block that holds a bound strictly inside it reach the fallback.
    # Only addresses in a /24 block with a bound inside it (after its first address) take the
    # sorted path.
    first = (a.astype(np.uint64) >> np.uint64(8)) << np.uint64(8)
    split = np.searchsorted(b, first + np.uint64(255), "right") > np.searchsorted(b, first, "right")
    assert sum(calls) == int(np.count_nonzero(split))


def test_addresses_in_whole_blocks_never_take_the_sorted_path():
    # 10.0.0.0/8 and 192.168.1.0/24: every bound is the first address of a /24 block; a million
    # more bounds, 16 apart in 200.0.0.0/8, split all of that /8's /24 blocks.
    b = np.array([10 << 24, 11 << 24, (192 << 24) | (168 << 16) | (1 << 8),
                  (192 << 24) | (168 << 16) | (2 << 8)], dtype=np.uint64)
    b = np.concatenate([b, np.arange(2**20, dtype=np.uint64) * 16 + (200 << 24)])
    table = BlockTable(b, np.arange(-1, len(b), dtype=np.int64))
    # The /16 level, plus a 1 KiB row per /16 block with a bound inside: 192.168/16, 200.0-255/16.
    # Rows: those 257 /16 blocks, and one per value of the others: -1 (below 10/8), 0 (10/8),
    # 1 (from 11/8), 3 (from 192.169/16) and the last value (from 201/8).
    assert table.rows.shape == (257 + 5, 256)
    assert table.nbytes == 4 * 2**16 + (257 + 5) * 1024
    a = np.array([10 << 24, (10 << 24) + 12345, (192 << 24) | (168 << 16) | (1 << 8) | 77,
                  (192 << 24) | (168 << 16) | 77, 0, 2**32 - 1], np.uint32)

    def never(addresses):
        raise AssertionError(f"sorted path taken for {addresses}")
    assert table.lookup(a, never).tolist() == [0, 0, 2, 1, -1, len(b) - 1]
    calls: list[int] = []
    inside = np.array([(200 << 24) + 5, (200 << 24) + 16, (201 << 24) - 1], np.uint32)
    got = table.lookup(inside, _fallback_counting(b, np.arange(-1, len(b)), calls))
    assert got.tolist() == [4, 5, len(b) - 1] and calls == [3]


def test_values_must_fit_an_int32_above_the_split_marker():
    with pytest.raises(ValueError, match="one longer"):
        BlockTable(np.array([5], np.uint64), np.array([0]))
    with pytest.raises(ValueError, match="int32"):
        BlockTable(np.array([5], np.uint64), np.array([0, 2**31]))
    with pytest.raises(ValueError, match="int32"):
        BlockTable(np.array([5], np.uint64), np.array([int(SPLIT), 0]))


@given(st.lists(st.tuples(ADDR, st.integers(0, 32)), min_size=1, max_size=40), st.lists(ADDR, max_size=150))
@example([(0, 0)], [0, 2**32 - 1])
@example([(167772160, 8), (167772416, 24), (167772417, 32)], [167772160, 167772416, 167772417, 167772418])
def test_router_segments_agree_with_and_without_blocks(cidrs, addresses):
    starts = np.array([(a >> (32 - p) << (32 - p)) if p else 0 for a, p in cidrs], dtype=np.uint64)
    ends = starts + (np.uint64(1) << (np.uint64(32) - np.array([p for _, p in cidrs], np.uint64)))
    seg = _Segments(starts, ends, np.arange(len(cidrs), dtype=np.int32))
    a = np.array(addresses, dtype=np.uint32)
    want = seg.lookup_v4_sorted(a).tolist()
    assert seg.blocks.lookup(a, seg.lookup_v4_sorted).tolist() == want
    assert seg.lookup_v4(a).tolist() == want  # through the table, now built
    # A pickled router (a Spark broadcast) carries no block table.
    copy = pickle.loads(pickle.dumps(seg))
    assert copy.__dict__.get("_blocks") is None
    assert copy.lookup_v4(a).tolist() == want


def test_a_router_builds_its_block_table_for_large_lookups_or_when_prepared():
    import ipaddress

    from herald.constituency.recipients import Recipient
    from herald.route import BLOCKS_FROM, Router

    one = Recipient(name="x", email="x@example.org",
                    cidrs=[ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("10.1.0.0/17")])
    small = np.array([0xC0000201, 0x0A010203, 0x0A018000], dtype=np.uint32)
    router = Router([one])
    seg = router._v4.lookup_v4(small)
    # The segments of 192.0.2.1 and 10.1.2.3 list the recipient; that of 10.1.128.0 lists none.
    assert [router._v4.lists.part(seg)[1][i] for i in range(3)] == [1, 1, 0]
    assert router._v4.__dict__.get("_blocks") is None  # a Reports API query's router builds none
    large = np.resize(small, BLOCKS_FROM)
    assert router._v4.lookup_v4(large).tolist() == np.resize(seg, BLOCKS_FROM).tolist()
    assert router._v4.__dict__.get("_blocks") is not None
    assert Router([one]).prepare()._v4.__dict__.get("_blocks") is not None


@given(st.lists(st.tuples(ADDR, st.integers(0, 2**16)), max_size=40), st.lists(ADDR, max_size=150))
@example([(0, 255), (2**32 - 256, 255)], [0, 255, 256, 2**32 - 257, 2**32 - 256, 2**32 - 1])
def test_range_table_agrees_with_and_without_blocks(ranges, addresses):
    ranges = sorted((s, min(s + span, 2**32 - 1)) for s, span in ranges)
    kept, last = [], -1
    for s, e in ranges:  # non-overlapping, as a RangeTable holds them
        if s > last:
            kept.append((s, e))
            last = e
    starts = [s for s, _ in kept]
    ends = [e for _, e in kept]
    plain = RangeTable(starts, ends, list(range(len(kept))))
    indexed = RangeTable(starts, ends, list(range(len(kept)))).index_blocks()
    a = np.array(addresses, dtype=np.uint32)
    assert indexed.lookup_v4(a, threads=1).tolist() == plain.lookup_v4(a, threads=1).tolist()
    assert pickle.loads(pickle.dumps(indexed))._blocks is None


def test_bundled_ip_data_answers_alike_with_and_without_blocks():
    from herald.enrich.ipdata import IPData

    data = IPData.default()
    assert data.prepare() is data
    joined = data._joined[0]
    assert joined._blocks is not None and joined._blocks.nbytes < 64 << 20
    # Every bound of the real table, the address before it and one in the middle of each range.
    bounds = (joined._v4_bounds >> np.uint64(32)).astype(np.int64)
    probe = np.unique(np.concatenate([bounds, bounds - 1, (bounds[:-1] + bounds[1:]) // 2]))
    probe = probe[(probe >= 0) & (probe < 2**32)].astype(np.uint32)
    got = joined.lookup_v4(probe, threads=1)
    assert got.tolist() == joined._lookup_v4_sorted(probe).tolist()
    assert (got >= 0).mean() > 0.5

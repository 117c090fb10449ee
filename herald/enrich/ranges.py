"""Address ranges as integers: CIDR prefixes parsed into inclusive bounds, overlapping ranges
flattened (most specific wins), and the 128-bit arithmetic they need.

Addresses are pairs of ``uint64`` (high and low 64 bits of the big-endian 128-bit address; IPv4 in
``lo`` with ``hi = 0``), as :func:`herald.ipaddr.parse_ips` produces them, or 16-byte big-endian
``S16`` keys (:func:`s16_keys`), which NumPy sorts and compares in numeric order.  The range join
over such bounds is :class:`herald.enrich.iprange.RangeTable`.
"""

from __future__ import annotations

import socket
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.ipaddr import parse_ips

#: Largest IPv4 address as an integer.
V4_MAX = (1 << 32) - 1
#: Largest ``uint64`` (all 64 bits set).
U64_MAX = np.uint64((1 << 64) - 1)


def as_u64(a) -> np.ndarray:
    """``a`` as a C-contiguous ``uint64`` array (no copy when it already is one)."""
    return np.ascontiguousarray(a, dtype=np.uint64)


def s16_keys(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """16-byte big-endian keys of 128-bit values.

    Args:
        hi, lo: ``uint64[N]`` high and low halves.

    Returns:
        ``S16[N]`` array.  NumPy compares ``S16`` values bytewise, which for fixed-width big-endian
        keys is numeric order, so ``np.sort``/``np.searchsorted`` work on them at C speed.
    """
    k = np.empty((len(hi), 2), dtype=">u8")
    k[:, 0] = hi
    k[:, 1] = lo
    return k.view("S16").ravel()


def from_s16_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(hi, lo)`` ``uint64[N]`` halves of ``S16[N]`` keys (the inverse of :func:`s16_keys`)."""
    pair = np.ascontiguousarray(keys).view(">u8").reshape(-1, 2)
    return pair[:, 0].astype(np.uint64), pair[:, 1].astype(np.uint64)


def add1(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """128-bit ``x + 1`` (wraps at 2**128)."""
    lo1 = lo + np.uint64(1)
    return hi + (lo1 == 0).astype(np.uint64), lo1


def sub1(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """128-bit ``x - 1`` (wraps at 0)."""
    return hi - (lo == 0).astype(np.uint64), lo - np.uint64(1)


def less128(ahi, alo, bhi, blo) -> np.ndarray:
    """``bool[N]``: 128-bit ``a < b``, each value given as ``uint64`` halves ``(hi, lo)``."""
    return (ahi < bhi) | ((ahi == bhi) & (alo < blo))


def prefix_masks(bits: np.ndarray) -> np.ndarray:
    """``uint64`` masks with the top ``bits`` bits set, for ``bits`` in 0..64 (vectorized)."""
    bits = np.asarray(bits, dtype=np.int64)
    shift = np.clip(64 - bits, 0, 63).astype(np.uint64)
    mask = ~((np.uint64(1) << shift) - np.uint64(1))
    mask[bits <= 0] = 0
    mask[bits >= 64] = U64_MAX
    return mask


def flatten_ranges(start_hi: np.ndarray, start_lo: np.ndarray, end_hi: np.ndarray, end_lo: np.ndarray,
                   payload: np.ndarray, tier: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn possibly overlapping inclusive ranges into sorted non-overlapping ones.

    Each address gets the payload of one covering range: the one of highest ``tier``; among those,
    the smallest (most specific: longest-prefix match for CIDR prefixes); among equal sizes, the
    one given last.  Adjacent output ranges with the same payload are merged.  Works on 128-bit
    values given as ``(hi, lo)`` ``uint64`` pairs; IPv4 callers pass ``hi = 0``.

    Method (vectorized): every start and every ``end + 1`` is a boundary; the sorted distinct
    boundaries cut the space into elementary segments; each range covers a run of segments; the
    (range, segment) pairs are expanded with ``np.repeat`` and ``np.maximum.at`` keeps, per segment,
    the winning range.  Memory is O(sum of segments covered per range), which for nested CIDR
    prefixes is at most (prefix nesting depth) x (number of prefixes).

    Args:
        start_hi, start_lo, end_hi, end_lo: ``uint64[N]`` inclusive bounds.
        payload: ``int64[N]``, values >= 0.
        tier: optional ``int64[N]``; higher wins regardless of size.

    Returns:
        ``(start_hi, start_lo, end_hi, end_lo, payload)`` of the flattened table, sorted by start.

    Raises:
        ValueError: when a range's start is above its end or a payload is negative.
    """
    start_hi, start_lo, end_hi, end_lo = map(as_u64, (start_hi, start_lo, end_hi, end_lo))
    payload = np.asarray(payload, dtype=np.int64)
    n = len(payload)
    if not (len(start_hi) == len(start_lo) == len(end_hi) == len(end_lo) == n):
        raise ValueError("flatten_ranges: arrays must have the same length")
    if n == 0:
        e = np.zeros(0, dtype=np.uint64)
        return e, e, e.copy(), e.copy(), np.zeros(0, dtype=np.int64)
    bad = less128(end_hi, end_lo, start_hi, start_lo)
    if bad.any():
        raise ValueError(f"flatten_ranges: range {int(np.argmax(bad))} has its start above its end")
    if (payload < 0).any():
        raise ValueError("flatten_ranges: payloads must be >= 0")
    tier = np.zeros(n, dtype=np.int64) if tier is None else np.asarray(tier, dtype=np.int64)

    e1_hi, e1_lo = add1(end_hi, end_lo)
    overflow = (end_hi == U64_MAX) & (end_lo == U64_MAX)  # range reaches 2**128 - 1
    n_end = int(np.count_nonzero(~overflow))
    if not start_hi.any() and not e1_hi.any():
        # All bounds fit in 64 bits (IPv4): plain integer keys sort much faster than S16.
        keys = np.concatenate((start_lo, e1_lo[~overflow]))
    else:
        keys = np.concatenate((s16_keys(start_hi, start_lo), s16_keys(e1_hi[~overflow], e1_lo[~overflow])))
    # Sorted distinct boundaries and each key's index among them, from one argsort (no searches).
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    distinct = np.ones(len(sk), dtype=bool)
    distinct[1:] = sk[1:] != sk[:-1]
    where = np.empty(len(keys), dtype=np.int64)
    where[order] = np.cumsum(distinct) - 1
    bounds = sk[distinct]
    if bounds.dtype != np.dtype("S16"):
        bounds = s16_keys(np.zeros(len(bounds), np.uint64), bounds)
    k = len(bounds)
    first = where[:n]
    stop = np.full(n, k, dtype=np.int64)
    stop[~overflow] = where[n:n + n_end]

    # Rank ranges so that a higher rank wins: tier ascending, then size descending, then input order.
    size_hi = end_hi - start_hi - (end_lo < start_lo).astype(np.uint64)
    size_lo = end_lo - start_lo
    order = np.lexsort((np.arange(n), ~size_lo, ~size_hi, tier))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    counts = stop - first
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    seg = np.arange(total, dtype=np.int64) - np.repeat(offsets - first, counts)
    best = np.full(k, -1, dtype=np.int64)
    np.maximum.at(best, seg, np.repeat(rank, counts))

    covered = np.flatnonzero(best >= 0)
    seg_payload = payload[order[best[covered]]]
    new_run = np.ones(len(covered), dtype=bool)
    new_run[1:] = (covered[1:] != covered[:-1] + 1) | (seg_payload[1:] != seg_payload[:-1])
    run_first = covered[new_run]
    run_last = covered[np.append(new_run[1:], True)[:len(new_run)]]

    b_hi, b_lo = from_s16_keys(bounds)
    nxt_hi = np.append(b_hi[1:], U64_MAX)
    nxt_lo = np.append(b_lo[1:], U64_MAX)
    seg_end_hi, seg_end_lo = sub1(nxt_hi, nxt_lo)
    # The last segment can only be covered by a range that reaches 2**128 - 1.
    seg_end_hi[-1] = U64_MAX
    seg_end_lo[-1] = U64_MAX
    return (b_hi[run_first], b_lo[run_first], seg_end_hi[run_last], seg_end_lo[run_last],
            seg_payload[new_run])


def parse_prefixes(values: pa.Array | pa.ChunkedArray | Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse CIDR prefix text (``192.0.2.0/24``, ``2001:db8::/32``) into inclusive bounds.

    Host bits below the prefix length are cleared (``192.0.2.7/24`` is ``192.0.2.0/24``), as
    pyasn's radix tree and ``ipaddress.ip_network(strict=False)`` do.  A bare address is a /32 or
    /128.

    Args:
        values: N strings (Arrow string array or a sequence).

    Returns:
        ``(version, start_hi, start_lo, end_hi, end_lo)``: ``int8[N]`` 4, 6, or -1 where the text
        is not a prefix; ``uint64[N]`` bounds (IPv4 in ``lo`` with ``hi = 0``).
    """
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(list(values), type=pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    n = len(values)
    if n == 0:
        e = np.zeros(0, dtype=np.uint64)
        return np.zeros(0, dtype=np.int8), e, e.copy(), e.copy(), e.copy()
    parts = pc.split_pattern(pc.utf8_trim_whitespace(values), "/")
    nparts = pc.fill_null(pc.list_value_length(parts), 0).to_numpy(zero_copy_only=False)
    addr = pc.list_element(parts, 0)  # a null list gives a null (empty) address
    has_colon = pc.fill_null(pc.match_substring(addr, ":"), False).to_numpy(zero_copy_only=False)
    # IPv4 (and junk) through parse_ips; IPv6 through _parse_v6, which skips parse_ips's RFC 5952
    # canonical text (the costly part for the ~10^5 IPv6 prefixes of a full routing table).
    parsed = parse_ips(pc.if_else(pa.array(has_colon), pa.nulls(n, pa.string()), addr))
    if has_colon.any():
        i6 = np.flatnonzero(has_colon)
        ok6, hi6, lo6 = _parse_v6(addr.take(pa.array(i6)).to_pylist())
        parsed.version[i6] = np.where(ok6, 6, -1)
        parsed.v6_hi[i6] = hi6
        parsed.v6_lo[i6] = lo6
    version = parsed.version.astype(np.int8).copy()
    version[(nparts < 1) | (nparts > 2)] = -1
    plen = np.where(version == 6, 128, 32).astype(np.int64)
    two = nparts == 2
    if two.any():
        ltxt = pc.list_element(pc.if_else(pa.array(two), parts, pa.nulls(n, parts.type)), 1)
        okl = pc.fill_null(pc.match_substring_regex(ltxt, r"^\d{1,3}$"), False).to_numpy(zero_copy_only=False)
        version[two & ~okl] = -1
        lens = pc.fill_null(pc.cast(pc.if_else(pa.array(okl), ltxt, pa.nulls(n, pa.string())), pa.int64()),
                            0).to_numpy(zero_copy_only=False)
        plen = np.where(two & okl, lens, plen)
    version[(version == 4) & (plen > 32)] = -1
    version[(version == 6) & (plen > 128)] = -1
    version[version == 0] = -1

    start_hi = np.zeros(n, dtype=np.uint64)
    start_lo = np.zeros(n, dtype=np.uint64)
    end_hi = np.zeros(n, dtype=np.uint64)
    end_lo = np.zeros(n, dtype=np.uint64)
    m4 = version == 4
    if m4.any():
        mask = prefix_masks(plen[m4] + 32)  # a v4 prefix of length L is the top 32+L bits of a u64
        a = parsed.v4[m4].astype(np.uint64)
        start_lo[m4] = a & mask
        end_lo[m4] = (a & mask) | (~mask & np.uint64(V4_MAX))
    m6 = version == 6
    if m6.any():
        L = plen[m6]
        mh = prefix_masks(np.clip(L, 0, 64))
        ml = prefix_masks(np.clip(L - 64, 0, 64))
        hi = parsed.v6_hi[m6]
        lo = parsed.v6_lo[m6]
        start_hi[m6] = hi & mh
        start_lo[m6] = lo & ml
        end_hi[m6] = (hi & mh) | ~mh
        end_lo[m6] = (lo & ml) | ~ml
    return version, start_hi, start_lo, end_hi, end_lo


def _parse_v6(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IPv6 text (RFC 4291 section 2.2 forms; a ``%zone`` suffix is not allowed in a prefix) to
    ``(ok bool[N], hi uint64[N], lo uint64[N])`` with :func:`socket.inet_pton`, one call per row
    (there is no vectorized IPv6 parser in Arrow or NumPy)."""
    ok = np.zeros(len(texts), dtype=bool)
    packed = bytearray(16 * len(texts))
    for i, t in enumerate(texts):
        try:
            packed[16 * i:16 * i + 16] = socket.inet_pton(socket.AF_INET6, t)
        except (OSError, ValueError, TypeError):
            continue
        ok[i] = True
    pair = np.frombuffer(bytes(packed), dtype=">u8").reshape(-1, 2)
    return ok, pair[:, 0].astype(np.uint64), pair[:, 1].astype(np.uint64)

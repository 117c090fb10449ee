"""Vectorized IP range tables: sorted, non-overlapping address ranges with an integer payload.

docs/architecture.md: IP lookups are range joins.  A :class:`RangeTable` holds, per address family, sorted
non-overlapping inclusive ranges and one non-negative ``int64`` payload per range (an index into
whatever the caller keeps: an ASN table, a country list, a subscription list).  IPv4 addresses are
``uint32``; IPv6 addresses are pairs of ``uint64`` (high and low 64 bits of the big-endian 128-bit
address), exactly as :func:`herald.ipaddr.parse_ips` produces them.

Lookup (:meth:`RangeTable.lookup`) never loops over rows in Python.  For IPv4 it packs each key with
its row number into one ``uint64`` (``address << 32 | row``), sorts that with NumPy's SIMD sort,
finds where every range boundary falls among the sorted keys (``searchsorted`` of the *boundaries*
into the keys, so the work is O(ranges * log rows + rows)), expands the payloads with ``np.repeat``
and scatters them back to row order.  Sorting first is the docs/architecture.md performance note ("sort the IPs
before searchsorted: 8x faster"); searching boundaries into keys instead of keys into boundaries
turns the per-row binary search into a linear pass.  IPv6 uses the same plan with 16-byte
big-endian ``S16`` keys, which NumPy compares bytewise (numeric order for fixed-width big-endian).
Large IPv4 inputs are split into chunks that run on threads (NumPy releases the GIL in sort,
searchsorted and fancy indexing).

Building from overlapping ranges (CIDR prefixes that nest, subscriptions that overlap) goes through
:func:`herald.enrich.ranges.flatten_ranges`: "most specific wins", that is the smallest covering range, which for CIDR
prefixes is longest-prefix match (RFC 1812 section 5.2.4.3), with an optional *tier* that ranks whole
sources above others (user data over bundled data).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.blocktable import BlockTable
from herald.enrich.ranges import (
    U64_MAX, V4_MAX, add1, as_u64, flatten_ranges, from_s16_keys, less128, parse_prefixes, s16_keys, sub1,
)
from herald.ipaddr import ParsedIPs
from herald.packsort import sort_with_positions

#: Rows per chunk above which IPv4 lookups are split over threads.
THREAD_CHUNK = 1 << 20


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and, for each input, its index among them.

    Args:
        values: ``[N]`` values (any sortable dtype).

    Returns:
        ``(distinct [U] of the dtype of values, inverse int64[N])``.

    Sort plus a neighbour mask: much faster than ``np.unique`` on large integer arrays
    (docs/architecture.md performance notes).  Integers in ``0 .. 2**32 - 1`` are sorted packed with
    their position (``value << 32 | i``) and the inverse is scattered back, which avoids the
    ``searchsorted`` of unsorted values (the 680k payload codes of :func:`join_tables` for the bundled
    data: 74 ms -> 39 ms of CPU); other values take ``searchsorted``.
    """
    values = np.asarray(values)
    n = len(values)
    if n and n <= 1 << 32 and values.dtype.kind in "iu" and values.min() >= 0 and values.max() < 1 << 32:
        packed, pos = sort_with_positions(values)
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(packed[1:], packed[:-1], out=new[1:])
        inverse = np.empty(n, dtype=np.int64)
        inverse[pos] = np.cumsum(new) - 1
        return packed[new].astype(values.dtype), inverse
    u = np.sort(values)
    if len(u):
        u = u[np.append(True, u[1:] != u[:-1])]
    return u, np.searchsorted(u, values).astype(np.int64)


class RangeTable:
    """Sorted, non-overlapping inclusive IPv4 and IPv6 ranges, each with an ``int64`` payload >= 0.

    Attributes (read-only NumPy arrays):
        v4_start, v4_end: ``uint32[R4]`` inclusive bounds, sorted, ``v4_start[i] > v4_end[i-1]``.
        v4_payload: ``int64[R4]``.
        v6_start_hi, v6_start_lo, v6_end_hi, v6_end_lo: ``uint64[R6]`` halves of the bounds.
        v6_payload: ``int64[R6]``.

    Build one directly from non-overlapping ranges, or with :meth:`from_ranges` /
    :meth:`from_prefixes` from overlapping ones.  Look up with :meth:`lookup`.

    Raises:
        ValueError: from the constructor when arrays differ in length, a range is reversed,
            ranges are unsorted or overlap, or a payload is negative.
    """

    def __init__(self, v4_start=(), v4_end=(), v4_payload=(), v6_start_hi=(), v6_start_lo=(),
                 v6_end_hi=(), v6_end_lo=(), v6_payload=()) -> None:
        self.v4_start = np.ascontiguousarray(v4_start, dtype=np.uint32)
        self.v4_end = np.ascontiguousarray(v4_end, dtype=np.uint32)
        self.v4_payload = np.ascontiguousarray(v4_payload, dtype=np.int64)
        self.v6_start_hi = as_u64(v6_start_hi)
        self.v6_start_lo = as_u64(v6_start_lo)
        self.v6_end_hi = as_u64(v6_end_hi)
        self.v6_end_lo = as_u64(v6_end_lo)
        self.v6_payload = np.ascontiguousarray(v6_payload, dtype=np.int64)
        self._check()
        for a in self._arrays():
            a.flags.writeable = False
        self._prepare()
        self._blocks: BlockTable | None = None

    def _arrays(self):
        return (self.v4_start, self.v4_end, self.v4_payload, self.v6_start_hi, self.v6_start_lo,
                self.v6_end_hi, self.v6_end_lo, self.v6_payload)

    def _check(self) -> None:
        if not len(self.v4_start) == len(self.v4_end) == len(self.v4_payload):
            raise ValueError("RangeTable: IPv4 arrays differ in length")
        if not (len(self.v6_start_hi) == len(self.v6_start_lo) == len(self.v6_end_hi)
                == len(self.v6_end_lo) == len(self.v6_payload)):
            raise ValueError("RangeTable: IPv6 arrays differ in length")
        if (self.v4_payload < 0).any() or (self.v6_payload < 0).any():
            raise ValueError("RangeTable: payloads must be >= 0 (-1 means 'no range')")
        if (self.v4_end < self.v4_start).any():
            raise ValueError("RangeTable: an IPv4 range has its start above its end")
        if (self.v4_start[1:] <= self.v4_end[:-1]).any():
            raise ValueError("RangeTable: IPv4 ranges must be sorted and must not overlap "
                             "(use RangeTable.from_ranges)")
        if less128(self.v6_end_hi, self.v6_end_lo, self.v6_start_hi, self.v6_start_lo).any():
            raise ValueError("RangeTable: an IPv6 range has its start above its end")
        if (~less128(self.v6_end_hi[:-1], self.v6_end_lo[:-1], self.v6_start_hi[1:], self.v6_start_lo[1:])).any():
            raise ValueError("RangeTable: IPv6 ranges must be sorted and must not overlap "
                             "(use RangeTable.from_ranges)")

    def _prepare(self) -> None:
        """Boundary arrays for lookup: each range's start, plus ``end + 1`` where a gap follows."""
        s = self.v4_start.astype(np.uint64)
        e1 = self.v4_end.astype(np.uint64) + np.uint64(1)
        gap = np.append(e1[:-1] < s[1:], e1[-1:] <= V4_MAX) if len(s) else np.zeros(0, bool)
        b, p = _interleave(s, e1, gap, self.v4_payload)
        self._v4_bounds = b << np.uint64(32)  # compared with packed (address << 32 | row) keys
        self._v4_values = np.concatenate(([-1], p)).astype(np.int64)
        e1_hi, e1_lo = add1(self.v6_end_hi, self.v6_end_lo)
        if len(e1_hi):
            nxt = less128(e1_hi[:-1], e1_lo[:-1], self.v6_start_hi[1:], self.v6_start_lo[1:])
            last = not (self.v6_end_hi[-1] == U64_MAX and self.v6_end_lo[-1] == U64_MAX)
            gap6 = np.append(nxt, last)
        else:
            gap6 = np.zeros(0, bool)
        hi, p6 = _interleave(self.v6_start_hi, e1_hi, gap6, self.v6_payload)
        lo, _ = _interleave(self.v6_start_lo, e1_lo, gap6, self.v6_payload)
        self._v6_bounds = s16_keys(hi, lo)
        self._v6_values = np.concatenate(([-1], p6)).astype(np.int64)

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_ranges(cls, v4_start=(), v4_end=(), v4_payload=(), v6_start_hi=(), v6_start_lo=(),
                    v6_end_hi=(), v6_end_lo=(), v6_payload=(), v4_tier=None,
                    v6_tier=None) -> "RangeTable":
        """Build from ranges that may overlap (see :func:`flatten_ranges` for who wins).

        Args: as the constructor (any order, overlaps allowed), plus optional ``int64`` tiers
            (higher tier wins over any lower-tier range).

        Raises:
            ValueError: a reversed range, a negative payload, or an IPv4 bound above 2**32 - 1.
        """
        s4 = as_u64(v4_start)
        e4 = as_u64(v4_end)
        if len(e4) and (e4.max() > V4_MAX or s4.max() > V4_MAX):
            raise ValueError("RangeTable.from_ranges: IPv4 bound above 255.255.255.255")
        z = np.zeros(len(s4), dtype=np.uint64)
        _, a4, _, b4, p4 = flatten_ranges(z, s4, z, e4, v4_payload, v4_tier)
        r6 = flatten_ranges(v6_start_hi, v6_start_lo, v6_end_hi, v6_end_lo, v6_payload, v6_tier)
        return cls(a4, b4, p4, *r6)

    @classmethod
    def from_bounds(cls, version: np.ndarray, start_hi: np.ndarray, start_lo: np.ndarray,
                    end_hi: np.ndarray, end_lo: np.ndarray, payload: np.ndarray,
                    tier: np.ndarray | None = None) -> "RangeTable":
        """Build from mixed-family rows as returned by :func:`parse_prefixes`.

        Rows with ``version`` 4 are IPv4 (bounds in ``lo``), 6 are IPv6; other rows are ignored.
        Overlaps are resolved by :func:`flatten_ranges`.
        """
        version = np.asarray(version)
        payload = np.asarray(payload, dtype=np.int64)
        m4, m6 = version == 4, version == 6
        t = None if tier is None else np.asarray(tier, dtype=np.int64)
        return cls.from_ranges(start_lo[m4], end_lo[m4], payload[m4], start_hi[m6], start_lo[m6],
                               end_hi[m6], end_lo[m6], payload[m6],
                               None if t is None else t[m4], None if t is None else t[m6])

    @classmethod
    def from_prefixes(cls, prefixes: pa.Array | Sequence[str], payload: Sequence[int] | np.ndarray
                      ) -> "RangeTable":
        """Build from CIDR prefixes (longest prefix wins; equal prefixes: the last one wins).

        Args:
            prefixes: N prefix strings (``198.51.100.0/24``, ``2001:db8::/32``, or bare addresses).
            payload: N ints >= 0.

        Raises:
            ValueError: naming the first row (0-based) that is not a prefix.
        """
        version, sh, sl, eh, el = parse_prefixes(prefixes)
        bad = np.flatnonzero(version < 0)
        if len(bad):
            vals = prefixes if not isinstance(prefixes, (pa.Array, pa.ChunkedArray)) else prefixes.to_pylist()
            raise ValueError(f"row {int(bad[0])}: {vals[int(bad[0])]!r} is not an IP prefix")
        return cls.from_bounds(version, sh, sl, eh, el, np.asarray(payload, dtype=np.int64))

    def overlay(self, other: "RangeTable") -> "RangeTable":
        """A table where ``other``'s ranges win wherever they exist and ours fill the rest.

        Computed with :func:`join_tables` (lookups of every boundary), not a general flatten, so it
        is fast for large tables.  Adjacent pieces with the same payload are merged.
        """
        joined, mine, theirs = join_tables(self, other)
        return joined.map_payload(np.where(theirs >= 0, theirs, mine))

    def map_payload(self, mapping: np.ndarray) -> "RangeTable":
        """A table with each payload ``p`` replaced by ``mapping[p]``.

        Ranges mapped to a negative value are dropped; adjacent ranges that end up with the same
        payload are merged.  No re-flattening is needed: a subset of non-overlapping ranges does
        not overlap.
        """
        mapping = np.asarray(mapping, dtype=np.int64)
        p4 = mapping[self.v4_payload]
        p6 = mapping[self.v6_payload]
        k4 = _merge_mask(self.v4_start.astype(np.uint64), self.v4_end.astype(np.uint64),
                         np.zeros(self.n_v4, np.uint64), np.zeros(self.n_v4, np.uint64), p4)
        k6 = _merge_mask(self.v6_start_lo, self.v6_end_lo, self.v6_start_hi, self.v6_end_hi, p6)
        return RangeTable(self.v4_start[k4[0]], self.v4_end[k4[1]], p4[k4[0]],
                          self.v6_start_hi[k6[0]], self.v6_start_lo[k6[0]], self.v6_end_hi[k6[1]],
                          self.v6_end_lo[k6[1]], p6[k6[0]])

    # ----------------------------------------------------------------------------------------------
    @property
    def n_v4(self) -> int:
        """Number of IPv4 ranges."""
        return len(self.v4_start)

    @property
    def n_v6(self) -> int:
        """Number of IPv6 ranges."""
        return len(self.v6_payload)

    def __len__(self) -> int:
        return self.n_v4 + self.n_v6

    def __repr__(self) -> str:
        return f"RangeTable(v4={self.n_v4} ranges, v6={self.n_v6} ranges)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeTable):
            return NotImplemented
        return all(np.array_equal(a, b) for a, b in zip(self._arrays(), other._arrays()))

    # ----------------------------------------------------------------------------------------------
    def lookup(self, parsed: ParsedIPs, threads: int | None = None) -> np.ndarray:
        """Payload of the range holding each address.

        Args:
            parsed: N parsed addresses (:func:`herald.ipaddr.parse_ips`).
            threads: threads for large IPv4 inputs (default: CPU count, at most 4).

        Returns:
            ``int64[N]``: the payload, or -1 where no range holds the address or the row is empty or
            not an address.
        """
        n = len(parsed)
        out = np.full(n, -1, dtype=np.int64)
        version = parsed.version
        m4 = version == 4
        c4 = int(np.count_nonzero(m4))
        if c4 == n and n:
            out = self.lookup_v4(parsed.v4, threads)
        elif c4:
            idx = np.flatnonzero(m4)
            out[idx] = self.lookup_v4(parsed.v4[idx], threads)
        m6 = version == 6
        if m6.any():
            idx = np.flatnonzero(m6)
            out[idx] = self.lookup_v6(parsed.v6_hi[idx], parsed.v6_lo[idx])
        return out

    def lookup_v4(self, addresses: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Payloads (``int64[N]``, -1 for none) of ``uint32[N]`` IPv4 addresses."""
        keys = np.ascontiguousarray(addresses, dtype=np.uint32)
        n = len(keys)
        out = np.empty(n, dtype=np.int64)
        if not self.n_v4:
            out.fill(-1)
            return out
        threads = threads or min(os.cpu_count() or 1, 4)
        if threads <= 1 or n < 2 * THREAD_CHUNK:
            self._lookup_v4_chunk(keys, out)
            return out
        chunks = min(threads, -(-n // THREAD_CHUNK))
        edges = np.linspace(0, n, chunks + 1).astype(np.int64)
        with ThreadPoolExecutor(chunks) as ex:
            futures = [ex.submit(self._lookup_v4_chunk, keys[a:b], out[a:b])
                       for a, b in zip(edges[:-1], edges[1:])]
            for f in futures:
                f.result()
        return out

    def index_blocks(self) -> "RangeTable":
        """Build a :class:`~herald.blocktable.BlockTable` of the IPv4 ranges, which IPv4 lookups
        use from then on (gathers instead of a sort; the bundled data's: 21 MiB, see
        :mod:`herald.blocktable`).  Returns self.  Payloads above ``2**31 - 1`` keep the sorted
        lookup.  The table is not pickled (:meth:`__getstate__`)."""
        if self._blocks is None and self.n_v4 and int(self._v4_values.max()) < 1 << 31:
            self._blocks = BlockTable(self._v4_bounds >> np.uint64(32), self._v4_values)
        return self

    def __getstate__(self) -> dict:
        """Pickled without the block table (:meth:`index_blocks` builds it again)."""
        return {**self.__dict__, "_blocks": None}

    def _lookup_v4_chunk(self, keys: np.ndarray, out: np.ndarray) -> None:
        if self._blocks is not None:
            out[:] = self._blocks.lookup(keys, self._lookup_v4_sorted)
        else:
            self._lookup_v4_sorted(keys, out)

    def _lookup_v4_sorted(self, keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Payloads (``int64[N]``) of ``uint32[N]`` keys in any order, through one sort; written
        into ``out`` when given, and returned."""
        n = len(keys)
        packed = keys.astype(np.uint64)
        packed <<= np.uint64(32)
        packed |= np.arange(n, dtype=np.uint64)
        packed.sort()
        values = _sorted_lookup(packed, self._v4_bounds, self._v4_values)
        packed &= np.uint64(0xFFFFFFFF)
        if out is None:
            out = np.empty(n, dtype=np.int64)
        out[packed.astype(np.intp)] = values
        return out

    def _lookup_sorted_v4(self, keys: np.ndarray) -> np.ndarray:
        """Payloads of already sorted ``uint32`` keys (no sort, no scatter)."""
        pos = np.searchsorted(keys.astype(np.uint64) << np.uint64(32), self._v4_bounds, side="left")
        return np.repeat(self._v4_values, np.diff(pos, prepend=0, append=len(keys)))

    def _lookup_sorted_v6(self, keys: np.ndarray) -> np.ndarray:
        """Payloads of already sorted ``S16`` keys."""
        pos = np.searchsorted(keys, self._v6_bounds, side="left")
        return np.repeat(self._v6_values, np.diff(pos, prepend=0, append=len(keys)))

    def lookup_v6(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Payloads (``int64[N]``, -1 for none) of IPv6 addresses given as ``uint64[N]`` halves."""
        n = len(hi)
        out = np.empty(n, dtype=np.int64)
        if not self.n_v6:
            out.fill(-1)
            return out
        keys = s16_keys(as_u64(hi), as_u64(lo))
        order = np.argsort(keys)
        out[order] = _sorted_lookup(keys[order], self._v6_bounds, self._v6_values)
        return out

    # ----------------------------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` under ``prefix`` (delta-encoded: sorted starts as differences,
        ends as span lengths, which compress far better).  Inverse: :meth:`from_arrays`."""
        s4 = self.v4_start
        d4 = np.diff(s4, prepend=np.uint32(0)).astype(np.uint32)
        shi = np.diff(self.v6_start_hi, prepend=np.uint64(0)).astype(np.uint64)
        span_hi, span_lo = (self.v6_end_hi - self.v6_start_hi
                            - (self.v6_end_lo < self.v6_start_lo).astype(np.uint64),
                            self.v6_end_lo - self.v6_start_lo)
        return {
            f"{prefix}v4_start_delta": d4,
            f"{prefix}v4_span": (self.v4_end - s4).astype(np.uint32),
            f"{prefix}v4_payload": _small_int(self.v4_payload),
            f"{prefix}v6_start_hi_delta": shi,
            f"{prefix}v6_start_lo": self.v6_start_lo,
            f"{prefix}v6_span_hi": span_hi,
            f"{prefix}v6_span_lo": span_lo,
            f"{prefix}v6_payload": _small_int(self.v6_payload),
        }

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "RangeTable":
        """Inverse of :meth:`to_arrays`.

        Raises:
            KeyError: an array is missing.  ValueError: the arrays do not form a valid table.
        """
        s4 = np.cumsum(arrays[f"{prefix}v4_start_delta"], dtype=np.uint64).astype(np.uint32)
        e4 = s4 + arrays[f"{prefix}v4_span"].astype(np.uint32)
        shi = np.cumsum(arrays[f"{prefix}v6_start_hi_delta"], dtype=np.uint64)
        slo = as_u64(arrays[f"{prefix}v6_start_lo"])
        lo = slo + as_u64(arrays[f"{prefix}v6_span_lo"])
        hi = shi + as_u64(arrays[f"{prefix}v6_span_hi"]) + (lo < slo).astype(np.uint64)
        return cls(s4, e4, arrays[f"{prefix}v4_payload"], shi, slo, hi, lo, arrays[f"{prefix}v6_payload"])


def _sorted_lookup(keys: np.ndarray, bounds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The value of each of the sorted ``keys`` (``[N]``): ``values[j]`` where ``j`` is the number
    of ``bounds`` (sorted, ``[B]``, same dtype) at or below the key; ``values`` is ``int64[B + 1]``.

    The smaller array is searched into the larger one, both sorted: for the bundled data's 472k
    IPv4 bounds and a 240k-row batch, keys into bounds take 4.0 ms of CPU against 7.6 ms the other
    way; for its 207k IPv6 bounds and 10k IPv6 keys, 0.9 ms against 10 ms (16-byte compares).
    """
    n = len(keys)
    if _keys_into_bounds(n, len(bounds)):
        return values[np.searchsorted(bounds, keys, side="right")]
    # For each boundary, the first sorted key at or above it; keys between two boundaries take
    # the value of the lower one (values[0] is "below the first boundary").
    pos = np.searchsorted(keys, bounds, side="left")
    return np.repeat(values, np.diff(pos, prepend=0, append=n))


def _keys_into_bounds(n_keys: int, n_bounds: int) -> bool:
    """Whether :func:`_sorted_lookup` searches the keys into the bounds (else the reverse)."""
    return n_keys <= n_bounds


def _merge_mask(start_lo: np.ndarray, end_lo: np.ndarray, start_hi: np.ndarray, end_hi: np.ndarray,
                payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first and last range of each run of contiguous ranges with one payload,
    ignoring ranges whose payload is negative."""
    idx = np.flatnonzero(payload >= 0)
    new = np.ones(len(idx), dtype=bool)
    if len(idx) > 1:
        a, b = idx[:-1], idx[1:]
        n_hi, n_lo = add1(end_hi[a], end_lo[a])
        contiguous = (n_hi == start_hi[b]) & (n_lo == start_lo[b]) & ~((end_hi[a] == U64_MAX) & (end_lo[a] == U64_MAX))
        new[1:] = ~contiguous | (payload[a] != payload[b])
    return idx[new], idx[np.append(new[1:], True)[:len(new)]]


def _small_int(a: np.ndarray) -> np.ndarray:
    if len(a) == 0 or a.max() < (1 << 31):
        return a.astype(np.int32)
    return a.astype(np.int64)


def _interleave(start: np.ndarray, after: np.ndarray, gap: np.ndarray, payload: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Boundaries ``start[0], (after[0] if gap[0]), start[1], ...`` with payloads (-1 for gaps)."""
    n = len(start)
    extra = np.cumsum(gap) - gap
    pos = np.arange(n) + extra
    total = n + int(gap.sum())
    b = np.empty(total, dtype=start.dtype)
    p = np.empty(total, dtype=np.int64)
    b[pos] = start
    p[pos] = payload
    b[pos[gap] + 1] = after[gap]
    p[pos[gap] + 1] = -1
    return b, p


def _factorize_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique_inverse` through Arrow's hash ``dictionary_encode`` (then only the distinct
    values are sorted): faster when values repeat a lot, slower when they are mostly distinct.

    Args:
        values: ``int64[N]``.

    Returns:
        ``(distinct int64[U] sorted, inverse int64[N])``.

    For the 680k payload codes of :func:`join_tables` on the bundled data (111k distinct): 20 ms
    of CPU against 49 ms for the packed sort of :func:`unique_inverse`; for 1M distinct values it
    would be 171 ms against 89 ms, hence not the general path.
    """
    enc = pc.dictionary_encode(pa.array(values, pa.int64()))
    distinct = enc.dictionary.to_numpy()
    order = np.argsort(distinct)
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[order] = np.arange(len(distinct), dtype=np.int64)
    return distinct[order], rank[enc.indices.to_numpy(zero_copy_only=False)]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct ``values`` (``[N]``, a concatenation of a few sorted runs: see
    :func:`join_tables`)."""
    u = np.sort(values, kind="stable")
    if len(u):
        u = u[np.append(True, u[1:] != u[:-1])]
    return u


def join_tables(a: RangeTable, b: RangeTable) -> tuple[RangeTable, np.ndarray, np.ndarray]:
    """Overlay two tables into one, so that a single lookup answers both.

    The result's ranges are the pieces of the union of both tables' boundaries; its payload ``p``
    indexes two arrays: ``a_payload[p]`` and ``b_payload[p]`` are what ``a`` and ``b`` give for
    any address in that piece (-1 where a table has no range).  Looking up one joined table costs
    one sort of the addresses instead of two.

    Returns:
        ``(joined, a_payload int64[P], b_payload int64[P])``.
    """
    # IPv4: every start and every end + 1 (<= 2**32 - 1) of both tables.  Each of the four parts
    # is sorted already, so a stable sort (timsort, which merges sorted runs) is far faster than a
    # quicksort: for the bundled data's 1.1M IPv4 bounds 5 ms of CPU against 62 ms, for its 343k
    # IPv6 bounds 6 ms against 35 ms.
    e4 = np.concatenate((a.v4_end, b.v4_end)).astype(np.uint64) + np.uint64(1)
    bnd = np.concatenate((a.v4_start, b.v4_start)).astype(np.uint64)
    bnd = _sorted_unique(np.concatenate((bnd, e4[e4 <= V4_MAX]))).astype(np.uint32)
    pa4 = a._lookup_sorted_v4(bnd)
    pb4 = b._lookup_sorted_v4(bnd)
    end4 = np.append(bnd[1:].astype(np.int64) - 1, V4_MAX).astype(np.uint32) if len(bnd) \
        else np.zeros(0, np.uint32)

    keys = [s16_keys(t.v6_start_hi, t.v6_start_lo) for t in (a, b)]
    for t in (a, b):
        e_hi, e_lo = add1(t.v6_end_hi, t.v6_end_lo)
        ok = ~((t.v6_end_hi == U64_MAX) & (t.v6_end_lo == U64_MAX))
        keys.append(s16_keys(e_hi[ok], e_lo[ok]))
    k6 = _sorted_unique(np.concatenate(keys))
    hi6, lo6 = from_s16_keys(k6)
    pa6 = a._lookup_sorted_v6(k6)
    pb6 = b._lookup_sorted_v6(k6)
    end_hi, end_lo = sub1(np.append(hi6[1:], U64_MAX), np.append(lo6[1:], U64_MAX))
    if len(k6):
        end_hi[-1] = U64_MAX
        end_lo[-1] = U64_MAX

    nb = int(max(b.v4_payload.max(initial=-1), b.v6_payload.max(initial=-1))) + 2
    codes4 = (pa4 + 1) * nb + (pb4 + 1)
    codes6 = (pa6 + 1) * nb + (pb6 + 1)
    codes, inv = _factorize_sorted(np.concatenate((codes4, codes6)))
    p4, p6 = inv[:len(codes4)], inv[len(codes4):]

    def runs(keep: np.ndarray, pay: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(keep)
        new = np.ones(len(idx), dtype=bool)
        new[1:] = (idx[1:] != idx[:-1] + 1) | (pay[idx[1:]] != pay[idx[:-1]])
        return idx[new], idx[np.append(new[1:], True)[:len(new)]]

    f4, l4 = runs((pa4 >= 0) | (pb4 >= 0), p4)
    f6, l6 = runs((pa6 >= 0) | (pb6 >= 0), p6)
    joined = RangeTable(bnd[f4], end4[l4], p4[f4], hi6[f6], lo6[f6], end_hi[l6], end_lo[l6], p6[f6])
    return joined, codes // nb - 1, codes % nb - 1

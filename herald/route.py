"""Routing: which recipients receive which events, vectorized.

An event matches a recipient when (docs/architecture.md, "Route"):

- its address (the type's ``src_ip``/``ip`` column) falls in one of the recipient's CIDRs, **or**
  its ASN (``src_asn``/``asn``, after enrichment) is one of the recipient's ASNs, **or** its country
  (``src_geo``/``geo``) is one of the recipient's countries, **or** one of its host names
  (:data:`DOMAIN_COLUMNS`) is one of the recipient's domains or a name below it;
- **and** its report type is in the recipient's ``report_types`` (when that list is not empty);
- **and** its severity (the ``severity`` column when it holds a known level, else the type's default
  from ``severity.md``) is at least the recipient's ``min_severity``;
- **and**, for a recipient scoped to an operation (law enforcement), its ``family``/``infection`` is
  one of the operation's families or its ``tag`` holds one of the operation's tags.

Nothing else reaches a recipient.  The work is done on numpy arrays, never per (event, recipient)
pair in Python:

- CIDRs of all recipients become elementary, non-overlapping segments of the address space (IPv4
  as ``uint32``, IPv6 as 16-byte big-endian keys); each segment lists the recipients whose CIDRs
  cover it (CSR layout); neighbouring segments with the same recipients are merged.  One
  ``searchsorted`` of the sorted event addresses finds every event's segment.
- ASNs and countries become sorted keys with their recipients (CSR), found through a dense table
  (small keys) or ``searchsorted``.
- Host names are dictionary-encoded; only the distinct names (far fewer than events) are matched
  against the domains, suffix by suffix, in Python.
- Each row's recipients from all of these are written row after row (no sort), filtered by type,
  severity and operation masks, put in recipient order by a stable radix sort of the ``uint16``
  recipient numbers, and made unique with a neighbour mask.

Build a :class:`Router` once per run (cost grows with the number of CIDRs: about a second per
million) and call :meth:`Router.route` per table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.blocktable import BlockTable
from herald.constituency.networks import Networks
from herald.constituency.recipients import Recipient
from herald.ipaddr import parse_ips, v6_keys
from herald.packsort import sort_with_positions
from herald.schema.registry import SEVERITY_LEVELS, ReportType, severity_rank


#: Columns holding a host name of the event, checked against domain filters (Shadowserver names).
DOMAIN_COLUMNS = ("hostname", "src_hostname", "http_host", "host", "domain", "query", "cc_dns")


@dataclass
class Assignment:
    """The result of routing one table.

    Attributes:
        event: ``int64[P]`` row indices into the routed table.
        recipient: ``int32[P]`` indices into :attr:`Router.recipients`.  Pairs are unique and
            sorted by recipient, then event.
        routed: ``bool[N]``: the row reached at least one recipient.
    """

    event: np.ndarray
    recipient: np.ndarray
    routed: np.ndarray


#: The fewest addresses of one lookup for which a router builds its IPv4 block table.
BLOCKS_FROM = 1 << 16


class _Lists:
    """Recipient lists in CSR layout (entry ``i``: ``members[offsets[i]:offsets[i + 1]]``), with
    per-entry start and length arrays that have one more, empty, entry for index -1.

    Args:
        offsets: ``int64[E + 1]``.
        members: ``int32[M]`` recipient indices.
    """

    def __init__(self, offsets: np.ndarray, members: np.ndarray) -> None:
        self.members = np.append(members, 0).astype(np.int32)  # a spare entry: see _row_pairs
        self._start = np.append(offsets[:-1], 0).astype(np.int64)
        self._count = np.append(np.diff(offsets), 0).astype(np.int32)
        self.single = bool(self._count.max(initial=0) <= 1)

    def part(self, idx: np.ndarray) -> "_Part":
        """The :data:`_Part` of rows that match entry ``idx[i]`` (``int64[N]``, -1 for none)."""
        return self._start[idx], self._count[idx], self.members, self.single


class _Segments:
    """Elementary segments of a set of (possibly overlapping) ranges, with covering recipients.

    Args:
        starts, ends_excl: ``[M]`` range bounds, ``[start, end)``, as sortable keys (``uint64`` for
            IPv4 addresses, ``S17`` big-endian keys for IPv6, see :func:`_ints_to_s17`).
        rids: ``int32[M]`` the recipient of each range.

    Attributes:
        bounds: ``[B]`` sorted distinct bounds; segment ``i`` is ``[bounds[i], bounds[i + 1])``.
        offsets: ``int64[B + 1]``, members: ``int32``: recipients of segment ``i`` (sorted) are
            ``members[offsets[i]:offsets[i + 1]]`` (CSR layout).
    """

    def __init__(self, starts: np.ndarray, ends_excl: np.ndarray, rids: np.ndarray) -> None:
        self._blocks: BlockTable | None = None
        if len(starts) == 0:
            self.bounds = starts[:0]
            self.offsets = np.zeros(1, dtype=np.int64)
            self.members = np.zeros(0, dtype=np.int32)
            self.lists = _Lists(self.offsets, self.members)
            return
        bounds = np.unique(np.concatenate([starts, ends_excl]))
        first = np.searchsorted(bounds, starts, "left")
        last = np.searchsorted(bounds, ends_excl, "left")  # segments first..last-1
        counts = (last - first).astype(np.int64)
        total = int(counts.sum())
        seg = np.repeat(first, counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
        rid = np.repeat(rids, counts)
        order = np.lexsort((rid, seg))
        seg, rid = seg[order], rid[order]
        keep = np.ones(len(seg), dtype=bool)
        keep[1:] = (seg[1:] != seg[:-1]) | (rid[1:] != rid[:-1])
        seg, rid = seg[keep], rid[keep]
        counts = np.bincount(seg, minlength=len(bounds))
        self.bounds, counts, self.members = _merge_equal_neighbours(bounds, counts, rid.astype(np.int32))
        self.offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self.lists = _Lists(self.offsets, self.members)

    @property
    def blocks(self) -> BlockTable:
        """The :class:`~herald.blocktable.BlockTable` of the IPv4 segments (``uint64`` bounds),
        built on first use; not pickled (a Spark broadcast of the router stays small)."""
        if self._blocks is None:
            self._blocks = BlockTable(self.bounds, np.arange(-1, len(self.bounds), dtype=np.int64))
        return self._blocks

    def __getstate__(self) -> dict:
        """Pickled without the block table (:attr:`blocks` builds it again)."""
        return {**self.__dict__, "_blocks": None}

    def segment_of(self, keys: np.ndarray) -> np.ndarray:
        """``int64[K]``: the segment holding each of the *sorted* ``keys`` (``[K]``, the dtype of
        :attr:`bounds`), -1 below the first bound."""
        return np.searchsorted(self.bounds, keys, "right") - 1

    def lookup_v4(self, addr: np.ndarray) -> np.ndarray:
        """``int64[K]``: the segment (-1 for none) of each IPv4 address (``uint32[K]``, any order).

        Through :attr:`blocks` when it is built or ``addr`` has :data:`BLOCKS_FROM` addresses or
        more (the addresses in a /24 block that holds a bound take :meth:`lookup_v4_sorted`);
        a small lookup without the table (a Reports API query's one recipient) takes
        :meth:`lookup_v4_sorted` alone instead of building it (3 ms).
        """
        if len(self.bounds) == 0 or (len(addr) < BLOCKS_FROM and self._blocks is None):
            return self.lookup_v4_sorted(addr)
        return self.blocks.lookup(addr, self.lookup_v4_sorted)

    def lookup_v4_sorted(self, addr: np.ndarray) -> np.ndarray:
        """:meth:`lookup_v4` through a sort of the addresses, without the block table.

        The addresses are packed with their position (``address << 32 | i``) and sorted, which is
        faster than an ``argsort`` (a plain ``uint64`` sort: 10 ms against 16 ms for 200k
        addresses), and sorted queries make ``searchsorted`` faster (cache locality): 200k
        addresses into 2M random bounds 7 ms sorted against 67 ms unsorted; into the bench's 171k
        merged bounds the whole lookup takes 15 ms against 28 ms for an unsorted ``searchsorted``.
        """
        out = np.full(len(addr), -1, dtype=np.int64)
        if len(self.bounds) and len(addr):
            packed, pos = sort_with_positions(addr)
            out[pos] = self.segment_of(packed)
        return out

    def lookup_keys(self, keys: np.ndarray) -> np.ndarray:
        """``int64[K]``: the segment (-1 for none) of each key (``[K]``, dtype of :attr:`bounds`)."""
        out = np.full(len(keys), -1, dtype=np.int64)
        if len(self.bounds) and len(keys):
            order = np.argsort(keys, kind="stable")
            out[order] = self.segment_of(keys[order])
        return out


def _merge_equal_neighbours(bounds: np.ndarray, counts: np.ndarray, members: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop the bounds between neighbouring segments that have the same recipients.

    Args:
        bounds: ``[S]`` sorted segment starts; counts: ``int64[S]`` recipients per segment;
            members: ``int32[sum(counts)]`` the recipients, segment after segment (CSR).

    Returns:
        ``(bounds, counts, members)`` of the merged segments.  An address finds the same recipients.
        Adjacent CIDRs of one recipient give many such bounds: on the bench's 983k CIDRs 1.39M
        bounds become 171k, and a sorted ``searchsorted`` over them runs in cache.
    """
    n = len(bounds)
    if n < 2:
        return bounds, counts, members
    offsets = np.concatenate(([0], np.cumsum(counts)))
    # same[i]: segment i + 1 has the recipients of segment i.
    same = counts[1:] == counts[:-1]
    cand = np.flatnonzero(same & (counts[1:] > 0))
    if len(cand):
        c = counts[cand]
        k = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        a = np.repeat(offsets[cand], c) + k
        b = np.repeat(offsets[cand + 1], c) + k
        differ = np.bincount(np.repeat(np.arange(len(cand)), c), weights=members[a] != members[b],
                             minlength=len(cand))
        same[cand[differ > 0]] = False
    keep = np.concatenate(([True], ~same))
    return bounds[keep], counts[keep], members[np.repeat(keep, counts)]


class _KeyIndex:
    """Exact-match filters (ASNs, country codes): the distinct keys, sorted, each with the
    recipients that list it (CSR layout: ``members[offsets[i]:offsets[i + 1]]`` for ``keys[i]``).

    Keys in ``0 .. DENSE_MAX - 1`` are also found through a dense table (``int32``, at most
    ``4 * DENSE_MAX`` bytes: 4 MiB), a gather instead of a binary search (the 1M events of the
    generated bench day against its 7,322 ASNs: 66 ms -> 4 ms of CPU); other keys take
    ``searchsorted``.

    Args:
        keys: ``int[M]`` filter values (``int64`` ASNs, ``int32`` country codes), repeats allowed.
        rids: ``int32[M]`` the recipient of each value.
    """

    #: Keys below this are looked up in the dense table (real ASNs are below 2**19 today).
    DENSE_MAX = 1 << 20

    def __init__(self, keys: np.ndarray, rids: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        order = np.lexsort((rids, keys))
        keys, rids = keys[order], np.asarray(rids)[order].astype(np.int32)
        keep = np.ones(len(keys), dtype=bool)
        keep[1:] = (keys[1:] != keys[:-1]) | (rids[1:] != rids[:-1])
        keys, rids = keys[keep], rids[keep]
        self.keys, counts = np.unique(keys, return_counts=True)
        self.offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self.members = rids
        self.lists = _Lists(self.offsets, self.members)
        dense = self.keys[(self.keys >= 0) & (self.keys < self.DENSE_MAX)]
        self._dense = np.full(int(dense.max()) + 1 if len(dense) else 0, -1, dtype=np.int32)
        self._dense[dense] = np.searchsorted(self.keys, dense)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """``int64[K]``: the index into :attr:`keys` of each value of ``keys`` (``int[K]``), -1
        where it is not a key."""
        keys = np.asarray(keys, dtype=np.int64)
        out = np.full(len(keys), -1, dtype=np.int64)
        if len(self.keys) == 0 or len(keys) == 0:
            return out
        nd = len(self._dense)
        near = (keys >= 0) & (keys < nd)
        if near.all():
            return self._dense[keys].astype(np.int64)
        out[near] = self._dense[keys[near]]
        far = np.flatnonzero(~near)
        if len(far):
            pos = np.searchsorted(self.keys, keys[far])
            pos[pos == len(self.keys)] = 0
            out[far] = np.where(self.keys[pos] == keys[far], pos, -1)
        return out


def country_codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """ISO alpha-2 codes as ``int32[N]`` (``26*A + B``, upper-cased); -1 for null or not two letters.

    A value is a code when it is two ASCII letters, in either case.  Read from the string column's
    offsets and bytes (dictionary-encoding the column and mapping the distinct values took 2.8 ms
    of CPU per 200k rows of the bench day, this 1.8 ms).
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    n = len(values)
    out = np.full(n, -1, dtype=np.int32)
    if n == 0 or values.null_count == n:
        return out
    offs = np.frombuffer(values.buffers()[1], dtype=np.int32, count=n + 1, offset=4 * values.offset)
    two = (offs[1:] - offs[:-1]) == 2
    if values.null_count:
        two &= pc.is_valid(values).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(two)
    if len(rows) == 0:
        return out
    raw = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    first = offs[rows]
    a, b = raw[first], raw[first + 1]
    # ASCII letters are exactly the bytes whose lower-case form (| 0x20) is in a..z.
    ok = (((a | 0x20) - 97).astype(np.uint8) < 26) & (((b | 0x20) - 97).astype(np.uint8) < 26)
    code = ((a & 0xDF).astype(np.int32) - 65) * 26 + ((b & 0xDF).astype(np.int32) - 65)
    out[rows[ok]] = code[ok]
    return out


def _cc_int(cc: str) -> int:
    return (ord(cc[0]) - 65) * 26 + (ord(cc[1]) - 65)


class Router:
    """Routing tables for a list of recipients (see the module docstring for the rules).

    Args:
        recipients: the recipients, with verified filters only.

    Attributes:
        recipients: the list, indexable by the ``recipient`` indices of :class:`Assignment`.
    """

    def __init__(self, recipients: list[Recipient]) -> None:
        self.recipients = list(recipients)
        v4s, v4l, v4r, v6s, v6l, v6r = [], [], [], [], [], []
        asn_k, asn_r, cc_k, cc_r = [], [], [], []
        self._domains: dict[str, list[int]] = {}
        self._takers: dict[str, list[int]] = {}  # type name -> recipients that list it
        a4s, a4l, a4r = [], [], []  # arrays of compact network lists (Networks)
        for rid, r in enumerate(self.recipients):
            if isinstance(r.cidrs, Networks):
                # Compact lists: IPv4 as arrays; IPv6 (few) as integers like the others.
                _hi, lo, plen, _ = r.cidrs.arrays(4)
                a4s.append(lo)
                a4l.append(plen.astype(np.uint64))
                a4r.append(np.full(len(lo), rid, dtype=np.int32))
                hi6, lo6, plen6, _ = r.cidrs.arrays(6)
                v6s.extend((int(h) << 64) | int(l) for h, l in zip(hi6.tolist(), lo6.tolist()))
                v6l.extend(plen6.tolist())
                v6r.extend([rid] * len(plen6))
                nets = ()
            else:
                nets = r.cidrs
            # Only the network address and prefix length per CIDR (broadcast_address builds an
            # object per network); the ends are computed vectorized below.
            for net in nets:
                if net.version == 4:
                    v4s.append(int(net.network_address))
                    v4l.append(net.prefixlen)
                    v4r.append(rid)
                else:
                    v6s.append(int(net.network_address))
                    v6l.append(net.prefixlen)
                    v6r.append(rid)
            asn_k.extend(r.asns)
            asn_r.extend([rid] * len(r.asns))
            cc_k.extend(_cc_int(c) for c in r.countries)
            for d in r.domains:
                self._domains.setdefault(d.lower().rstrip("."), []).append(rid)
            cc_r.extend([rid] * len(r.countries))
            for name in r.report_types:
                self._takers.setdefault(name, []).append(rid)
        s4 = np.concatenate([np.array(v4s, dtype=np.uint64)] + a4s)
        l4 = np.concatenate([np.array(v4l, dtype=np.uint64)] + a4l)
        v4r = np.concatenate([np.array(v4r, dtype=np.int32)] + a4r)
        e4 = s4 + (np.uint64(1) << (np.uint64(32) - l4))  # exclusive end
        v6e = [first + (1 << (128 - plen)) for first, plen in zip(v6s, v6l)]
        self._v4 = _Segments(s4, e4, v4r)
        self._v6 = _Segments(_ints_to_s17(v6s), _ints_to_s17(v6e), np.array(v6r, dtype=np.int32))
        self._asn = _KeyIndex(np.array(asn_k, dtype=np.int64), np.array(asn_r, dtype=np.int32))
        self._cc = _KeyIndex(np.array(cc_k, dtype=np.int32), np.array(cc_r, dtype=np.int32))
        self._min_sev = np.array([severity_rank(r.min_severity) for r in self.recipients], dtype=np.int8)
        self._all_types = np.array([not r.report_types for r in self.recipients], dtype=bool)
        self._scoped = [rid for rid, r in enumerate(self.recipients) if r.families or r.tags]
        self._type_masks: dict[str, np.ndarray] = {}
        self._type_thr: dict[str, np.ndarray] = {}

    def prepare(self) -> "Router":
        """Build the IPv4 block table now (:mod:`herald.blocktable`) rather than at the first
        lookup of :data:`BLOCKS_FROM` addresses or more; returns self.  A run calls it before it
        forks its workers, which then share the table."""
        self._v4.blocks  # noqa: B018 - the property builds and keeps the table
        return self

    def _domain_part(self, column: pa.ChunkedArray | pa.Array) -> _Part:
        """Recipients per row of a host-name column (``N`` rows), matching per distinct value."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        enc = pc.dictionary_encode(column.cast(pa.string()))
        values = enc.dictionary.to_pylist()
        hits = [_domain_lookup(self._domains, v) for v in values]
        counts = np.array([len(h) for h in hits] + [0], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        members = np.array([r for h in hits for r in h], dtype=np.int32)
        idx = pc.fill_null(enc.indices, len(values)).to_numpy(zero_copy_only=False).astype(np.int64)
        return starts[idx], counts[idx].astype(np.int32), np.append(members, 0).astype(np.int32), False

    def type_mask(self, rtype: ReportType) -> np.ndarray:
        """``bool[R]``: recipients the router was built with that take report type ``rtype``
        (those with no ``report_types`` and those that list it; computed once per type, from the
        lists gathered at build time instead of a loop over the recipients: 2 ms of CPU per type
        for the bench's 10,000)."""
        mask = self._type_masks.get(rtype.name)
        if mask is None:
            mask = self._all_types.copy()
            mask[self._takers.get(rtype.name, [])] = True
            self._type_masks[rtype.name] = mask
        return mask

    def _thresholds(self, rtype: ReportType) -> np.ndarray:
        """``int8[R]``: the lowest severity rank each recipient the router was built with takes for
        ``rtype`` (127 when it does not take the type at all).  Recipients appended to
        :attr:`recipients` later (automatic abuse contacts) have no filters here: no pairs."""
        thr = self._type_thr.get(rtype.name)
        if thr is None:
            thr = self._type_thr[rtype.name] = np.where(self.type_mask(rtype), self._min_sev,
                                                        np.int8(127)).astype(np.int8)
        return thr

    def route(self, table: pa.Table, rtype: ReportType) -> Assignment:
        """Route the rows of ``table`` (a normalized, enriched table of type ``rtype``).

        Every filter kind gives each row a slice of a recipient list (:data:`_Part`); the slices
        are laid out row after row (:func:`_row_pairs`), filtered by type, severity and operation,
        ordered by recipient with a stable radix sort (``uint16`` recipient numbers; rows stay in
        order within a recipient) and made unique with a neighbour mask.

        Returns:
            :class:`Assignment` for the ``N = table.num_rows`` rows.
        """
        n = table.num_rows
        parts: list[_Part] = []
        addr = rtype.address_column
        if addr and addr in table.column_names and n:
            ips = parse_ips(table.column(addr))
            m4 = ips.version == 4
            if m4.all():
                seg = self._v4.lookup_v4(ips.v4)
            else:
                seg = np.full(n, -1, dtype=np.int64)
                i4 = np.flatnonzero(m4)
                seg[i4] = self._v4.lookup_v4(ips.v4[i4])
            parts.append(self._v4.lists.part(seg))
            i6 = np.flatnonzero(ips.version == 6)
            if len(i6):
                seg = np.full(n, -1, dtype=np.int64)
                seg[i6] = self._v6.lookup_keys(_s16_to_s17(v6_keys(ips.v6_hi[i6], ips.v6_lo[i6])))
                parts.append(self._v6.lists.part(seg))
        asn_col = rtype.asn_column
        if asn_col and asn_col in table.column_names and n and len(self._asn.keys):
            asn = pc.fill_null(table.column(asn_col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            idx = self._asn.find(asn)
            idx[asn <= 0] = -1
            parts.append(self._asn.lists.part(idx))
        geo_col = rtype.geo_column
        if geo_col and geo_col in table.column_names and n and len(self._cc.keys):
            cc = country_codes(table.column(geo_col))
            idx = self._cc.find(cc)
            idx[cc < 0] = -1
            parts.append(self._cc.lists.part(idx))
        if self._domains and n:
            for col in DOMAIN_COLUMNS:
                if col in table.column_names:
                    parts.append(self._domain_part(table.column(col)))
        if not parts:
            return Assignment(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(n, dtype=bool))
        ev, rid = _row_pairs(n, parts)
        # Type and severity: a row reaches a recipient when its rank is at least the recipient's
        # threshold for the type (above every rank when it does not take the type).
        thr = self._thresholds(rtype)
        sev = event_severity(table, rtype)
        ok = None
        if thr.max(initial=0) > sev.min(initial=0):
            ok = sev[ev] >= thr[rid]
        for s in self._scoped:
            sel = rid == s
            if sel.any():
                if ok is None:
                    ok = np.ones(len(rid), dtype=bool)
                ok[sel] &= operation_mask(table, self.recipients[s])[ev[sel]]
        if ok is not None and not ok.all():
            ev, rid = ev[ok], rid[ok]
        # Stable sort by recipient (radix sort for 16-bit keys): rows stay ascending within each
        # recipient, so duplicate pairs are neighbours.
        sort_key = rid.astype(np.uint16) if len(self._min_sev) <= _RADIX_MAX else rid
        order = np.argsort(sort_key, kind="stable")
        ev, rid = ev[order], rid[order]
        keep = np.ones(len(ev), dtype=bool)
        keep[1:] = (ev[1:] != ev[:-1]) | (rid[1:] != rid[:-1])
        if not keep.all():
            ev, rid = ev[keep], rid[keep]
        routed = np.zeros(n, dtype=bool)
        routed[ev] = True
        return Assignment(ev.astype(np.int64), rid, routed)


#: Up to this many recipients, their numbers are sorted as ``uint16`` (NumPy's radix sort: 6.5 ms
#: of CPU for 400k pairs against 22 ms for a sort of ``int64`` keys); above, as ``int32`` (timsort).
_RADIX_MAX = 1 << 16

#: Recipients of each of N rows for one filter kind: ``(start int64[N], count int32[N], members
#: int32[M + 1], single)``: row ``i`` matches ``members[start[i]:start[i] + count[i]]``; every
#: ``start[i]`` indexes ``members`` (the last entry is a spare); ``single``: no count is above 1.
_Part = tuple[np.ndarray, np.ndarray, np.ndarray, bool]


def _row_pairs(n: int, parts: list[_Part]) -> tuple[np.ndarray, np.ndarray]:
    """All (row, recipient) pairs of the parts, row after row (duplicates kept).

    Args:
        n: number of rows N.
        parts: :data:`_Part` per filter kind.

    Returns:
        ``(event int32[P] (int64 from 2**31 rows), recipient int32[P])``, ``event`` ascending (each
        row's pairs in part order).  Every pair is written to its place directly (no sort).
    """
    total = parts[0][1].copy()
    for part in parts[1:]:
        total += part[1]
    ends = np.cumsum(total, dtype=np.int64)
    size = int(ends[-1]) if n else 0
    off = ends - total
    # One spare slot at the end takes the writes of rows without a match, so that rows with zero
    # or one recipient (almost all) are written without selecting them first.
    rid = np.empty(size + 1, dtype=np.int32)
    for start, count, members, single in parts:
        one = count
        if not single:
            many = count > 1
            if many.any():
                idx = np.flatnonzero(many)
                c, o, s = count[idx], off[idx], start[idx]
                k = np.arange(int(c.sum())) - np.repeat(np.cumsum(c, dtype=np.int64) - c, c)
                rid[np.repeat(o, c) + k] = members[np.repeat(s, c) + k]
                one = np.where(many, 0, count)
        rid[np.where(one > 0, off, size)] = members[start]
        off += count
    rows = np.arange(n, dtype=np.int32 if n < 1 << 31 else np.int64)
    return np.repeat(rows, total), rid[:size]


def _domain_lookup(domains: dict[str, list[int]], name: str | None) -> list[int]:
    """Recipients whose domain is ``name`` or a parent of it (``a.b.example`` -> ``b.example``)."""
    if not name:
        return []
    labels = name.strip().lower().rstrip(".").split(".")
    out: list[int] = []
    for i in range(len(labels)):
        out.extend(domains.get(".".join(labels[i:]), ()))
    return out


def event_severity(table: pa.Table, rtype: ReportType) -> np.ndarray:
    """``int8[N]`` severity rank per row: the ``severity`` column where it holds a level of
    :data:`SEVERITY_LEVELS`, else the type's default (``severity.md``)."""
    n = table.num_rows
    default = severity_rank(rtype.default_severity)
    if "severity" not in table.column_names:
        return np.full(n, default, dtype=np.int8)
    col = table.column("severity")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    # Per distinct value (a handful), not per row.
    enc = pc.dictionary_encode(col.cast(pa.string()))
    ranks = {level: rank for rank, level in enumerate(SEVERITY_LEVELS)}
    lut = np.array([ranks.get((v or "").lower(), default) for v in enc.dictionary.to_pylist()]
                   + [default], dtype=np.int8)
    return lut[pc.fill_null(enc.indices, len(lut) - 1).to_numpy(zero_copy_only=False)]


def operation_mask(table: pa.Table, recipient: Recipient) -> np.ndarray:
    """``bool[N]``: rows that belong to the recipient's operation (family/infection in
    ``families``, or a ``tag`` item — tags are ``;``/``,``-separated — in ``tags``)."""
    n = table.num_rows
    mask = np.zeros(n, dtype=bool)
    fams = pa.array(recipient.families, pa.string())
    for c in ("family", "infection"):
        if recipient.families and c in table.column_names:
            v = pc.utf8_lower(pc.fill_null(table.column(c).cast(pa.string()), ""))
            mask |= pc.is_in(v, value_set=fams).to_numpy(zero_copy_only=False)
    if recipient.tags and "tag" in table.column_names:
        v = pc.utf8_lower(pc.fill_null(table.column("tag").cast(pa.string()), ""))
        items = pc.split_pattern_regex(v, r"[;,]")
        flat = pc.list_flatten(items)
        parent = pc.list_parent_indices(items).to_numpy()
        hit = pc.is_in(pc.utf8_trim_whitespace(flat), value_set=pa.array(recipient.tags)).to_numpy(
            zero_copy_only=False)
        mask[parent[hit]] = True
    return mask


def _ints_to_s17(values: list[int]) -> np.ndarray:
    """17-byte big-endian keys: one byte more than an IPv6 address, so that the exclusive end of a
    range reaching ``ffff:...:ffff`` (2**128) fits."""
    return np.array([v.to_bytes(17, "big") for v in values], dtype="S17")


def _s16_to_s17(keys: np.ndarray) -> np.ndarray:
    """Widen 16-byte address keys to the 17-byte form of :func:`_ints_to_s17`."""
    out = np.zeros((len(keys), 17), dtype=np.uint8)
    out[:, 1:] = keys.view(np.uint8).reshape(-1, 16)
    return out.view("S17").ravel()

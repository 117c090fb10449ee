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
  cover it (CSR layout).  One ``searchsorted`` of the sorted event addresses finds every event's
  segment.
- ASNs and countries become sorted ``(key, recipient)`` arrays, looked up with ``searchsorted``.
- Host names are dictionary-encoded; only the distinct names (far fewer than events) are matched
  against the domains, suffix by suffix, in Python.
- The (event, recipient) pairs of the three are concatenated, made unique with a sort and a
  neighbour mask, and filtered by type, severity and operation masks.

Build a :class:`Router` once per run (cost grows with the number of CIDRs: about a second per
million) and call :meth:`Router.route` per table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.constituency.networks import Networks
from herald.constituency.recipients import Recipient
from herald.ipaddr import parse_ips, v6_keys
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


class _Segments:
    """Elementary segments of a set of (possibly overlapping) ranges, with covering recipients."""

    def __init__(self, starts: np.ndarray, ends_excl: np.ndarray, rids: np.ndarray) -> None:
        # starts/ends_excl: sortable keys (uint64 for IPv4, S16 for IPv6); ranges are [start, end).
        if len(starts) == 0:
            self.bounds = starts[:0]
            self.offsets = np.zeros(1, dtype=np.int64)
            self.members = np.zeros(0, dtype=np.int32)
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
        self.bounds = bounds
        self.offsets = np.concatenate(([0], np.cumsum(np.bincount(seg, minlength=len(bounds)))))
        self.members = rid.astype(np.int32)

    def lookup(self, keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, recipient) pairs for addresses ``keys`` (rows gives each key's row index)."""
        if len(self.bounds) == 0 or len(keys) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        order = np.argsort(keys, kind="stable")  # sorted queries: far faster searchsorted
        seg = np.searchsorted(self.bounds, keys[order], "right") - 1
        ok = seg >= 0
        seg = np.where(ok, seg, 0)
        start = self.offsets[seg]
        counts = np.where(ok, self.offsets[seg + 1] - start, 0)
        return _expand(rows[order], start, counts, self.members)


def _expand(rows: np.ndarray, start: np.ndarray, counts: np.ndarray, members: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (rows[i], members[start[i] + k]) for k < counts[i], without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    ev = np.repeat(rows, counts)
    pos = np.repeat(start - (np.cumsum(counts) - counts), counts) + np.arange(total)
    return ev.astype(np.int64), members[pos]


class _KeyIndex:
    """Exact-match filters (ASNs, country codes): the distinct keys, sorted, each with the
    recipients that list it (CSR layout: ``members[offsets[i]:offsets[i + 1]]`` for ``keys[i]``).

    Args:
        keys: ``int[M]`` filter values (``int64`` ASNs, ``int32`` country codes), repeats allowed.
        rids: ``int32[M]`` the recipient of each value.
    """

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

    def lookup(self, keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, recipient) pairs for the values ``keys`` (``int[K]``) of rows ``rows``."""
        if len(self.keys) == 0 or len(keys) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        pos = np.searchsorted(self.keys, keys)
        pos[pos == len(self.keys)] = 0
        hit = self.keys[pos] == keys
        start = self.offsets[pos]
        counts = np.where(hit, self.offsets[pos + 1] - start, 0)
        return _expand(rows, start, counts, self.members)


def country_codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """ISO alpha-2 codes as ``int32[N]`` (``26*A + B``, upper-cased); -1 for null or not two letters.

    Dictionary-encodes the column, so the Python work is per distinct value (a few hundred).
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    enc = pc.dictionary_encode(values.cast(pa.string()))
    lut = np.array([_cc_int(v.upper()) if v and len(v) == 2 and v.isascii() and v.isalpha() else -1
                    for v in enc.dictionary.to_pylist()] + [-1], dtype=np.int32)
    idx = pc.fill_null(enc.indices, len(lut) - 1).to_numpy(zero_copy_only=False)
    return lut[idx]


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
        self._scoped = [rid for rid, r in enumerate(self.recipients) if r.families or r.tags]
        self._type_masks: dict[str, np.ndarray] = {}

    def _domain_pairs(self, column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(row, recipient) pairs of a host-name column, matching per distinct value."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        enc = pc.dictionary_encode(column.cast(pa.string()))
        values = enc.dictionary.to_pylist()
        hits = [_domain_lookup(self._domains, v) for v in values]
        counts = np.array([len(h) for h in hits] + [0], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        members = np.array([r for h in hits for r in h], dtype=np.int32)
        idx = pc.fill_null(enc.indices, len(values)).to_numpy(zero_copy_only=False).astype(np.int64)
        rows = np.arange(len(idx), dtype=np.int64)
        return _expand(rows, starts[idx], counts[idx], members)

    def type_mask(self, rtype: ReportType) -> np.ndarray:
        """``bool[R]``: recipients that take report type ``rtype`` (computed once per type)."""
        mask = self._type_masks.get(rtype.name)
        if mask is None:
            mask = self._type_masks[rtype.name] = np.array(
                [not r.report_types or rtype.name in r.report_types for r in self.recipients], dtype=bool)
        return mask

    def route(self, table: pa.Table, rtype: ReportType) -> Assignment:
        """Route the rows of ``table`` (a normalized, enriched table of type ``rtype``).

        Returns:
            :class:`Assignment` for the ``N = table.num_rows`` rows.
        """
        n = table.num_rows
        rows = np.arange(n, dtype=np.int64)
        parts_e, parts_r = [], []
        addr = rtype.address_column
        if addr and addr in table.column_names and n:
            ips = parse_ips(table.column(addr))
            m4 = ips.version == 4
            e, r = self._v4.lookup(ips.v4[m4].astype(np.uint64), rows[m4])
            parts_e.append(e)
            parts_r.append(r)
            m6 = ips.version == 6
            if m6.any():
                e, r = self._v6.lookup(_s16_to_s17(v6_keys(ips.v6_hi[m6], ips.v6_lo[m6])), rows[m6])
                parts_e.append(e)
                parts_r.append(r)
        asn_col = rtype.asn_column
        if asn_col and asn_col in table.column_names and n:
            asn = pc.fill_null(table.column(asn_col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            ok = asn > 0
            e, r = self._asn.lookup(asn[ok], rows[ok])
            parts_e.append(e)
            parts_r.append(r)
        geo_col = rtype.geo_column
        if geo_col and geo_col in table.column_names and n:
            cc = country_codes(table.column(geo_col))
            ok = cc >= 0
            e, r = self._cc.lookup(cc[ok], rows[ok])
            parts_e.append(e)
            parts_r.append(r)
        if self._domains and n:
            for col in DOMAIN_COLUMNS:
                if col in table.column_names:
                    e, r = self._domain_pairs(table.column(col))
                    parts_e.append(e)
                    parts_r.append(r)
        if not parts_e:
            return Assignment(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(n, dtype=bool))
        ev = np.concatenate(parts_e)
        rid = np.concatenate(parts_r).astype(np.int64)
        # Unique pairs by sort + neighbour mask (docs/architecture.md: 20x faster than np.unique).
        key = rid * max(n, 1) + ev
        key.sort()
        keep = np.ones(len(key), dtype=bool)
        keep[1:] = key[1:] != key[:-1]
        key = key[keep]
        rid = key // max(n, 1)
        ev = key - rid * max(n, 1)
        ok = self.type_mask(rtype)[rid]
        sev = event_severity(table, rtype)
        ok &= sev[ev] >= self._min_sev[rid]
        for s in self._scoped:
            sel = rid == s
            if sel.any():
                ok[sel] &= operation_mask(table, self.recipients[s])[ev[sel]]
        ev, rid = ev[ok], rid[ok]
        routed = np.zeros(n, dtype=bool)
        routed[ev] = True
        return Assignment(ev, rid.astype(np.int32), routed)


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

"""Vectorized abuse-contact lookup: addresses (and ASNs) in, abuse mailboxes and their source out.

Rules, in order (RIPE Database documentation, "Abuse-c Information"; see docs/abuse-contacts.md):

1. The most specific ``inetnum``/``inet6num`` holding the address that has an answer: its own
   ``abuse-c`` role's ``abuse-mailbox``, else its ``org``'s ``abuse-c`` role's ``abuse-mailbox``.
   When the most specific object has no answer, its closest less specific parent with one
   answers (RIPE: ``abuse-c`` is inherited from the parent).
2. Else, when the event's ASN is given (and the address is valid), the ``aut-num`` of that ASN,
   resolved the same way.

The answer keeps the object it came from (``inetnum 193.0.0.0 - 193.0.7.255`` or
``aut-num AS3333``) and the role handle (``AB123-RIPE``).  Per event the work is two
:meth:`herald.enrich.iprange.RangeTable.lookup` calls, one ``searchsorted`` over the sorted ASNs
and Arrow ``take``; object texts are formatted once per distinct object found, not per event.
"""

from __future__ import annotations

import ipaddress
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.contacts.store import ContactData
from herald.ipaddr import ParsedIPs, parse_ips

#: Columns of the result of :func:`lookup_contacts`.
RESULT_COLUMNS = ("mailbox", "source", "role", "via", "network", "netname", "org")


def object_text(family: int, first: int, last: int) -> str:
    """RPSL key of a network object: ``inetnum a - b`` (IPv4) or ``inet6num prefix`` (IPv6; a
    range that is not one prefix is written ``a - b``)."""
    if family == 4:
        return f"inetnum {ipaddress.IPv4Address(first)} - {ipaddress.IPv4Address(last)}"
    nets = list(ipaddress.summarize_address_range(ipaddress.IPv6Address(first), ipaddress.IPv6Address(last)))
    if len(nets) == 1:
        return f"inet6num {nets[0]}"
    return f"inet6num {ipaddress.IPv6Address(first)} - {ipaddress.IPv6Address(last)}"


def _v4_text(x: np.ndarray) -> pa.Array:
    """Dotted-quad text of ``uint64`` IPv4 values, vectorized (Arrow string kernels)."""
    octets = [pa.array(((x >> np.uint64(sh)) & np.uint64(255)).astype(np.uint8)).cast(pa.string())
              for sh in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


def _texts(data: ContactData, rows: np.ndarray) -> pa.Array:
    """``object_text`` of network rows (``int64[N]``, -1 gives null), computed once per distinct
    row: vectorized for IPv4, :func:`object_text` per distinct IPv6 object."""
    valid = rows >= 0
    if not valid.any():
        return pa.nulls(len(rows), pa.string())
    uniq, inv = np.unique(rows[valid], return_inverse=True)
    t = data.networks.select(["family", "first_hi", "first_lo", "last_hi", "last_lo"]).take(pa.array(uniq))
    fam = t.column("family").to_numpy()
    first_lo = t.column("first_lo").to_numpy()
    last_lo = t.column("last_lo").to_numpy()
    texts = pc.binary_join_element_wise("inetnum ", _v4_text(first_lo), " - ", _v4_text(last_lo), "")
    i6 = np.flatnonzero(fam == 6)
    if len(i6):
        fh = t.column("first_hi").to_numpy()
        lh = t.column("last_hi").to_numpy()
        v6 = [object_text(6, (int(fh[i]) << 64) | int(first_lo[i]), (int(lh[i]) << 64) | int(last_lo[i]))
              for i in i6]
        mask = np.zeros(len(fam), dtype=bool)
        mask[i6] = True
        full6 = np.zeros(len(fam), dtype=np.int64)
        full6[i6] = np.arange(len(i6))
        texts = pc.if_else(pa.array(mask), pa.array(v6, pa.string()).take(pa.array(full6)) if v6 else texts,
                           texts)
    full = np.full(len(rows), -1, dtype=np.int64)
    full[valid] = inv
    return texts.take(pa.array(full, mask=~valid))


def _take(column, rows: np.ndarray) -> pa.Array:
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return col.take(pa.array(rows, pa.int64(), mask=rows < 0))


def _asn_array(asn, n: int) -> np.ndarray:
    """ASNs as ``int64[N]`` with -1 for null/missing."""
    if isinstance(asn, (pa.Array, pa.ChunkedArray)):
        return pc.fill_null(pc.cast(asn, pa.int64()), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    a = np.asarray(asn)
    if a.dtype == object:
        a = np.array([-1 if v is None else int(v) for v in a], dtype=np.int64)
    if len(a) != n:
        raise ValueError(f"lookup_contacts: {len(a)} ASNs for {n} addresses")
    return a.astype(np.int64)


def lookup_contacts(data: ContactData, ips: ParsedIPs | pa.Array | pa.ChunkedArray | Sequence[str],
                    asn: pa.Array | np.ndarray | Sequence[int | None] | None = None) -> pa.Table:
    """Abuse mailbox of each address.

    Args:
        data: from :func:`herald.contacts.store.load_contacts`.
        ips: N addresses: parsed (:func:`herald.ipaddr.parse_ips`), or text (Arrow string array or
            a sequence of ``str``).
        asn: optional N ASNs (integers; null, None or -1 for unknown), for the ``aut-num``
            fallback.

    Returns:
        Arrow table of N rows, all ``string`` columns (nulls where nothing is known):
        ``mailbox`` (comma-separated addresses), ``source`` (the object the answer came from),
        ``role`` (the role handle), ``via`` (``abuse-c`` or ``org``: how the source object led to
        the role), ``network`` (the most specific network object, with or without an answer),
        ``netname`` and ``org`` of that network.

    Raises:
        ValueError: ``asn`` does not have N values.
    """
    if not isinstance(ips, ParsedIPs):
        if not isinstance(ips, (pa.Array, pa.ChunkedArray)):
            ips = pa.array(list(ips), pa.string())
        ips = parse_ips(ips)
    n = len(ips)
    net_row = data.net_table.lookup(ips)
    ans_row = data.answer_table.lookup(ips)
    nets = data.networks
    mailbox = _take(nets.column("mailbox"), ans_row)
    role = _take(nets.column("role"), ans_row)
    via = _take(nets.column("via"), ans_row)
    source = _texts(data, ans_row)
    if asn is not None and data.autnums.num_rows:
        a = _asn_array(asn, n)
        keys = data.autnums.column("asn").to_numpy().astype(np.int64)
        pos = np.searchsorted(keys, a)
        posc = np.minimum(pos, len(keys) - 1)
        a_has = pc.is_valid(data.autnums.column("mailbox")).to_numpy(zero_copy_only=False).astype(bool)
        hit = (ans_row < 0) & (ips.version > 0) & (a >= 0) & (keys[posc] == a) & a_has[posc]
        if hit.any():
            arow = np.where(hit, posc, -1)
            mask = pa.array(hit)
            mailbox = pc.if_else(mask, _take(data.autnums.column("mailbox"), arow), mailbox)
            role = pc.if_else(mask, _take(data.autnums.column("role"), arow), role)
            via = pc.if_else(mask, _take(data.autnums.column("via"), arow), via)
            src = pc.binary_join_element_wise("aut-num AS", pc.cast(pa.array(a), pa.string()), "")
            source = pc.if_else(mask, src, source)
    return pa.table({
        "mailbox": mailbox, "source": source, "role": role, "via": via,
        "network": _texts(data, net_row),
        "netname": _take(nets.column("netname"), net_row),
        "org": _take(nets.column("org"), net_row),
    })

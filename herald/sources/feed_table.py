"""The shared table builder of the feed parsers (abuse.ch, Spamhaus, Team Cymru, CTIP, block lists,
IntelMQ, generic CSV): string columns in, a typed
:class:`~herald.sources.shadowserver_csv.ParsedFile` out.

Every feed parser works in two steps:

1. format-specific: the file's records become *string columns* (``pa.string`` arrays, ``""`` or null
   for an empty value), plus the 1-based physical line number and raw text of each record (read
   with :mod:`herald.sources.feed_files`, :mod:`herald.sources.text_lists`,
   :mod:`herald.sources.json_records`; times converted with :mod:`herald.sources.timestamps`);
2. :func:`finish`: the address column is checked (a valid IP, or a CIDR where the type holds
   networks), format-specific checks are applied, and
   :func:`herald.sources.shadowserver_csv.normalize_batch` types the rest (timestamp, integers,
   canonical IPs).  Bad records go to the :class:`Quarantine` with file, line, field and reason, so
   ``rows_in == table.num_rows + len(quarantine)`` always holds.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.ipaddr import parse_ips
from herald.schema.registry import Registry, ReportType, default_registry
from herald.sources.shadowserver_csv import ParsedFile, Quarantine, normalize_batch
from herald.sources.timestamps import impossible_dates


#: How the address column (``ip`` / ``src_ip``) of a type is checked by :func:`finish`.
#: ``"ip"``: a valid IPv4/IPv6 address is required; ``"network"``: an address or a CIDR network is
#: required (block lists); ``"optional"``: may be empty (Spamhaus ASN-DROP has no address at all),
#: but when present it must be an address or a CIDR.
ADDRESS_MODES = ("ip", "network", "optional")


#: Values that feeds use for "no value" in text formats (Spamhaus CERT ``-`` and ``?``).
DASH_NULLS = frozenset({"-", "?"})


_HOST_RE = r"^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$"


def get_type(name: str, registry: Registry | None, path: str) -> ReportType:
    """The registered type ``name`` (from ``registry`` or the default one).

    Raises:
        UnknownReportType: naming ``path``.
    """
    return (registry or default_registry()).get(name, source=path)


@dataclass
class Check:
    """A format-specific rejection: rows where ``mask`` is true are quarantined.

    Attributes:
        mask: ``bool[N]`` over the records given to :func:`finish`.
        field: the column or source field blamed.
        reason: the quarantine reason.
        values: the offending values (``str`` array of length N), shown in the quarantine.
    """

    mask: np.ndarray
    field: str
    reason: str
    values: pa.Array | None = None


def is_valid_hostname(col: pa.Array) -> np.ndarray:
    """``bool[N]``: the text is a DNS name (RFC 1123 labels, underscores tolerated, optional final dot).
    Empty values count as valid (they are nulls)."""
    s = pc.fill_null(col, "")
    ok = pc.match_substring_regex(s, _HOST_RE).to_numpy(zero_copy_only=False)
    ok &= pc.less_equal(pc.utf8_length(s), 254).to_numpy(zero_copy_only=False)
    return ok | pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)


def canonical_networks(values: list[str]) -> dict[str, str]:
    """``value -> canonical CIDR`` for each value that is a CIDR network (``/`` and a prefix length).

    Host bits are cleared (``1.1.1.1/24`` -> ``1.1.1.0/24``), as IntelMQ's ``IPNetwork`` type does
    (``ipaddress.ip_network(value, strict=False)``); IPv6 is written as RFC 5952.  Values that are
    not networks are absent from the result.
    """
    out = {}
    for v in values:
        if "/" not in v:
            continue
        try:
            out[v] = str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            pass
    return out


def finish(path: str, rtype: ReportType, cols: dict[str, pa.Array], lines: np.ndarray,
           raws: Sequence[str], quarantine: Quarantine, *, address: str = "ip",
           checks: Iterable[Check] = (), extra_cols: Sequence[str] = (), rows_in: int | None = None,
           report_date: str | None = None, header: list[str] | None = None) -> ParsedFile:
    """Check and type the string columns of one file's records into a :class:`ParsedFile`.

    Args:
        path: the input file (for the quarantine).
        rtype: the report type.
        cols: column name -> ``string`` array of length N (``""``/null = empty).  Columns of the type
            that are absent are null; ``extra_cols`` must be present and stay strings.
        lines: ``int64[N]`` 1-based physical line of each record; ``raws``: each record's text.
        quarantine: receives the bad records (it may already hold records rejected while reading,
            for example invalid JSON lines).
        address: one of :data:`ADDRESS_MODES`, for ``rtype.address_column``.
        checks: format-specific rejections, applied first (first problem per record wins).
        rows_in: data records in the file; default ``N + len(quarantine)`` (records already rejected
            while reading plus the ``N`` given here).
        report_date, header: copied into the result.

    Returns:
        :class:`ParsedFile`: ``table`` has exactly ``rtype.arrow_schema`` then ``extra_cols``
        (strings), one row per good record in file order; ``rows_in == table.num_rows +
        len(quarantine)``.
    """
    if address not in ADDRESS_MODES:
        raise ValueError(f"address must be one of {ADDRESS_MODES}")
    n = len(lines)
    if rows_in is None:
        rows_in = n + len(quarantine)
    strs: dict[str, pa.Array] = {}
    for name, arr in cols.items():
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if not isinstance(arr, pa.Array):
            arr = pa.array(arr, pa.string())
        if arr.type != pa.string():
            arr = pc.cast(arr, pa.string())
        if len(arr) != n:
            raise ValueError(f"column {name!r} has {len(arr)} values, expected {n}")
        strs[name] = pc.fill_null(arr, "")

    bad = np.zeros(n, dtype=bool)

    def flag(mask: np.ndarray, fld: str, reason: str, values: pa.Array | None) -> None:
        new = np.flatnonzero(mask & ~bad)
        for i in new:
            v = values[int(i)].as_py() if values is not None else None
            quarantine.add(int(lines[i]), fld, reason, v, raws[i])
        bad[:] |= mask

    for chk in checks:
        flag(np.asarray(chk.mask, dtype=bool), chk.field, chk.reason, chk.values)
    if "timestamp" in strs:
        flag(impossible_dates(strs["timestamp"]), "timestamp", "not a timestamp (no such date)",
             strs["timestamp"])

    addr = rtype.address_column
    if addr is not None:
        col = strs.get(addr, pa.array([""] * n, pa.string()))
        strs[addr] = pc.utf8_trim_whitespace(col)
        col = strs[addr]
        parsed = parse_ips(col)
        empty = parsed.version == 0
        invalid = parsed.version < 0
        if address in ("network", "optional") and invalid.any():
            # Networks are checked once per distinct value (a DROP list is all networks).
            cand = sorted(set(col.filter(pa.array(invalid)).to_pylist()))
            canon = canonical_networks(cand)
            good_net = pc.is_in(col, value_set=pa.array(list(canon), pa.string())).to_numpy(zero_copy_only=False)
            invalid &= ~good_net
            if any(k != v for k, v in canon.items()):
                strs[addr] = col = pa.array([canon.get(v, v) for v in col.to_pylist()], pa.string())
        if address != "optional":
            flag(empty, addr, "missing IP address", col)
        what = "an IP address" if address == "ip" else "an IP address or CIDR network"
        flag(invalid, addr, f"not {what}", col)

    keep = ~bad
    names = list(strs)
    batch = pa.RecordBatch.from_arrays([strs[c] for c in names], names=names) if names else \
        pa.RecordBatch.from_pydict({"timestamp": pa.array([""] * n, pa.string())})
    if bad.any():
        batch = batch.filter(pa.array(keep))
    kept_idx = np.flatnonzero(keep)
    typed, problems = normalize_batch(batch, rtype, list(extra_cols))
    for row, fld, reason, value in problems:
        i = int(kept_idx[row])
        quarantine.add(int(lines[i]), fld, reason, value, raws[i])
    schema = pa.schema(list(rtype.arrow_schema) + [pa.field(c, pa.string()) for c in extra_cols])
    table = pa.Table.from_batches([typed]).select(schema.names).cast(schema) if typed.num_rows else \
        schema.empty_table()
    return ParsedFile(path=path, report_type=rtype, report_date=report_date, table=table,
                      quarantine=quarantine, rows_in=rows_in, header=header or [])


def null_dashes(col: pa.Array, nulls: Iterable[str] = DASH_NULLS) -> pa.Array:
    """``col`` with the placeholder values ``nulls`` (``-``, ``?``) replaced by ``""``."""
    col = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
    is_null = pc.is_in(col, value_set=pa.array(sorted(nulls), pa.string()))
    return pc.if_else(is_null, "", col)


def const(value: str | None, n: int) -> pa.Array:
    """A string column of ``n`` copies of ``value`` (``None`` -> empty)."""
    return pa.repeat(pa.scalar(value or "", pa.string()), n)


def get(cols: dict[str, pa.Array], key: str, n: int) -> pa.Array:
    """``cols[key]``, or an all-empty string column of length ``n`` when the key is absent."""
    col = cols.get(key)
    return col if col is not None else const("", n)

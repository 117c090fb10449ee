"""Turris Sentinel greylist (CZ.NIC) into ``herald_greylist``.

Source: https://view.sentinel.turris.cz/greylist-data/ (``greylist-latest.csv``; terms at
``greylist-data/LICENSE.txt``).  IntelMQ parser: ``intelmq.bots.parsers.turris.parser``
(``tests/sources/test_feed_conformance_new.py`` compares Herald with it field by field).

Layout: ``#`` comment lines, the header ``Address,Tags``, then one address per line with its tags,
comma-separated and quoted when more than one (``103.155.105.100,"ftp,http"``).  Files of 2019 had
the header ``Address,Country,Tags,ASN`` (country and ASN are then kept as geo and asn).  The file
has no times.

Mapping, one row per address *and tag* (as IntelMQ: each tag is a different observation):
ip <- Address, tag <- the tag; for ``ftp``, ``http``, ``smtp``, ``telnet``: category =
``brute-force``, protocol = ``tcp``, application <- the tag, dst_port = 21, 80, (none for smtp: 25 or
587), 23; for ``port_scan``: category = ``scanner``; other tags (``haas``, ``haas_logged``, ...:
CZ.NIC's SSH honeypot) keep only ip and tag, category empty (IntelMQ drops them; Herald keeps every
observation).  An address without tags gives one row with an empty tag.  source = ``turris``.
timestamp <- the ``observed_at`` option, else the file's modification time (UTC).

``rows_in`` counts these (address, tag) rows; a bad address quarantines each of its rows with the
line number.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_greylist"

#: Tags of brute-force attempts -> destination port (IntelMQ's table; smtp has none).
BRUTE_FORCE_PORTS = {"ftp": "21", "telnet": "23", "http": "80", "smtp": ""}


#: Header names (lower case) -> column.
COLUMNS = {"address": "ip", "tags": "tags", "country": "geo", "asn": "asn"}


def _header(line: str) -> list[str] | None:
    """The lower-case names of a header line that starts with ``Address`` and has ``Tags`` and
    only known names (:data:`COLUMNS`); else ``None``."""
    names = [h.strip().strip('"').strip().lower() for h in line.split(",")]
    ok = names[:1] == ["address"] and "tags" in names and set(names) <= set(COLUMNS)
    return names if ok and len(set(names)) == len(names) else None


def looks_like(head: str) -> bool:
    """Whether the first non-comment line of ``head`` is the header ``Address,Tags`` (or the 2019
    ``Address,Country,Tags,ASN``)."""
    rows = text_lists.data_lines(head.splitlines()[:50])
    return bool(rows) and _header(rows[0][1]) is not None


def parse(path: str, *, registry: Registry | None = None, observed_at=None, **_opts) -> ParsedFile:
    """Parse a Turris greylist file (see the module docstring).

    Returns:
        :class:`ParsedFile` of ``herald_greylist``, one row per (address, tag).

    Raises:
        InputError: unreadable or empty file, no ``Address,Tags`` header (line of the first data
            line), a bad ``observed_at``.
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    lines = feed_files.read_lines(path)
    rows = text_lists.data_lines(lines)
    names = _header(rows[0][1]) if rows else None
    if names is None:
        raise InputError("expected the header 'Address,Tags' (or 'Address,Country,Tags,ASN')", path,
                         rows[0][0] if rows else 1)
    header = [h.strip().strip('"') for h in rows.pop(0)[1].split(",")]
    q = Quarantine(path)
    table, raws = text_lists.read_delimited(path, rows, names, q)
    n_in = table.num_rows
    geo = table.column("country").to_pylist() if "country" in names else [""] * n_in
    asn = table.column("asn").to_pylist() if "asn" in names else [""] * n_in
    stamp = timestamps.observed_text(observed_at) if observed_at is not None else feed_files.file_mtime_utc(path)
    cols = {c: [] for c in ("ip", "geo", "asn", "tag", "category", "protocol", "application", "dst_port")}
    out_lines, out_raws = [], []
    for no, raw, ip, tags, cc, as_ in zip(table.column(text_lists.LINE_COL).to_pylist(), raws,
                                         table.column("address").to_pylist(), table.column("tags").to_pylist(),
                                         geo, asn):
        for tag in [t.strip() for t in tags.split(",")] if tags.strip() else [""]:
            brute = tag in BRUTE_FORCE_PORTS
            for c, v in (("ip", ip), ("geo", cc.strip().upper()), ("asn", as_.strip()), ("tag", tag),
                         ("category", "brute-force" if brute else "scanner" if tag == "port_scan" else ""),
                         ("protocol", "tcp" if brute else ""), ("application", tag if brute else ""),
                         ("dst_port", BRUTE_FORCE_PORTS.get(tag, ""))):
                cols[c].append(v)
            out_lines.append(no)
            out_raws.append(raw)
    n = len(out_lines)
    arrays = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    arrays["timestamp"] = feed_table.const(stamp, n)
    arrays["source"] = feed_table.const("turris", n)
    return feed_table.finish(path, rtype, arrays, np.array(out_lines, dtype=np.int64), out_raws, q,
                             header=header)

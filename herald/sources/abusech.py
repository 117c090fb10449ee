"""abuse.ch Feodo Tracker botnet C2 IP block list, CSV and JSON, into ``herald_c2_server``.

Source: https://feodotracker.abuse.ch/blocklist/ (``ipblocklist.csv``, ``ipblocklist.json``; the
``_recommended`` variants have the same format).

- CSV: ``#`` comment banner, then a quoted header
  ``"first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"`` and one row per C2,
  then ``# END <n> entries`` (checked: a different number of data lines is an ``InputError``, the
  sign of a damaged download).  Older files (2019-2021) named the columns ``Firstseen,DstIP,DstPort,
  LastOnline,Malware``; both are accepted, case-insensitively.
- HTML (the "Browse" page, https://feodotracker.abuse.ch/browse/, saved): the table
  ``botnet_c2s`` with columns ``Firstseen (UTC)``, ``Host``, ``Malware``, ``Status``,
  ``Network (ASN)`` (``AS199883 ARUBACLOUDLTD-ASN``) and ``Country``; read with
  :mod:`html.parser` (the page is small).  ``first_seen`` is then also the event time (the page has
  no last-online date).
- JSON: an array of objects with ``ip_address``, ``port``, ``status``, ``hostname``, ``as_number``,
  ``as_name``, ``country``, ``first_seen``, ``last_online``, ``malware``; any key may be absent or null
  (the sample lacks ``first_seen`` for one entry).

Mapping (``herald_c2_server``): ip <- dst_ip/ip_address, port <- dst_port/port, status <- c2_status/
status, family <- malware, first_seen <- first_seen(_utc) (text as given, UTC), last_seen <-
last_online (a date), hostname, asn <- as_number, as_name, geo <- country, source = ``feodotracker``.

``timestamp`` is the latest moment the C2 is known to have been active:
``max(first_seen, last_online 00:00:00)`` (UTC).  ``first_seen`` alone would file a C2 that is still
online under the day it was first listed; ``last_online`` alone, a date, would put a C2 first seen
today before its own first sighting.  Re-reading the same list gives the same events, so daily
snapshots deduplicate.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, json_records, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_c2_server"

#: Feodo column or key (lower case) -> Herald column.
ALIASES = {
    "first_seen_utc": "first_seen", "firstseen": "first_seen", "first_seen": "first_seen",
    "dst_ip": "ip", "dstip": "ip", "ip_address": "ip",
    "dst_port": "port", "dstport": "port", "port": "port",
    "c2_status": "status", "status": "status",
    "last_online": "last_seen", "lastonline": "last_seen",
    "malware": "family", "hostname": "hostname",
    "as_number": "asn", "as_name": "as_name", "country": "geo",
}

_TS = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"


def parse(path: str, *, registry: Registry | None = None, fmt: str | None = None, **_opts) -> ParsedFile:
    """Parse a Feodo Tracker IP block list (CSV or JSON, told apart by the first non-blank byte
    unless ``fmt`` is ``"csv"`` or ``"json"``).

    Returns:
        :class:`ParsedFile` of ``herald_c2_server`` (see the module docstring for the mapping).

    Raises:
        InputError: unreadable or empty file, invalid/truncated JSON (with line), a CSV without an IP
            column (line of the header, field ``dst_ip``), a file whose first data line has fewer than
            three comma-separated fields (abuse.ch's legacy plain domain and IP lists).
    """
    path = str(path)
    data = feed_files.read_bytes(path)
    if fmt is None:
        head = data.lstrip()[:1]
        fmt = "json" if head == b"[" else "html" if head == b"<" else "csv"
    if fmt == "html":
        return parse_html(path, registry=registry, _data=data)
    if fmt == "json":
        return parse_json(path, registry=registry, _data=data)
    return parse_csv(path, registry=registry, _data=data)


def parse_csv(path: str, *, registry: Registry | None = None, _data: bytes | None = None) -> ParsedFile:
    """Parse the CSV block list (see :func:`parse`)."""
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    data = _data if _data is not None else feed_files.read_bytes(path)
    lines = data.decode("utf-8-sig", errors="replace").splitlines()
    rows = text_lists.data_lines(lines)
    q = Quarantine(path)
    header_line, header = None, None
    if rows and rows[0][1].count(",") < 2:
        # A bare value (abuse.ch's legacy domain and IP lists): neither a CSV header nor a CSV row.
        raise InputError(f"not Feodo Tracker's CSV block list: {rows[0][1].strip()[:60]!r} is neither its "
                         "header nor a CSV row (a legacy abuse.ch domain or IP list?)", path, rows[0][0])
    if rows and not _looks_like_data(rows[0][1]):
        header_line, htext = rows.pop(0)
        header = [h.strip().strip('"').strip() for h in htext.split(",")]
    else:
        # Pre-2021 files carry the header as a comment: "# Firstseen,DstIP,DstPort,LastOnline,Malware".
        for no, line in enumerate(lines, 1):
            s = line.lstrip("#").strip()
            if s.lower().startswith("firstseen,") or s.lower().startswith("first_seen_utc,"):
                header_line, header = no, [h.strip().strip('"') for h in s.split(",")]
                break
    if header is None:
        header = ["first_seen_utc", "dst_ip", "dst_port", "c2_status", "last_online", "malware"]
    names = [ALIASES.get(h.lower(), h) for h in header]
    if "ip" not in names:
        raise InputError("required column 'dst_ip' is missing from the header", path, header_line, "dst_ip")
    # "# END <n> entries" closes a complete download; a different count means a damaged file.
    for no in range(len(lines), 0, -1):
        m = re.match(r"^#\s*END\s+(\d+)\s+entries", lines[no - 1].strip(), re.I)
        if m:
            if int(m.group(1)) != len(rows):
                raise InputError(f"the file says {m.group(1)} entries but has {len(rows)} data lines "
                                 "(damaged or edited download)", path, no)
            break
    table, raws = text_lists.read_delimited(path, rows, names, q)
    cols = {c: table.column(c) for c in names}
    return _finish(path, rtype, cols, table.column(text_lists.LINE_COL).to_numpy(), raws, q, header)


def parse_json(path: str, *, registry: Registry | None = None, _data: bytes | None = None) -> ParsedFile:
    """Parse the JSON block list (see :func:`parse`)."""
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    text = (_data if _data is not None else feed_files.read_bytes(path)).decode("utf-8-sig", errors="replace")
    recs = json_records.read_json_array(path, text)
    q = Quarantine(path)
    good = np.array([isinstance(r, dict) for r in recs.records], dtype=bool)
    for i in np.flatnonzero(~good):
        q.add(int(recs.lines[i]), None, "expected a JSON object", None, recs.raws[i])
    records = [r for r in recs.records if isinstance(r, dict)]
    lines = recs.lines[good]
    raws = [r for r, g in zip(recs.raws, good) if g]
    cols = {}
    for name in dict.fromkeys(ALIASES.values()):
        keys = [k for k, v in ALIASES.items() if v == name]
        vals = [next((json_records.to_text(r[k]) for k in keys if r.get(k) is not None), "") for r in records]
        cols[name] = pa.array(vals, pa.string())
    return _finish(path, rtype, cols, lines, raws, q, None, rows_in=len(recs.records))


class _TableRows(HTMLParser):
    """Rows (line of ``<tr>``, cell texts) of the ``<tbody>`` of the table with id ``table_id``."""

    def __init__(self, table_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.table_id, self.depth, self.in_body = table_id, 0, False
        self.rows: list[tuple[int, list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            if self.depth or dict(attrs).get("id") == self.table_id:
                self.depth += 1
        elif self.depth == 1 and tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr":
            self.rows.append((self.getpos()[0], []))
        elif self.in_body and tag == "td" and self.rows:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth -= 1
            self.in_body = self.in_body and self.depth > 0
        elif tag == "tbody":
            self.in_body = False
        elif tag == "td" and self.cell is not None:
            self.rows[-1][1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def parse_html(path: str, *, registry: Registry | None = None, _data: bytes | None = None) -> ParsedFile:
    """Parse a saved Feodo Tracker "Browse" page (see the module docstring).

    Raises:
        InputError: unreadable or empty file, or no ``botnet_c2s`` table in it.
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    text = (_data if _data is not None else feed_files.read_bytes(path)).decode("utf-8", errors="replace")
    parser = _TableRows("botnet_c2s")
    parser.feed(text)
    parser.close()
    if not parser.rows and 'id="botnet_c2s"' not in text:
        raise InputError("no Feodo Tracker table (id botnet_c2s) in the HTML page", path)
    q = Quarantine(path)
    names = ["first_seen", "ip", "family", "status", "network", "geo"]
    lines, raws, cols = [], [], {c: [] for c in names}
    for line, cells in parser.rows:
        if len(cells) != len(names):
            q.add(line, None, f"expected {len(names)} table cells, found {len(cells)}", None, " | ".join(cells))
            continue
        lines.append(line)
        raws.append(" | ".join(cells))
        for c, v in zip(names, cells):
            cols[c].append(v)
    n = len(lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items() if c != "network"}
    net = pc.extract_regex(pa.array(cols["network"], pa.string()), r"^AS(?P<asn>\d+)\s*(?P<name>.*)$")
    out["asn"] = pc.fill_null(pc.struct_field(net, "asn"), "")
    out["as_name"] = pc.fill_null(pc.struct_field(net, "name"), "")
    return _finish(path, rtype, out, np.asarray(lines, dtype=np.int64), raws, q, None, rows_in=n + len(q))


def _looks_like_data(text: str) -> bool:
    first = text.split(",", 1)[0].strip().strip('"')
    return first[:1].isdigit()


def _finish(path, rtype, cols, lines, raws, q, header, rows_in=None) -> ParsedFile:
    n = len(lines)
    first = pc.utf8_trim_whitespace(pc.fill_null(cols.get("first_seen", feed_table.const("", n)), ""))
    last = pc.utf8_trim_whitespace(pc.fill_null(cols.get("last_seen", feed_table.const("", n)), ""))
    checks = []
    for col, fld, rx, fmt, what in ((first, "first_seen", _TS, "%Y-%m-%d %H:%M:%S", "YYYY-MM-DD HH:MM:SS"),
                                    (last, "last_online", _DATE, "%Y-%m-%d", "YYYY-MM-DD")):
        empty = pc.equal(pc.utf8_length(col), 0).to_numpy(zero_copy_only=False)
        shape = pc.match_substring_regex(col, rx).to_numpy(zero_copy_only=False)
        parsed = pc.strptime(pc.if_else(pa.array(shape), col, pa.nulls(n, pa.string())), format=fmt,
                             unit="s", error_is_null=True)
        okv = pc.is_valid(parsed).to_numpy(zero_copy_only=False) & ~timestamps.impossible_dates(col)
        checks.append(feed_table.Check(~empty & ~okv, fld, f"not a time (expected {what}, UTC)", col))
    last_ts = pc.if_else(pc.equal(pc.utf8_length(last), 0), "", pc.binary_join_element_wise(last, "00:00:00", " "))
    ts = pc.if_else(pc.greater(first, last_ts), first, last_ts)
    out = dict(cols)
    out["first_seen"] = first
    out["last_seen"] = last
    out["timestamp"] = ts
    out["source"] = feed_table.const("feodotracker", n)
    out["status"] = pc.utf8_lower(pc.fill_null(cols.get("status", feed_table.const("", n)), ""))
    return feed_table.finish(path, rtype, out, lines, raws, q, checks=checks, rows_in=rows_in, header=header)

"""Shadowserver-format CSV reports: header-driven reading and column typing.

Format: RFC 4180 CSV with a header row, as Shadowserver delivers it (``"timestamp","ip",...``),
file names ``YYYY-MM-DD-<type>-<details>.csv`` (``schema/shadowserver/report-filename.md``) or
``<type>.csv``.  Columns may come in any order; columns of the type that the file lacks are null;
columns the file has beyond the type's are kept as strings after the type's columns.

Typing rules (Herald's, documented in ``docs/input.md``):

- ``timestamp``: ``YYYY-MM-DD HH:MM:SS`` (also ``T`` separator, fractional seconds, a ``Z``,
  ``+00:00`` or `` UTC`` suffix), taken as UTC.  Empty or unparseable: the row is quarantined.
- integer columns (ports, ASNs, NAICS, ...; see :mod:`herald.schema.registry`): decimal digits.
  Anything else non-empty: quarantined.
- IP columns (``src_ip``, ``ip``, ``dst_ip``, ...): a valid IPv4 or IPv6 address is rewritten in
  canonical form (IPv6 per RFC 5952; IPv4-mapped IPv6 ``::ffff:a.b.c.d``, RFC 4291 section 2.5.5.2,
  as the IPv4 dotted quad).  An IPv6 address with a zone id (RFC 4007) is quarantined.  Other text
  (a CIDR in ``blocklist``, a malformed address) is kept as given, as IntelMQ keeps it; such an
  event cannot be routed by address and counts as unrouted unless its ASN or country routes it.
- country-code columns (``geo``, ``*_geo``): trimmed, upper case, and one of
  :data:`herald.countries.VALID` (ISO 3166-1 alpha-2 plus reserved and user-assigned codes);
  anything else: quarantined.
- every other column: a string; empty strings become null.

Only the ``timestamp`` column is required in the header.  Columns that IntelMQ 3.5.0 requires
(for example ``port`` of ``malware_url``) are optional here: IntelMQ rejects such older files' rows,
Herald accepts them with the column null.

Records (RFC 4180; :mod:`herald.sources.csv_records`): the file is cut into segments of whole
records (``block_size`` bytes, 16 MiB by default) that Arrow parses (the fast path).  A segment that
Arrow cannot read, or that has a record with the wrong field count or a NUL byte, is halved at
record ends down to :data:`SPLIT_MIN` bytes, and only the parts that still fail are read record by
record with Python's :mod:`csv` module (about ten times slower; the cost of the fallback), which
quarantines exactly the bad records: not UTF-8 (naming the field), NUL bytes, unterminated
quotes, more fields than the header.  Rows with fewer fields than the header are quarantined
(``N fields, header has M``) unless *every* record of the file is short by the same number of fields
(the header names trailing columns that the writer did not emit: the real ``scan_rdp`` sample);
then they are read with those columns empty, as IntelMQ reads them.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from herald.countries import VALID as VALID_COUNTRY_CODES
from herald.countries import is_country_column
from herald.errors import InputError
from herald.ipaddr import parse_ips, remember_parsed
from herald.schema.registry import IP_COLUMNS, TIMESTAMP_TYPE, Registry, ReportType, default_registry
from herald.sources.csv_records import (ExactRecord, RecordIndex, Segment, SegmentReader, count_lines, exact_records,
                                        header_end, last_record_end)
from herald.sources.csv_timestamps import parse_timestamps
from herald.sources.quarantine import QUARANTINE_SCHEMA, Quarantine

__all__ = ["FILENAME_RE", "QUARANTINE_SCHEMA", "ParsedFile", "Quarantine", "iter_file", "normalize_batch",
           "read_file", "read_header", "resolve_type", "type_from_filename"]

#: ``YYYY-MM-DD-<type>-...csv`` or ``<type>.csv`` (report-filename.md, "Sample regular expression 2").
FILENAME_RE = re.compile(r"^(?:(?P<date>\d{4}-\d{2}-\d{2})-)?(?P<type>[A-Za-z0-9_]+)(?:-[^/]*)?\.csv$")

_INT_RE = r"^\s*[+-]?\d{1,18}\s*$"

#: Valid ranges of integer columns by name suffix: TCP/UDP ports (RFC 793/768), 4-byte AS numbers
#: (RFC 6793).
_RANGES = {"port": (0, 65535), "asn": (0, 4294967295)}

#: String columns whose surrounding white space is dropped (severity levels; country codes are
#: trimmed and checked by :func:`_country_codes`).
_TRIMMED = frozenset({"severity"})

#: Default bytes per CSV block read at once (bounds memory per batch).
DEFAULT_BLOCK_SIZE = 16 << 20
#: Bytes per block Arrow's CSV parser reads within one segment (of ``block_size`` bytes, one typed
#: batch).  Single-threaded, a 15 MB segment of the generated day parsed in 0.05 s with 1 MB blocks,
#: 0.10 s with 4 MB and 0.16 s with 16 MB ones, while the later stages (range lookups, Parquet row
#: groups) have a cost per batch and prefer the larger segments.
READ_BLOCK_SIZE = 1 << 20


def type_from_filename(path: str | os.PathLike) -> tuple[str | None, str | None]:
    """Report type and date from a Shadowserver file name.

    Returns:
        ``(type, date)``: the type name (``None`` when the name does not match) and the
        ``YYYY-MM-DD`` report date (``None`` when the name has none).
    """
    m = FILENAME_RE.match(Path(path).name)
    if not m:
        return None, None
    return m.group("type"), m.group("date")


@dataclass
class ParsedFile:
    """A Shadowserver CSV file read and typed.

    Attributes:
        path: the file.
        report_type: its :class:`ReportType`.
        report_date: the ``YYYY-MM-DD`` date from the file name, or ``None``.
        table: the normalized table: the type's columns in schema order with the types of
            :attr:`ReportType.column_types`, then any further columns of the file as strings.
            One row per good record, in file order.
        quarantine: the rows that could not be read.
        rows_in: data records in the file (good + quarantined).
        header: the column names as in the file.
    """

    path: str
    report_type: ReportType
    report_date: str | None
    table: pa.Table
    quarantine: Quarantine
    rows_in: int
    header: list[str]


def resolve_type(path: str | os.PathLike, report_type: str | None, registry: Registry) -> ReportType:
    """The report type of ``path``: ``report_type`` when given, else from the file name.

    Raises:
        InputError: when neither gives a type.
        UnknownReportType: when the type is not registered (names the file and the type).
    """
    name = report_type or type_from_filename(path)[0]
    if not name:
        raise InputError("cannot tell the report type from the file name; "
                         "name it YYYY-MM-DD-<type>-....csv or pass --type", str(path))
    return registry.get(name, source=str(path))


def read_header(path: str) -> list[str]:
    """Column names of the CSV file's first record ([] for an empty file)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if not head.strip():
        return []
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        return []  # only a BOM or white space
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 20))
    return next(csv.reader(io.StringIO(text, newline="")), [])


def read_file(path: str | os.PathLike, report_type: str | None = None,
              registry: Registry | None = None, block_size: int = DEFAULT_BLOCK_SIZE) -> ParsedFile:
    """Read and type a whole Shadowserver CSV file.

    Memory: the file's typed table (about the CSV's size).  Use :func:`iter_file` for files larger
    than memory.

    Raises:
        InputError: unreadable file, missing ``timestamp`` column, or no type (see
            :func:`resolve_type`).
        UnknownReportType: the type is not registered.
    """
    batches = []
    it = iter_file(path, report_type, registry, block_size)
    meta = next(it)
    for b in it:
        batches.append(b)
    schema = meta.table.schema
    table = pa.Table.from_batches(batches, schema=schema) if batches else meta.table
    meta.table = table
    return meta


def iter_file(path: str | os.PathLike, report_type: str | None = None,
              registry: Registry | None = None,
              block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator:
    """Stream a Shadowserver CSV file as typed record batches.

    Yields first a :class:`ParsedFile` whose ``table`` is empty (it carries the schema, the type
    and the quarantine object, which fills up as the batches are consumed, and ``rows_in``, final
    once the iterator is exhausted), then ``pyarrow.RecordBatch`` objects of the normalized schema.

    Raises:
        see :func:`read_file`.
    """
    registry = registry or default_registry()
    path = str(path)
    rtype = resolve_type(path, report_type, registry)
    report_date = type_from_filename(path)[1]
    if not os.path.isfile(path):
        raise InputError("file not found (or not a regular file)", path)
    try:
        header = read_header(path)
    except (OSError, csv.Error) as exc:
        raise InputError(f"cannot read the CSV header: {exc}", path, 1) from exc
    quarantine = Quarantine(path)
    if header:
        dups = sorted({h for h in header if header.count(h) > 1})
        if dups:
            raise InputError(f"duplicate column names in header: {', '.join(dups)}", path, 1)
        if "timestamp" in rtype.columns and "timestamp" not in header:
            raise InputError("required column 'timestamp' is missing from the header", path, 1, "timestamp")
    extra_cols = [h for h in header if h not in rtype.column_types]
    schema = _typed_schema(rtype, extra_cols)
    meta = ParsedFile(path, rtype, report_date, schema.empty_table(), quarantine, 0, header)
    yield meta
    if not header:
        return

    ncols = len(header)
    start, first_line = header_end(path)
    rows_in = 0
    full_rows = 0
    short: list[ExactRecord] = []
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read CSV: {exc}", path) from exc
    carry: Segment | None = None  # the start of a record that the last segment cut (stray quote)
    with fh:
        fh.seek(start)
        segments = SegmentReader(fh, start, first_line, block_size)
        for seg in segments:
            if carry is not None:
                seg = Segment(carry.offset, carry.first_line, carry.data + seg.data, True, seg.final)
                carry = None
            tail: list[tuple[int, int]] = []    # (file offset, line) of a record left open
            resync: list[tuple[int, int]] = []  # (file offset, line) after a stray quote
            end = seg.offset + len(seg.data)
            for typed, n_in, n_full in _read_segment(seg, header, rtype, extra_cols, quarantine, short,
                                                     end if seg.final else -1, tail, resync):
                rows_in += n_in
                full_rows += n_full
                if typed.num_rows:
                    yield typed
            if tail:
                off, line = tail[0]
                carry = Segment(off, line, seg.data[off - seg.offset:], True)
            elif resync:
                # After a stray quote: cut the rest of the segment again, fast path.
                off, line = resync[0]
                segments.push_back(seg.data[off - seg.offset:], off, line)
    if short:
        counts = {len(r.fields) for r in short}
        if full_rows == 0 and len(counts) == 1:
            # Every record of the file is short by the same number of fields: the header names
            # trailing columns the writer did not emit (the scan_rdp sample): read them as empty,
            # as IntelMQ does.
            padded = [r.fields + [""] * (ncols - len(r.fields)) for r in short]
            typed = _typed_rows(padded, short, header, rtype, extra_cols, quarantine)
            if typed.num_rows:
                yield typed
        else:
            for r in short:
                quarantine.add(r.line, None, f"{len(r.fields)} fields, header has {ncols}", None, r.raw)
    meta.rows_in = rows_in


def _arrow_read(data: bytes, header: list[str], block_size: int, invalid: list,
                threads: bool = False) -> pa.Table:
    """One segment through Arrow's CSV parser (every column ``string``).  Single-threaded by
    default: on a 15 MB segment of the generated day Arrow's thread pool made it 2-3x slower (the
    segment is one unit of work already; the pipeline runs several inputs at once)."""
    def on_invalid(row) -> str:
        invalid.append(row.text)
        return "skip"

    return pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=threads, column_names=header),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


#: A segment that Arrow cannot read is halved (at a record end) until its parts are this small;
#: only the parts with bad records are then read row-exact.
SPLIT_MIN = 64 << 10


def _read_segment(seg: Segment, header: list[str], rtype: ReportType, extra_cols: list[str],
                  quarantine: Quarantine, short: list[ExactRecord], file_end: int,
                  tail: list, resync: list) -> Iterator[tuple[pa.RecordBatch, int, int]]:
    """``(typed batch, records read, records with the header's field count)`` for a segment or
    for its parts, in file order.

    Arrow reads it; when Arrow cannot (a bad byte, a bad field count, a NUL byte) it is halved at
    a record end and each half tried again, down to :data:`SPLIT_MIN` bytes, which are read
    row-exact (a broken segment: at once).  A bad row costs about two more Arrow passes over its
    segment and a Python read of 64 KiB.  When the row-exact reader finds a stray quote (``resync``)
    or a record left open (``tail``), it records the file offset and line to read again from, and
    the rest of the segment is not read here.

    Args:
        file_end: the file offset where the file ends when ``seg`` reaches it, else -1.
    """
    if not seg.broken and seg.data.find(b"\0") < 0:
        fast = _fast_segment(seg, header, rtype, extra_cols, quarantine)
        if fast is not None:
            yield fast[0], fast[1], fast[1]
            return
    if not seg.broken and len(seg.data) > SPLIT_MIN:
        cut = last_record_end(seg.data[:len(seg.data) // 2], False)
        if cut:
            first = Segment(seg.offset, seg.first_line, seg.data[:cut])
            second = Segment(seg.offset + cut, seg.first_line + count_lines(first.data), seg.data[cut:])
            for part in (first, second):
                yield from _read_segment(part, header, rtype, extra_cols, quarantine, short, file_end,
                                         tail, resync)
                if tail or resync:
                    return
            return
    final = seg.offset + len(seg.data) == file_end
    t: list[tuple[int, int]] = []
    r: list[tuple[int, int]] = []
    yield _exact_segment(seg, header, rtype, extra_cols, quarantine, short, final, t, r)
    tail.extend((seg.offset + off, line) for off, line in t)
    resync.extend((seg.offset + off, line) for off, line in r)


def _fast_segment(seg: Segment, header: list[str], rtype: ReportType, extra_cols: list[str],
                  quarantine: Quarantine) -> tuple[pa.RecordBatch, int] | None:
    """The fast path for one segment: ``(typed batch, records read)``, or ``None`` when the
    segment needs the row-exact reader (Arrow failed, or a record has the wrong field count)."""
    invalid: list[str] = []
    try:
        try:
            table = _arrow_read(seg.data, header, READ_BLOCK_SIZE, invalid, threads=False)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc):
                raise
            # One record larger than Arrow's block: parse the segment as one block.
            invalid.clear()
            table = _arrow_read(seg.data, header, len(seg.data) + 1, invalid)
    except pa.ArrowInvalid as exc:
        if "Empty CSV" in str(exc):
            schema = _typed_schema(rtype, extra_cols)
            return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema), 0
        return None
    except UnicodeDecodeError:
        return None
    if invalid:
        return None
    batch = table.combine_chunks().to_batches()
    batch = batch[0] if batch else pa.RecordBatch.from_arrays(
        [pa.array([], pa.string()) for _ in header], names=header)
    typed, problems = normalize_batch(batch, rtype, extra_cols)
    if problems:
        index = RecordIndex(seg.data, seg.first_line)
        if len(index) != batch.num_rows:
            return None  # Arrow and the quote-aware scan disagree: let the exact reader decide
        for row, fld, reason, value in problems:
            quarantine.add(int(index.lines[row]), fld, reason, value, index.raw(row))
    return typed, batch.num_rows


def _exact_segment(seg: Segment, header: list[str], rtype: ReportType, extra_cols: list[str],
                   quarantine: Quarantine, short: list[ExactRecord], final: bool = True,
                   tail: list | None = None, resync: list | None = None) -> tuple[pa.RecordBatch, int, int]:
    """The row-exact path for one segment (see :func:`herald.sources.csv_records.exact_records`,
    which explains ``final``, ``tail`` and ``resync``): ``(typed batch, records read, records with the header's
    field count)``.  Records with fewer fields than the header are appended to ``short`` (the
    caller decides at the end of the file); the rest that cannot be read are quarantined."""
    ncols = len(header)
    rows: list[list[str]] = []
    recs: list[ExactRecord] = []
    n_in = 0
    for r in exact_records(seg.data, seg.first_line, header, final=final, tail=tail, resync=resync):
        n_in += 1
        if r.fields is None:
            quarantine.add(r.line, r.field, r.reason or "unreadable record", r.value, r.raw)
        elif len(r.fields) == ncols:
            rows.append(r.fields)
            recs.append(r)
        elif len(r.fields) < ncols:
            short.append(r)
        else:
            quarantine.add(r.line, None, f"{len(r.fields)} fields, header has {ncols}", None, r.raw)
    return _typed_rows(rows, recs, header, rtype, extra_cols, quarantine), n_in, len(rows)


def _typed_rows(rows: list[list[str]], recs: list[ExactRecord], header: list[str], rtype: ReportType,
                extra_cols: list[str], quarantine: Quarantine) -> pa.RecordBatch:
    """Rows of ``len(header)`` strings typed by :func:`normalize_batch`; bad ones quarantined with
    the line and text of their record (``recs[i]`` is row ``i``'s)."""
    cols = list(zip(*rows)) if rows else [() for _ in header]
    batch = pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in cols], names=header)
    typed, problems = normalize_batch(batch, rtype, extra_cols)
    for row, fld, reason, value in problems:
        quarantine.add(recs[row].line, fld, reason, value, recs[row].raw)
    return typed


def _typed_schema(rtype: ReportType, extra_cols: list[str]) -> pa.Schema:
    """The normalized schema: the type's columns, then the file's extra columns as strings."""
    return pa.schema(list(rtype.arrow_schema) + [pa.field(c, pa.string()) for c in extra_cols])


def normalize_batch(batch: pa.RecordBatch, rtype: ReportType, extra_cols: list[str]
                    ) -> tuple[pa.RecordBatch, list[tuple[int, str, str, str]]]:
    """Type one batch of string columns (see the module docstring for the rules).

    Args:
        batch: ``N`` rows, every column ``string``, empty values as ``""``.
        rtype: the report type.
        extra_cols: the file's columns that are not the type's, in file order.

    Returns:
        ``(typed, problems)``: ``typed`` holds the good rows (schema order, then ``extra_cols``);
        ``problems`` lists ``(row index in batch, field, reason, value)`` for each bad row (its first
        problem only).
    """
    n = batch.num_rows
    names = batch.schema.names
    bad = np.zeros(n, dtype=bool)
    problems: list[tuple[int, str, str, str]] = []
    out: dict[str, pa.Array] = {}

    def flag(mask: np.ndarray, col: pa.Array, fld: str, reason: str) -> None:
        new = mask & ~bad
        for i in np.flatnonzero(new):
            problems.append((int(i), fld, reason, col[int(i)].as_py()))
        bad[:] |= mask

    for col_name, typ in rtype.column_types.items():
        if col_name not in names:
            out[col_name] = pa.nulls(n, typ)
            continue
        col = batch.column(col_name)
        empty = _empty_mask(col)
        if typ == TIMESTAMP_TYPE:
            ts, bad_ts = parse_timestamps(col)
            flag(empty, col, col_name, "missing timestamp")
            flag(bad_ts & ~empty, col, col_name, "not a timestamp (expected YYYY-MM-DD HH:MM:SS, UTC)")
            out[col_name] = ts
        elif pa.types.is_integer(typ):
            values = _fast_ints(col, empty)
            if values is None:
                ok = pc.match_substring_regex(col, _INT_RE).to_numpy(zero_copy_only=False)
                flag(~ok & ~empty, col, col_name, "not an integer")
                clean = pc.if_else(pa.array(ok), pc.utf8_trim_whitespace(col), pa.nulls(n, pa.string()))
                values = pc.cast(pc.utf8_ltrim(clean, "+"), pa.int64())
            bounds = _RANGES.get(col_name.rsplit("_", 1)[-1])
            if bounds:
                lo_, hi_ = bounds
                outside = pc.fill_null(pc.or_(pc.less(values, lo_), pc.greater(values, hi_)), False)
                flag(outside.to_numpy(zero_copy_only=False), col, col_name,
                     f"out of range ({lo_}..{hi_})")
            out[col_name] = values
        elif col_name in IP_COLUMNS:
            # Valid addresses are rewritten in canonical form; other text (a CIDR in a blocklist,
            # a malformed address) is kept as given, as IntelMQ keeps it: such an event cannot be
            # routed by address (it may still route by ASN or country) and is not lost.
            parsed = parse_ips(col)
            inv = np.flatnonzero(parsed.version < 0)
            if len(inv):
                # An IPv6 address with a zone id (RFC 4007 section 11) names an interface of the
                # observing host: it can never be routed, so the row is quarantined.
                zone = pc.fill_null(pc.match_substring_regex(col.take(pa.array(inv)), _ZONE_RE), False)
                zmask = np.zeros(n, dtype=bool)
                zmask[inv] = zone.to_numpy(zero_copy_only=False)
                flag(zmask, col, col_name, "IPv6 address with a zone id (RFC 4007): not routable")
            # Rows that are not an address but hold text (possibly only white space) keep it.
            keep = (parsed.version <= 0) & ~empty
            ips = parsed.text
            if keep.any():
                ips = pc.replace_with_mask(ips, pa.array(keep), col.filter(pa.array(keep)))
            # Parsing this column gives ``parsed`` again (canonical text parses to itself, kept
            # text fails again): enrichment and routing of the batch reuse it instead of parsing.
            remember_parsed(ips, parsed)
            out[col_name] = ips
        elif is_country_column(col_name):
            codes, bad_cc = _country_codes(col)
            empty = _empty_mask(codes)
            flag(bad_cc & ~empty, col, col_name, "not an ISO 3166-1 alpha-2 country code")
            out[col_name] = _null_where(codes, empty)
        else:
            if col_name in _TRIMMED:
                col = pc.utf8_trim_whitespace(col)
                empty = _empty_mask(col)
            out[col_name] = _null_where(col, empty)
    for col_name in extra_cols:
        col = batch.column(col_name)
        out[col_name] = _null_where(col, _empty_mask(col))

    typed = pa.RecordBatch.from_pydict(out)
    problems.sort(key=lambda p: p[0])
    if bad.any():
        typed = typed.filter(pa.array(~bad))
    return typed, problems


#: An IPv6 address with a zone id: ``fe80::1%eth0`` (RFC 4007 section 11).
_ZONE_RE = r"^\s*[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*%"
_COUNTRY_SET = pa.array(sorted(VALID_COUNTRY_CODES), pa.string())


def _country_codes(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A country-code column trimmed and in upper case, and ``bool[N]``: the non-empty values that
    are not a code of :data:`herald.countries.VALID` (ISO 3166-1 alpha-2 plus the reserved and
    user-assigned codes ``docs/input.md`` lists)."""
    col = pc.utf8_trim_whitespace(col)
    ok = pc.fill_null(pc.is_in(col, value_set=_COUNTRY_SET), False).to_numpy(zero_copy_only=False)
    if not ok.all():
        col = pc.ascii_upper(col)
        ok = pc.fill_null(pc.is_in(col, value_set=_COUNTRY_SET), False).to_numpy(zero_copy_only=False)
    return col, ~ok


def _offsets(col: pa.Array) -> np.ndarray | None:
    """``int[N+1]`` value offsets of a ``string`` array (``None`` for other types)."""
    if pa.types.is_string(col.type):
        return np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset:col.offset + len(col) + 1]
    if pa.types.is_large_string(col.type):
        return np.frombuffer(col.buffers()[1], dtype=np.int64)[col.offset:col.offset + len(col) + 1]
    return None


def _empty_mask(col: pa.Array) -> np.ndarray:
    """``bool[N]``: the value is ``""`` (or null), read from the offsets (no compute kernel)."""
    offs = _offsets(col)
    if offs is None:
        return pc.fill_null(pc.equal(pc.utf8_length(col), 0), True).to_numpy(zero_copy_only=False)
    empty = offs[1:] == offs[:-1]
    if col.null_count:
        empty |= pc.is_null(col).to_numpy(zero_copy_only=False)
    return empty


def _null_where(col: pa.Array, mask: np.ndarray) -> pa.Array:
    """``col`` with the rows of ``mask`` null: a new validity bitmap over the same buffers."""
    if not mask.any():
        return col
    if col.offset or col.null_count or _offsets(col) is None:
        return pc.if_else(pa.array(mask), pa.nulls(len(col), col.type), col)
    bitmap = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.Array.from_buffers(col.type, len(col), [bitmap, col.buffers()[1], col.buffers()[2]],
                                 null_count=int(mask.sum()))


def _fast_ints(col: pa.Array, empty: np.ndarray) -> pa.Array | None:
    """Integer column where every non-empty value is plain decimal digits (at most 18): cast
    directly.  ``None`` when any value needs the general rules (signs, spaces, other text)."""
    offs = _offsets(col)
    if offs is None or col.offset or col.null_count:
        return None
    if len(offs) > 1 and int(np.max(offs[1:] - offs[:-1])) > 18:
        return None
    data = np.frombuffer(col.buffers()[2], dtype=np.uint8)[offs[0]:offs[-1]]
    if ((data - np.uint8(0x30)) > 9).any():
        return None
    return pc.cast(_null_where(col, empty), pa.int64())

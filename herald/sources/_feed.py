"""Shared machinery of the feed parsers (abuse.ch, Spamhaus, Team Cymru, CTIP, block lists, IntelMQ,
generic CSV): reading text, JSON records and timestamps, and turning string columns into a typed
:class:`~herald.sources.shadowserver_csv.ParsedFile`.

Every feed parser works in two steps:

1. format-specific: the file's records become *string columns* (``pa.string`` arrays, ``""`` or null
   for an empty value), plus the 1-based physical line number and raw text of each record;
2. :func:`finish`: the address column is checked (a valid IP, or a CIDR where the type holds
   networks), format-specific checks are applied, and
   :func:`herald.sources.shadowserver_csv.normalize_batch` types the rest (timestamp, integers,
   canonical IPs).  Bad records go to the :class:`Quarantine` with file, line, field and reason, so
   ``rows_in == table.num_rows + len(quarantine)`` always holds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError
from herald.ipaddr import parse_ips
from herald.schema.registry import Registry, ReportType, default_registry
from herald.sources.shadowserver_csv import ParsedFile, Quarantine, normalize_batch

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


def read_bytes(path: str, *, allow_empty: bool = False) -> bytes:
    """The whole file.

    Raises:
        InputError: the file cannot be opened, or it is empty (0 bytes or only white space) and
            ``allow_empty`` is false: a feed download that produced nothing is an error, not a day
            without events.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path) from exc
    if not allow_empty and not data.strip():
        raise InputError("file is empty", path)
    return data


def read_lines(path: str, *, allow_empty: bool = False) -> list[str]:
    """The file's lines, decoded as UTF-8 (a BOM is dropped; undecodable bytes become U+FFFD), without
    line endings.  Index ``i`` is physical line ``i + 1``.

    Raises:
        InputError: see :func:`read_bytes`.
    """
    text = read_bytes(path, allow_empty=allow_empty).decode("utf-8-sig", errors="replace")
    return text.splitlines()


def file_mtime_utc(path: str) -> str:
    """The file's modification time as ``YYYY-MM-DD HH:MM:SS`` (UTC, whole seconds).

    Used as the event time of lists that carry no time at all (blocklist.de); callers may pass
    ``observed_at`` instead.
    """
    ts = dt.datetime.fromtimestamp(int(os.stat(path).st_mtime), tz=dt.timezone.utc)
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def observed_text(value: Any) -> str:
    """``observed_at`` option (``datetime``, ``date`` or text) as ``YYYY-MM-DD HH:MM:SS`` UTC text.

    A naive ``datetime`` is taken as UTC; an aware one is converted to UTC.

    Raises:
        InputError: text that is not ``YYYY-MM-DD[ HH:MM:SS]``.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d 00:00:00")
    text = str(value).strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    raise InputError(f"observed_at {text!r} is not YYYY-MM-DD[ HH:MM:SS]")


# --------------------------------------------------------------------------------------------------
# Timestamps: every converter returns (text array "YYYY-MM-DD HH:MM:SS[.ffffff]" or null, bad mask).

def ts_to_text(ts: pa.Array) -> pa.Array:
    """``timestamp`` array (any unit, UTC) -> ``YYYY-MM-DD HH:MM:SS[.ffffff]`` text (null stays null)."""
    return pc.strftime(ts, format="%Y-%m-%d %H:%M:%S")


def epoch_seconds(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Unix time in seconds (decimal digits, as Spamhaus CERT ``lastseen``) -> UTC text.

    Returns ``(text, bad)``: ``bad`` is true where the value is non-empty but not a plausible Unix time
    (digits only, at most 11 of them).
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
    ok = pc.match_substring_regex(s, r"^\d{1,11}$").to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)
    secs = pc.cast(pc.if_else(pa.array(ok), s, pa.nulls(len(s), pa.string())), pa.int64())
    ts = pc.cast(secs, pa.timestamp("s", tz="UTC"))
    return ts_to_text(ts), ~ok & ~empty


def nt_time(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Windows NT time (100 ns ticks since 1601-01-01 UTC, CTIP ``DateTimeReceivedUtc``) -> UTC text.

    Accepts an integer or string array.  ``bad``: non-empty and not a non-negative integer.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(pc.cast(col, pa.string()), ""))
    ok = pc.match_substring_regex(s, r"^\d{1,19}$").to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)
    ticks = pc.cast(pc.if_else(pa.array(ok), s, pa.nulls(len(s), pa.string())), pa.int64())
    # 11644473600 s between 1601-01-01 and 1970-01-01 (MS-DTYP 2.3.3 FILETIME).
    micros = pc.subtract(pc.divide(ticks, 10), 11644473600 * 1_000_000)
    ts = pc.cast(micros, pa.timestamp("us", tz="UTC"))
    return ts_to_text(ts), ~ok & ~empty


def strptime_distinct(col: pa.Array, parse: Callable[[str], dt.datetime | None]
                      ) -> tuple[pa.Array, np.ndarray]:
    """Parse a string column with a Python function, once per *distinct* value.

    Args:
        col: string array of length N.
        parse: text -> aware or naive ``datetime`` (naive is UTC), or ``None`` / raises ``ValueError``
            when the text is not a time.

    Returns:
        ``(text, bad)`` as the other converters.  Feeds repeat the same few times (a list's generation
        time, per-second times), so the Python work is bounded by the distinct count.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
    d = pc.dictionary_encode(s)
    out, bad_d = [], []
    for v in d.dictionary.to_pylist():
        if v == "":
            out.append(None)
            bad_d.append(False)
            continue
        try:
            t = parse(v)
        except (ValueError, OverflowError):
            t = None
        if t is not None and t.tzinfo is not None:
            t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
        out.append(t.strftime("%Y-%m-%d %H:%M:%S") + (f".{t.microsecond:06d}" if t and t.microsecond else "")
                   if t is not None else None)
        bad_d.append(t is None)
    idx = d.indices
    text = pa.array(out, pa.string()).take(idx)
    bad = np.asarray(bad_d, dtype=bool)[idx.to_numpy(zero_copy_only=False)] if len(idx) else \
        np.zeros(0, dtype=bool)
    return text, bad


# --------------------------------------------------------------------------------------------------
# JSON records

@dataclass
class JsonRecords:
    """The objects of a JSON document (an array of objects) or of a JSON-lines file.

    Attributes:
        records: the decoded objects, in file order.
        lines: ``int64[len(records)]``: 1-based physical line where each object starts.
        raws: the source text of each object (for the quarantine).
    """

    records: list[Any]
    lines: np.ndarray
    raws: list[str]


def _line_starts(text: str) -> np.ndarray:
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.flatnonzero(arr == 0x0A)


def read_json_array(path: str, text: str | None = None) -> JsonRecords:
    """Read a JSON document whose top level is an array (Feodo Tracker JSON, CTIP Interflow).

    Records are decoded one by one (``json.JSONDecoder.raw_decode``) so that each gets its line number.
    Python's decoder is used because Arrow's JSON reader reads only newline-delimited objects.

    Raises:
        InputError: empty file; top level not an array; a syntax error or truncation (names the line).
    """
    if text is None:
        text = read_bytes(path).decode("utf-8-sig", errors="replace")
    nls = _line_starts(text)
    dec = json.JSONDecoder()

    def line_of(pos: int) -> int:
        return int(np.searchsorted(nls, pos, side="left")) + 1

    n = len(text)
    i = 0
    while i < n and text[i].isspace():
        i += 1
    if i >= n:
        raise InputError("file is empty", path)
    if text[i] != "[":
        raise InputError("expected a JSON array of objects", path, line_of(i))
    i += 1
    records, lines, raws = [], [], []
    expect_value = True
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise InputError("truncated JSON: the array is not closed", path, line_of(n - 1))
        if text[i] == "]" and (not records or not expect_value):
            i += 1
            break
        if text[i] == "," and not expect_value:
            i += 1
            expect_value = True
            continue
        if not expect_value:
            raise InputError(f"invalid JSON: expected ',' or ']' but found {text[i]!r}", path, line_of(i))
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            reason = "truncated JSON" if exc.pos >= n - 1 or "Unterminated" in exc.msg or \
                "Expecting" in exc.msg and exc.pos >= len(text.rstrip()) else "invalid JSON"
            raise InputError(f"{reason}: {exc.msg}", path, exc.lineno) from exc
        records.append(obj)
        lines.append(line_of(i))
        raws.append(text[i:end])
        i = end
        expect_value = False
    while i < n and text[i].isspace():
        i += 1
    if i < n:
        raise InputError("invalid JSON: data after the closing ']'", path, line_of(i))
    return JsonRecords(records, np.asarray(lines, dtype=np.int64), raws)


def read_json_lines(path: str, quarantine: Quarantine, text: str | None = None) -> JsonRecords:
    """Read a JSON-lines file (one object per line; blank lines skipped).

    A line that is not valid JSON, or not an object, goes to ``quarantine`` (field ``None``, reason
    ``invalid JSON: ...``) and reading goes on: one broken line in a daily CTIP file must not lose the
    day.  Its records are *not* in the result; callers count them through ``len(quarantine)``.

    Raises:
        InputError: the file cannot be read or is empty.
    """
    if text is None:
        text = read_bytes(path).decode("utf-8-sig", errors="replace")
    records, lines, raws = [], [], []
    loads = json.loads
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        try:
            obj = loads(s)
        except ValueError as exc:
            quarantine.add(no, None, f"invalid JSON: {getattr(exc, 'msg', exc)}", None, line)
            continue
        if not isinstance(obj, dict):
            quarantine.add(no, None, "invalid JSON: expected an object", None, line)
            continue
        records.append(obj)
        lines.append(no)
        raws.append(line)
    return JsonRecords(records, np.asarray(lines, dtype=np.int64), raws)


def flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def to_text(v: Any) -> str:
    """A JSON value as the text a report column holds: ``None`` -> ``""``; lists/objects as compact
    JSON; ``True`` -> ``"true"``; numbers as written (``16276``; floats without a trailing ``.0``)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def column(records: Sequence[dict], key: str) -> pa.Array:
    """String column of ``key`` over ``records`` (missing or null -> ``""``), see :func:`to_text`."""
    return pa.array([to_text(r.get(key)) for r in records], pa.string())


# --------------------------------------------------------------------------------------------------
# Finishing: checks, typing, accounting

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


def impossible_dates(col: pa.Array) -> np.ndarray:
    """``bool[N]``: text starting ``YYYY-MM-DD`` whose date does not exist (``2024-02-30``).

    Arrow's ``strptime`` rolls such dates over (``2024-03-01``) instead of failing, so the day is
    checked by formatting the parsed date back and comparing.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
    head = pc.utf8_slice_codeunits(s, 0, 10)
    shaped = pc.match_substring_regex(head, r"^\d{4}-\d{2}-\d{2}$")
    parsed = pc.strptime(pc.if_else(shaped, head, pa.nulls(len(s), pa.string())), format="%Y-%m-%d",
                         unit="s", error_is_null=True)
    back = pc.strftime(parsed, format="%Y-%m-%d")
    same = pc.fill_null(pc.equal(back, head), False).to_numpy(zero_copy_only=False)
    return shaped.to_numpy(zero_copy_only=False) & ~same


def _network_ok(values: list[str]) -> dict[str, bool]:
    out = {}
    for v in values:
        try:
            ipaddress.ip_network(v.strip(), strict=False)
            out[v] = "/" in v
        except ValueError:
            out[v] = False
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
            good = [v for v, ok in _network_ok(cand).items() if ok]
            good_net = pc.is_in(col, value_set=pa.array(good, pa.string())).to_numpy(zero_copy_only=False)
            invalid &= ~good_net
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


# --------------------------------------------------------------------------------------------------
# Delimited text (CSV/TSV after comment lines are removed)

#: Name of the line-number column that :func:`read_delimited` adds.
LINE_COL = "__line__"


def read_delimited(path: str, rows: Sequence[tuple[int, str]], names: Sequence[str],
                   quarantine: Quarantine, *, delimiter: str = ",", quote: bool = True
                   ) -> tuple[pa.Table, list[str]]:
    """Parse data lines of a delimited file with Arrow's CSV reader, every column as a string.

    Args:
        path: the file (for errors and the quarantine).
        rows: ``(physical line number, text)`` of each data record, header and comments removed
            (the feeds read here never have line breaks inside a field).
        names: the column names, one per field.
        quarantine: receives records with a wrong number of fields (reason
            ``expected N fields, found M``).
        delimiter: one character; ``quote``: whether ``"`` quotes fields (RFC 4180).

    Returns:
        ``(table, raws)``: ``table`` has :data:`LINE_COL` (``int64``, the physical line) then ``names``
        (``string``, ``""`` for empty); ``raws`` the text of each of its rows.

    The line number travels as an extra leading field, so that rows Arrow rejects are still reported
    with their line and rows it accepts keep theirs without a second scan.
    """
    import io

    import pyarrow.csv as pacsv

    names = list(names)
    if not rows:
        schema = pa.schema([(LINE_COL, pa.int64())] + [(c, pa.string()) for c in names])
        return schema.empty_table(), []
    buf = "\n".join(f"{no}{delimiter}{text}" for no, text in rows).encode("utf-8")
    bad: list[tuple[int, str, int]] = []

    def on_invalid(row) -> str:
        no_text, _, rest = row.text.partition(delimiter)
        bad.append((int(no_text) if no_text.isdigit() else None, rest, row.actual_columns - 1))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(buf),
            read_options=pacsv.ReadOptions(column_names=[LINE_COL] + names, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quote else False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={LINE_COL: pa.int64(), **{c: pa.string() for c in names}},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"cannot parse as delimited text: {exc}", path) from exc
    for no, text, found in bad:
        quarantine.add(no, None, f"expected {len(names)} fields, found {found}", None, text)
    by_line = dict(rows)
    raws = [by_line.get(no, "") for no in table.column(LINE_COL).to_pylist()]
    return table, raws


def data_lines(lines: Sequence[str], comment: str = "#") -> list[tuple[int, str]]:
    """``(line number, text)`` of the lines that are neither blank nor comments (a comment may be
    indented by spaces or tabs: ``generic_sample_report.csv`` has such lines)."""
    out = []
    for no, line in enumerate(lines, 1):
        s = line.strip()
        if s and not s.startswith(comment):
            out.append((no, line.rstrip("\r")))
    return out


class LazyLines:
    """Text of physical lines of a byte buffer, decoded only when asked for (the quarantine needs
    the raw text of bad records only).  ``obj[i]`` is the ``i``-th selected line."""

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self._data, self._starts, self._ends = data, starts, ends

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> str:
        return self._data[int(self._starts[i]):int(self._ends[i])].decode("utf-8", "replace").rstrip("\r")


def _line_spans(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-based numbers, start and end offsets of the non-blank lines of ``data`` (vectorized)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 0x0A)
    ends = np.append(nl, len(arr)) if not len(nl) or nl[-1] != len(arr) - 1 else nl
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    has_text = ends > starts
    # Lines of white space only are rare and short: check the short ones one by one.
    for i in np.flatnonzero(has_text & (ends - starts <= 16)):
        if not data[starts[i]:ends[i]].strip():
            has_text[i] = False
    numbers = np.arange(1, len(starts) + 1, dtype=np.int64)
    return numbers[has_text], starts[has_text], ends[has_text]


class _TextColumns(dict):
    """Column name -> Arrow array, cast to text on first access (only the columns a parser uses)."""

    def _text(self, key: str) -> pa.Array:
        col = dict.__getitem__(self, key)
        if not pa.types.is_string(col.type):
            col = _as_text(col)
            dict.__setitem__(self, key, col)
        return col

    def __getitem__(self, key: str) -> pa.Array:
        return self._text(key)

    def get(self, key, default=None):
        return self._text(key) if key in self else default


def _no_timestamps(typ: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return pa.string()
    if pa.types.is_struct(typ):
        return pa.struct([pa.field(typ.field(i).name, _no_timestamps(typ.field(i).type))
                          for i in range(typ.num_fields)])
    if pa.types.is_list(typ):
        return pa.list_(_no_timestamps(typ.value_type))
    return typ


def _has_timestamp(schema: pa.Schema) -> bool:
    return any(_no_timestamps(f.type) != f.type for f in schema)


def _as_text(col: pa.Array) -> pa.Array:
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), pa.string())
    if pa.types.is_boolean(col.type):
        return pc.if_else(col, "true", "false")
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_string(col.type) \
            or pa.types.is_large_string(col.type):
        # Arrow writes floats as JSON does (48.2 -> "48.2", 16.0 -> "16"), like to_text.
        return pc.cast(col, pa.string())
    # Lists and objects: as compact JSON text, like to_text.
    return pa.array([to_text(v) if v is not None else None for v in col.to_pylist()], pa.string())


def json_lines_columns(path: str, data: bytes, quarantine: Quarantine, string_fields: Sequence[str] = ()
                       ) -> tuple[dict[str, pa.Array], np.ndarray, Sequence[str]]:
    """Read a JSON-lines file into string columns, nested objects flattened to dotted names.

    Fast path: Arrow's JSON reader (vectorized; one object per line).  When Arrow rejects the file
    (a broken line, or a key whose type changes between lines), the file is read again line by line
    with :func:`read_json_lines`, which quarantines only the broken lines.

    Returns:
        ``(columns, lines, raws)``: dotted key -> ``string`` array (missing/null -> null; numbers as
        text; arrays as compact JSON; converted when first looked up), the 1-based line of each
        record and its text.  ``string_fields``: top-level keys known to hold text that Arrow would
        take for timestamps (``time.source``); declaring them saves a second read.
    """
    import io

    import pyarrow.json as pajson

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines, starts, ends = _line_spans(data)
    try:
        ropts = pajson.ReadOptions(use_threads=True, block_size=16 << 20)
        hint = pajson.ParseOptions(explicit_schema=pa.schema([(k, pa.string()) for k in string_fields]),
                                   unexpected_field_behavior="infer")
        table = pajson.read_json(io.BytesIO(data), read_options=ropts, parse_options=hint)
        if _has_timestamp(table.schema):
            # Arrow infers timestamps from ISO-looking strings ("2022-11-15" becomes midnight):
            # read again with those fields declared as strings, so values stay as written.
            schema = pa.schema([pa.field(f.name, _no_timestamps(f.type)) for f in table.schema])
            table = pajson.read_json(io.BytesIO(data), read_options=ropts,
                                     parse_options=pajson.ParseOptions(explicit_schema=schema))
        if table.num_rows != len(lines):
            raise pa.ArrowInvalid("record count differs from non-blank line count")
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table = table.flatten()
        cols = _TextColumns((name, table.column(name).combine_chunks()) for name in table.column_names)
        return cols, lines, LazyLines(data, starts, ends)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    recs = read_json_lines(path, quarantine, data.decode("utf-8", errors="replace"))
    flat = [flatten(r) for r in recs.records]
    keys: dict[str, None] = {}
    for r in flat:
        keys.update(dict.fromkeys(r))
    cols = {k: pa.array([to_text(r[k]) if r.get(k) is not None else None for r in flat], pa.string())
            for k in keys}
    return cols, recs.lines, recs.raws


def get(cols: dict[str, pa.Array], key: str, n: int) -> pa.Array:
    """``cols[key]``, or an all-empty string column of length ``n`` when the key is absent."""
    col = cols.get(key)
    return col if col is not None else const("", n)


_UTC_ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z| ?UTC| ?\+00:?00)?$"


def iso_times(col: pa.Array, tz: dt.tzinfo = dt.timezone.utc) -> tuple[pa.Array, np.ndarray]:
    """ISO 8601 times with any UTC offset (``2018-06-19T13:02:55+02:00``) -> UTC text.

    Values already in UTC (no offset, ``Z``, ``+00:00``) pass through as they are (vectorized); the rest
    are parsed by :func:`datetime.datetime.fromisoformat` once per distinct value.  A value without
    an offset is in ``tz`` (default UTC).

    Returns ``(text, bad)`` as the other converters.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(pc.cast(col, pa.string()), ""))
    utc_ok = pc.match_substring_regex(s, _UTC_ISO).to_numpy(zero_copy_only=False)
    is_utc = dt.timezone.utc == tz or tz is None
    if is_utc and utc_ok.all():
        return s, np.zeros(len(s), dtype=bool)

    def parse(v: str) -> dt.datetime:
        t = dt.datetime.fromisoformat(v.replace(" UTC", "+00:00"))
        return t if t.tzinfo is not None else t.replace(tzinfo=tz)

    text, bad = strptime_distinct(s, parse)
    if is_utc:
        text = pc.if_else(pa.array(utc_ok), s, text)
        bad = bad & ~utc_ok
    return text, bad

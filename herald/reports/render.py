"""Report files: naming and CSV rendering.

File name (Shadowserver convention, ``schema/shadowserver/report-filename.md``)::

    YYYY-MM-DD-<report type>-<recipient slug>-<filter>.csv

``<filter>`` says what the recipient's share was selected by (``asn``, ``cidr``, ``geo`` or a mix
joined by ``_``).  Neither the type nor the slug contains ``-``, so Shadowserver's regular
expression ``^(\\d{4}-\\d{2}-\\d{2})-([^-]+)-.+\\.csv$`` reads date and type back.

CSV: RFC 4180, header row, the type's columns in schema order, strings quoted, integers bare,
timestamps as ``YYYY-MM-DD HH:MM:SS`` (UTC), empty for null: the same shape as Shadowserver's files.
An empty ``severity`` holds the type's default level; string values that a spreadsheet would run as
a formula get a leading ``'`` (``herald/reports/cells.py``, ``docs/reports.md``).
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from herald.fsutil import same_content
from herald.reports.cells import escape_formulas
from herald.schema.registry import TIMESTAMP_TYPE, ReportType


class ReportOwner(Protocol):
    """What a report file name needs of its recipient's share (a
    :class:`herald.constituency.recipients.Recipient` has it)."""

    @property
    def slug(self) -> str:
        """The recipient's (or operation's) file-name slug."""

    @property
    def filter_label(self) -> str:
        """What the share was selected by (``asn``, ``cidr``, ``geo``...)."""


def report_filename(day: str, rtype: ReportType, recipient: ReportOwner, ext: str = "csv") -> str:
    """``YYYY-MM-DD-<type>-<slug>-<filter>.<ext>``."""
    return f"{day}-{rtype.name}-{recipient.slug}-{recipient.filter_label}.{ext}"


def for_csv(table: pa.Table, rtype: ReportType) -> pa.Table:
    """The type's columns in schema order, as a report writes them.

    Timestamps are formatted as Shadowserver writes them; an empty or missing ``severity`` holds
    the type's default level (``severity.md``, :attr:`ReportType.default_severity`: the level the
    router used); string values a spreadsheet would run as a formula are escaped
    (:func:`herald.reports.cells.escape_formulas`, ``docs/reports.md``).
    """
    cols = []
    for name, typ in rtype.column_types.items():
        col = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, typ)
        if typ == TIMESTAMP_TYPE:
            col = format_timestamps(col)
        elif name == "severity" and pa.types.is_string(typ):
            col = escape_formulas(fill_severity(col, rtype.default_severity))
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            col = escape_formulas(col)
        cols.append(col)
    return pa.Table.from_arrays(cols, names=list(rtype.column_types))


def fill_severity(col: pa.Array | pa.ChunkedArray, default: str) -> pa.Array | pa.ChunkedArray:
    """``col`` (strings) with null and empty values replaced by ``default`` (a level of
    :data:`herald.schema.registry.SEVERITY_LEVELS`); other values are kept as they are."""
    if col.null_count == 0 and not pc.any(pc.equal(col, "")).as_py():
        return col
    empty = pc.fill_null(pc.equal(col, ""), True)
    return pc.if_else(empty, pa.scalar(default, col.type), col)


def format_timestamps(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Timestamps as Shadowserver writes them: ``YYYY-MM-DD HH:MM:SS`` (UTC, whole seconds,
    the fraction cut off), null stays null.

    Vectorized with numpy: the date part comes from a table of the days between the column's
    first and last day (civil dates by H. Hinnant's ``civil_from_days``, proleptic Gregorian), the
    time part from a table of the 86,400 seconds of a day; both are gathered into a
    ``uint8[N, 19]`` matrix that becomes the string buffer.  Years outside 0001-9999, or a column
    spanning more than 100,000 days, go through ``pyarrow.compute.strftime`` instead.

    Args:
        col: ``timestamp`` array of length N (any unit; a time zone is ignored: values are UTC).

    Returns:
        ``string[N]``.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(col)
    secs_arr = pc.cast(col, pa.timestamp("s", tz="UTC"), safe=False)
    ints = secs_arr.cast(pa.int64())
    # Nulls take the smallest value, so that they do not widen the range of days.
    low = pc.min(ints).as_py()
    secs = pc.fill_null(ints, low or 0).to_numpy(zero_copy_only=False)
    days = np.floor_divide(secs, 86400)
    sod = secs - days * 86400
    first, last = (int(days.min()), int(days.max())) if n else (0, 0)
    dates = _civil_dates(np.arange(first, last + 1, dtype=np.int64)) if last - first < 100_000 else None
    if dates is None:
        return pc.strftime(secs_arr, format="%Y-%m-%d %H:%M:%S", locale="C")
    out = np.empty((n, 19), dtype=np.uint8)
    out[:, :10] = dates[days - first]
    out[:, 10] = ord(" ")
    out[:, 11:] = _time_table()[sod]
    offsets = np.arange(0, 19 * (n + 1), 19, dtype=np.int32)
    validity = None
    if col.null_count:
        validity = pa.array(pc.is_valid(col).to_numpy(zero_copy_only=False)).buffers()[1]
    return pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(out)],
                                 null_count=col.null_count)


def _civil_dates(days: np.ndarray) -> np.ndarray | None:
    """``uint8[K, 10]`` ``YYYY-MM-DD`` of days since 1970-01-01 (``int64[K]``), or ``None`` when
    a year is outside 0001-9999.  H. Hinnant, "chrono-Compatible Low-Level Date Algorithms",
    ``civil_from_days``."""
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    y = yoe + era * 400 + (m <= 2)
    if len(y) and (y.min() < 1 or y.max() > 9999):
        return None
    out = np.empty((len(days), 10), dtype=np.uint8)
    for i, div in enumerate((1000, 100, 10, 1)):
        out[:, i] = (y // div) % 10 + 48
    out[:, 4] = out[:, 7] = ord("-")
    out[:, 5], out[:, 6] = m // 10 + 48, m % 10 + 48
    out[:, 8], out[:, 9] = d // 10 + 48, d % 10 + 48
    return out


_TIME_TABLE: np.ndarray | None = None


def _time_table() -> np.ndarray:
    """``uint8[86400, 8]``: ``HH:MM:SS`` of every second of a day."""
    global _TIME_TABLE
    if _TIME_TABLE is None:
        s = np.arange(86400)
        t = np.empty((86400, 8), dtype=np.uint8)
        for pos, v in ((0, s // 3600), (3, (s // 60) % 60), (6, s % 60)):
            t[:, pos], t[:, pos + 1] = v // 10 + 48, v % 10 + 48
        t[:, 2] = t[:, 5] = ord(":")
        _TIME_TABLE = t
    return _TIME_TABLE


def render_csv(table: pa.Table, rtype: ReportType) -> bytes:
    """The CSV bytes of a report (see the module docstring for the format)."""
    buf = io.BytesIO()
    pacsv.write_csv(for_csv(table, rtype), buf,
                    write_options=pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    return buf.getvalue()


# -------------------------------------------------------------------------------------------------
# Bulk rendering: every row rendered once, reports assembled from byte slices.

def csv_header(rtype: ReportType) -> bytes:
    """The header line of a report of ``rtype`` (as :func:`render_csv` writes it)."""
    empty = pa.schema([pa.field(c, pa.string()) for c in rtype.column_types]).empty_table()
    buf = io.BytesIO()
    pacsv.write_csv(empty, buf, write_options=pacsv.WriteOptions(include_header=True,
                                                                 quoting_style="needed"))
    return buf.getvalue()


def render_lines(table: pa.Table, rtype: ReportType) -> pa.Array:
    """Each row's CSV record, as :func:`render_csv` would write it, without the header.

    Args:
        table: ``N`` rows of ``rtype`` (the type's columns; any order, extra columns ignored).

    Returns:
        ``large_binary[N]``: element ``i`` is row ``i``'s record including its ``\n``.  The
        concatenation of ``csv_header(rtype)`` and the records of some rows, in order, is byte for
        byte what ``render_csv`` writes for those rows.  Arrays of many rows' records are cut from
        one buffer, so ``take`` of this array and one slice of its data buffer assemble a report
        without a per-row loop.
    """
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.large_binary())
    buf = io.BytesIO()
    formatted = for_csv(table, rtype)
    pacsv.write_csv(formatted, buf, write_options=pacsv.WriteOptions(include_header=False,
                                                                     quoting_style="needed"))
    data = buf.getbuffer()
    raw = np.frombuffer(data, dtype=np.uint8)
    nl = raw == 0x0A
    ends = np.flatnonzero(nl)
    if len(ends) != n:
        # More newlines than records: some are inside quoted values, where they do not end a
        # record (RFC 4180 2.6).  Inner quotes are doubled, so the parity of the quotes before a
        # byte tells whether it is inside a value.  Every record ends with one newline, so with
        # exactly ``n`` of them no value holds one.  (This count replaced a ``match_substring``
        # per text column: 0.63 s -> 0.48 s for 300k event4_sinkhole_http rows.)
        inside = np.bitwise_xor.accumulate((raw == 0x22).astype(np.uint8)).astype(bool)
        nl &= ~inside
        ends = np.flatnonzero(nl)
    if len(ends) != n:  # pragma: no cover - the writer's record separator is always "\n"
        raise AssertionError(f"render_lines: {len(ends)} records for {n} rows")
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    # The writer's buffer itself becomes the data buffer (no copy of the batch's CSV bytes).
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class ReportSpool:
    """Report files assembled across batches, written to a temporary name beside the final one.

    :meth:`append` adds records (bytes) to a report, with its header first; :meth:`finish` writes
    every report into place (leaving a file that already has the same content untouched) and
    returns what was written.

    Records are buffered in memory up to ``buffer_bytes`` in all; when the buffers grow past it,
    the largest reports are appended to their temporary files (``.<name>.part``) until half the
    budget is free.  Most reports are small and are therefore written with one ``open`` each, at
    :meth:`finish`; the few large ones stream to disk and never hold more than the budget.  Files
    are not ``fsync``-ed: call :func:`sync_paths` on :attr:`dirs` before recording the reports as
    done.  Memory: at most ``buffer_bytes`` of records, plus one SHA-256 state per report.

    Args:
        buffer_bytes: the buffer budget in bytes (default 128 MiB).
    """

    def __init__(self, buffer_bytes: int = 128 << 20) -> None:
        # final path -> [tmp path or None (nothing on disk yet), sha256, rows, bytes, [chunks], buffered]
        self._open: dict[Path, list] = {}
        self.dirs: set[Path] = set()
        self.buffer_bytes = buffer_bytes
        self._buffered = 0
        self._spills: ParallelWrites | None = None

    @property
    def buffered(self) -> int:
        """Bytes held in memory now (at most about ``buffer_bytes``)."""
        return self._buffered

    def append(self, path: Path, header: bytes, data, rows: int) -> None:
        """Append ``data`` (``rows`` records, bytes-like; copied) to the report at ``path``."""
        st = self._open.get(path)
        if st is None:
            self.dirs.add(path.parent)
            st = self._open[path] = [None, hashlib.sha256(), 0, len(header), [header], len(header)]
            self._buffered += len(header)
        chunk = bytes(data)
        st[2] += rows
        st[3] += len(chunk)
        st[4].append(chunk)
        st[5] += len(chunk)
        self._buffered += len(chunk)
        if self._buffered > self.buffer_bytes:
            self._spill()

    def _spill(self) -> None:
        """Append the largest buffers to their temporary files until half the budget is free.

        The appends run on :data:`WRITE_THREADS` threads while the caller goes on; the next spill
        (or :meth:`finish`) first waits for them, so a file's appends never overtake each other.
        """
        if self._spills is None:
            self._spills = ParallelWrites()
        self._spills.wait()
        for path, st in sorted(self._open.items(), key=lambda kv: -kv[1][5]):
            if self._buffered <= self.buffer_bytes // 2 or not st[5]:
                break
            create = st[0] is None
            if create:
                st[0] = path.with_name(f".{path.name}.part")
            self._spills.submit(self._write, path, st[0], st[4], create, st[1])
            self._buffered -= st[5]
            st[4], st[5] = [], 0

    @staticmethod
    def _write(path: Path, tmp: Path, chunks: list, create: bool, digest=None) -> None:
        """Write ``chunks`` to ``tmp`` (created when ``create``, else appended to); ``digest``
        (a ``hashlib`` object), when given, is updated with them first (on the writing thread:
        hashing releases the GIL; a report's chunks are hashed in order because a file's writes
        never overlap)."""
        if digest is not None:
            for c in chunks:
                digest.update(c)
        if create:
            try:
                fh = open(tmp, "wb")
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(tmp, "wb")
        else:
            fh = open(tmp, "ab")
        with fh:
            fh.writelines(chunks)

    def finish(self) -> dict[Path, tuple[str, int, int]]:
        """Write every report into place.  Returns ``{path: (sha256 hex, rows, bytes)}``.

        The files are written by :data:`WRITE_THREADS` threads: creating tens of thousands of
        files is bound by the file system's latency, not the CPU, and overlaps well.
        """
        if self._spills is not None:
            self._spills.close()
            self._spills = None
        out: dict[Path, tuple[str, int, int]] = {}

        def place(item):
            path, st = item
            tmp, h, rows, size = st[0], st[1], st[2], st[3]
            for c in st[4]:
                h.update(c)
            digest = h.hexdigest()
            if same_content(path, size, digest):
                if tmp is not None:
                    tmp.unlink()
            else:
                create = tmp is None
                if create:
                    tmp = path.with_name(f".{path.name}.part")
                self._write(path, tmp, st[4], create)
                os.replace(tmp, path)
            st[4] = []
            return path, (digest, rows, size)

        with ThreadPoolExecutor(WRITE_THREADS) as ex:
            for path, res in ex.map(place, list(self._open.items()), chunksize=64):
                out[path] = res
        self._open.clear()
        self._buffered = 0
        return out


#: Threads that create and write files (report files, messages): file creation on ext4 here
#: costs ~0.2-0.5 ms of waiting per file and overlaps across threads (bench/README.md).
WRITE_THREADS = 8


class ParallelWrites:
    """File writes (``fn(*args)``, e.g. :func:`atomic_write`) run on :data:`WRITE_THREADS` threads,
    with at most ``max_pending`` queued (their data is held until written).

    :meth:`close` (or leaving the ``with`` block) waits for all of them and raises the first
    error.
    """

    def __init__(self, threads: int = WRITE_THREADS, max_pending: int = 64) -> None:
        self._ex = ThreadPoolExecutor(threads)
        self._pending: collections.deque = collections.deque()
        self.max_pending = max_pending

    def submit(self, fn, *args, **kwargs) -> None:
        """Queue ``fn(*args, **kwargs)``; waits while ``max_pending`` writes are queued."""
        self._pending.append(self._ex.submit(fn, *args, **kwargs))
        while len(self._pending) > self.max_pending:
            self._pending.popleft().result()

    def wait(self) -> None:
        """Wait for every queued write (the threads stay); raise the first error."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for every queued write and stop the threads; raise the first error."""
        try:
            self.wait()
        finally:
            self._ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ParallelWrites":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

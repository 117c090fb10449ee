"""Report files: naming and CSV rendering.

File name (Shadowserver convention, ``schema/shadowserver/report-filename.md``)::

    YYYY-MM-DD-<report type>-<recipient slug>-<filter>.csv

``<filter>`` says what the recipient's share was selected by (``asn``, ``cidr``, ``geo`` or a mix
joined by ``_``).  Neither the type nor the slug contains ``-``, so Shadowserver's regular
expression ``^(\\d{4}-\\d{2}-\\d{2})-([^-]+)-.+\\.csv$`` reads date and type back.

CSV: RFC 4180, header row, the type's columns in schema order, strings quoted, integers bare,
timestamps as ``YYYY-MM-DD HH:MM:SS`` (UTC), empty for null: the same shape as Shadowserver's files.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from herald.constituency.recipients import Recipient
from herald.schema.registry import TIMESTAMP_TYPE, ReportType


def report_filename(day: str, rtype: ReportType, recipient: Recipient, ext: str = "csv") -> str:
    """``YYYY-MM-DD-<type>-<slug>-<filter>.<ext>``."""
    return f"{day}-{rtype.name}-{recipient.slug}-{recipient.filter_label}.{ext}"


def for_csv(table: pa.Table, rtype: ReportType) -> pa.Table:
    """The type's columns in schema order, timestamps formatted as Shadowserver writes them."""
    cols = []
    for name, typ in rtype.column_types.items():
        col = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, typ)
        if typ == TIMESTAMP_TYPE:
            # whole seconds, as Shadowserver writes them (strftime's %S would add the fraction)
            col = pc.strftime(pc.cast(col, pa.timestamp("s", tz="UTC"), safe=False),
                              format="%Y-%m-%d %H:%M:%S", locale="C")
        cols.append(col)
    return pa.Table.from_arrays(cols, names=list(rtype.column_types))


def render_csv(table: pa.Table, rtype: ReportType) -> bytes:
    """The CSV bytes of a report (see the module docstring for the format)."""
    buf = io.BytesIO()
    pacsv.write_csv(for_csv(table, rtype), buf,
                    write_options=pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    return buf.getvalue()


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> str:
    """Write ``data`` to ``path`` via a temporary file and rename; returns the hex SHA-256.

    A file whose content is already ``data`` is left untouched (keeps its mtime on re-runs).

    Args:
        durable: ``fsync`` the file before the rename (default).  ``False`` leaves durability to
            the caller, which must call :func:`sync_paths` before it records the write as done
            (the daily run does this once for all its report files instead of once per file).
    """
    path = Path(path)
    digest = hashlib.sha256(data).hexdigest()
    if _same_content(path, len(data), digest):
        return digest
    # The temporary name is unique per writer (process id and thread id); O_EXCL refuses a leftover
    # of a crashed writer that had the same ids, which is then replaced.  The directory is created
    # only when the first attempt finds it missing (tens of thousands of files per run).
    tmp = path.with_name(f".{path.name[:200]}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _same_content(path: Path, size: int, digest: str) -> bool:
    """``path`` exists with ``size`` bytes whose SHA-256 is ``digest``."""
    try:
        if path.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest() == digest


def sync_paths(dirs: Iterable[Path]) -> None:
    """Make every file written with ``durable=False`` under ``dirs`` durable, with their names.

    One ``sync()`` flushes all dirty file data and metadata of the machine (Linux waits for it to
    complete), then each directory is ``fsync``-ed (POSIX: makes the renames durable on file
    systems where ``sync`` alone would not).  Tens of thousands of report files cost one flush
    instead of one ``fsync`` each.
    """
    os.sync()
    for d in sorted(set(dirs)):
        try:
            fd = os.open(d, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
    multiline = False
    for col in formatted.columns:
        if pa.types.is_string(col.type) and pc.any(pc.match_substring(col, "\n")).as_py():
            multiline = True
            break
    nl = raw == 0x0A
    if multiline:
        # A newline inside a quoted value does not end a record (RFC 4180 2.6); inner quotes are
        # doubled, so the parity of the quotes before a byte tells whether it is inside a value.
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

    def append(self, path: Path, header: bytes, data, rows: int) -> None:
        """Append ``data`` (``rows`` records, bytes-like; copied) to the report at ``path``."""
        st = self._open.get(path)
        if st is None:
            self.dirs.add(path.parent)
            st = self._open[path] = [None, hashlib.sha256(header), 0, len(header), [header], len(header)]
            self._buffered += len(header)
        chunk = bytes(data)
        st[1].update(chunk)
        st[2] += rows
        st[3] += len(chunk)
        st[4].append(chunk)
        st[5] += len(chunk)
        self._buffered += len(chunk)
        if self._buffered > self.buffer_bytes:
            self._spill()

    def _spill(self) -> None:
        """Append the largest buffers to their temporary files until half the budget is free."""
        for path, st in sorted(self._open.items(), key=lambda kv: -kv[1][5]):
            if self._buffered <= self.buffer_bytes // 2 or not st[5]:
                break
            self._flush(path, st)

    def _flush(self, path: Path, st: list) -> None:
        self._write(path, st)
        self._buffered -= st[5]
        st[4], st[5] = [], 0

    @staticmethod
    def _write(path: Path, st: list) -> None:
        """Append the buffered chunks of ``st`` to its temporary file (created on first use)."""
        if st[0] is None:
            st[0] = path.with_name(f".{path.name}.part")
            try:
                fh = open(st[0], "wb")
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(st[0], "wb")
        else:
            fh = open(st[0], "ab")
        with fh:
            fh.writelines(st[4])

    def finish(self) -> dict[Path, tuple[str, int, int]]:
        """Write every report into place.  Returns ``{path: (sha256 hex, rows, bytes)}``.

        The files are written by :data:`WRITE_THREADS` threads: creating tens of thousands of
        files is bound by the file system's latency, not the CPU, and overlaps well.
        """
        out: dict[Path, tuple[str, int, int]] = {}

        def place(item):
            path, st = item
            tmp, h, rows, size = st[0], st[1], st[2], st[3]
            digest = h.hexdigest()
            if _same_content(path, size, digest):
                if tmp is not None:
                    tmp.unlink()
            else:
                self._write(path, st)
                os.replace(st[0], path)
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

    def close(self) -> None:
        """Wait for every queued write; raise the first error."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ParallelWrites":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Buffered, atomic Parquet output of sensor events into the daily inbox.

A sensor adds one row per observation with :meth:`EventBatcher.add`.  Rows are kept in memory and
written when ``batch_rows`` rows are buffered (all report types together) or when the oldest buffered
row is ``batch_seconds`` old, whichever comes first, and on :meth:`EventBatcher.close`.

Files go to ``<inbox>/<YYYY-MM-DD>/<YYYY-MM-DD>-<report type>-<sensor>-<seq>.parquet`` (``seq``: 16 hex
digits of the write time in microseconds, then 16 random hex digits) where the
date is the UTC day of the rows' ``timestamp`` (a batch that spans midnight becomes one file per day).
Each file is written to a hidden temporary name in the same folder (``.<name>...tmp``), fsynced, renamed
with :func:`os.replace` and the folder is fsynced (:func:`herald.fsutil.atomic_writer`), so a reader
sees whole files or nothing.

Loss bound: the buffer never holds ``batch_rows`` rows once :meth:`add` returns, and a flush writes
synchronously, so a crash (``kill -9``, power loss after the fsync) loses at most ``batch_rows`` rows:
the rows of an unfinished flush or the rows still buffered, never both.  Rows older than
``batch_seconds`` are flushed by :meth:`tick`, which the servers call about once a second.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from herald.errors import StoreError
from herald.fsutil import atomic_writer
from herald.schema.registry import ReportType

log = logging.getLogger(__name__)

#: Names of the files the sensors write: ``<day>-<report type>-<sensor>-<seq>.parquet``.  Report
#: types, sensor names and ``seq`` contain no ``-``, so the name splits unambiguously; the daily run
#: can match inbox files with this pattern.
INBOX_NAME_RE = re.compile(
    r"^(?P<day>\d{4}-\d{2}-\d{2})-(?P<rtype>[A-Za-z0-9_]+)-(?P<sensor>[A-Za-z0-9_.]+)-(?P<seq>[0-9a-f]{32})\.parquet$"
)


def now_us() -> int:
    """Current UTC time as integer microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def day_of(us: int) -> str:
    """``YYYY-MM-DD`` of a UTC timestamp given in microseconds since the epoch."""
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc).strftime("%Y-%m-%d")


#: Sensor columns beyond the Shadowserver schema, kept as strings after the type's columns (the
#: daily run keeps extra columns of an input, as it does for CSV files).
EXTRA_COLUMNS = ("http_method",)


def rows_to_table(rtype: ReportType, rows: list[dict[str, Any]]) -> pa.Table:
    """Build a table with ``rtype.arrow_schema`` from row dicts, followed by the
    :data:`EXTRA_COLUMNS` that the rows carry (strings).

    ``timestamp`` values are integer microseconds (UTC); missing columns are null; other keys that
    are not columns of the type are ignored.

    Raises:
        pyarrow.ArrowInvalid / ArrowTypeError: a value does not fit its column type.
    """
    schema = rtype.arrow_schema
    n = len(rows)
    present: set[str] = set()
    for r in rows:
        present.update(r)
    arrays = []
    for f in schema:
        if f.name not in present:
            arrays.append(pa.nulls(n, f.type))  # most of the ~40 columns: cheap
            continue
        values = [r.get(f.name) for r in rows]
        try:
            arrays.append(pa.array(values, type=f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Column types are derived from the schema (registry), so a sensor may hand "1" for an
            # int64 column or 1 for a string column; convert rather than lose the batch.
            if pa.types.is_integer(f.type):
                values = [int(v) if isinstance(v, str) else v for v in values]
            elif pa.types.is_string(f.type):
                values = [v if v is None or isinstance(v, str) else str(v) for v in values]
            arrays.append(pa.array(values, type=f.type))
    for name in EXTRA_COLUMNS:
        if name in present and name not in schema.names:
            schema = schema.append(pa.field(name, pa.string()))
            arrays.append(pa.array([None if r.get(name) is None else str(r.get(name)) for r in rows],
                                   type=pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` as Parquet at ``path``: temporary file in the same folder, fsync, rename, fsync
    of the folder (:func:`herald.fsutil.atomic_writer`).  The temporary name starts with ``.`` and
    ends ``.tmp``, so inbox readers skip it.

    Raises:
        OSError: the write or the rename failed (the temporary file is removed).
    """
    with atomic_writer(path, sync_dir=True) as fh:
        pq.write_table(table, fh, compression="zstd")


class EventBatcher:
    """Buffers event rows per report type and writes them to the inbox in batches.

    Args:
        inbox: the inbox folder (``paths.inbox``); day folders are created under it.
        sensor: sensor name, a part of file names (no ``-``).
        batch_rows: flush when this many rows are buffered (all types together); >= 1.
        batch_seconds: flush when the oldest buffered row is this old, in seconds (see :meth:`tick`).
        clock: monotonic seconds (default :func:`time.monotonic`; tests pass their own).

    Not thread-safe: call it from one thread (the asyncio loop of the sensor).

    Attributes:
        rows_added, rows_written: counters since start.
        files_written: list of the paths written (kept for tests and the load benchmark; the last
            10 000 only).
    """

    def __init__(self, inbox: Path, sensor: str, batch_rows: int = 1000, batch_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if "-" in sensor or "/" in sensor or not sensor:
            raise ValueError(f"sensor name {sensor!r} must be non-empty without '-' or '/'")
        if batch_rows < 1 or batch_seconds <= 0:
            raise ValueError("batch_rows must be >= 1 and batch_seconds > 0")
        self.inbox = Path(inbox)
        self.sensor = sensor
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.clock = clock
        self._rows: dict[str, tuple[ReportType, list[dict[str, Any]]]] = {}
        self._count = 0
        self._oldest: float | None = None  # monotonic time of the oldest buffered row
        self.rows_added = 0
        self.rows_written = 0
        self.files_written: list[Path] = []

    @property
    def buffered(self) -> int:
        """Rows waiting to be written."""
        return self._count

    def add(self, rtype: ReportType, row: dict[str, Any]) -> None:
        """Buffer one row of type ``rtype`` (``row["timestamp"]`` in UTC microseconds); flushes when
        the buffer reaches ``batch_rows``.

        Raises:
            StoreError: the flush failed (rows stay buffered and are retried by the next flush).
        """
        slot = self._rows.get(rtype.name)
        if slot is None:
            slot = self._rows[rtype.name] = (rtype, [])
        slot[1].append(row)
        self._count += 1
        self.rows_added += 1
        if self._oldest is None:
            self._oldest = self.clock()
        if self._count >= self.batch_rows:
            self.flush()

    def tick(self) -> None:
        """Flush when the oldest buffered row is at least ``batch_seconds`` old.  Call periodically.

        Raises:
            StoreError: the flush failed.
        """
        if self._oldest is not None and self.clock() - self._oldest >= self.batch_seconds:
            self.flush()

    def flush(self) -> list[Path]:
        """Write every buffered row now; returns the files written (one per type and UTC day).

        Raises:
            StoreError: a file could not be written; rows of types not yet written stay buffered.
        """
        written: list[Path] = []
        for name in list(self._rows):
            rtype, rows = self._rows[name]
            by_day: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                by_day.setdefault(day_of(r["timestamp"]), []).append(r)
            done = 0
            for day, drows in sorted(by_day.items()):
                folder = self.inbox / day
                path = folder / f"{day}-{rtype.name}-{self.sensor}-{self._seq()}.parquet"
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    write_atomic(rows_to_table(rtype, drows), path)
                except (OSError, pa.ArrowException) as exc:
                    # Keep the rows of days not yet written, so a retry does not duplicate.
                    self._rows[name] = (rtype, [r for r in rows if day_of(r["timestamp"]) >= day])
                    self._count -= done
                    raise StoreError(f"sinkhole: cannot write {path}: {exc}") from exc
                done += len(drows)
                self.rows_written += len(drows)
                written.append(path)
            del self._rows[name]
            self._count -= done
        self._oldest = None if self._count == 0 else self.clock()
        self.files_written.extend(written)
        del self.files_written[:-10_000]
        if written:
            log.info("sinkhole %s: wrote %d file(s), %d rows total", self.sensor, len(written), self.rows_written)
        return written

    @staticmethod
    def _seq() -> str:
        # 32 hex digits: write time in microseconds (sorts files in write order) + 64 random bits
        # (unique across processes and restarts).
        return f"{now_us():016x}{uuid.uuid4().hex[:16]}"

    def close(self) -> None:
        """Flush everything (call on shutdown).

        Raises:
            StoreError: the final flush failed.
        """
        self.flush()

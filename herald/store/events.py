"""The event store: normalized, enriched events as Parquet, partitioned by day and report type.

Layout (docs/architecture.md, "Two stores")::

    <data>/events/date=YYYY-MM-DD/type=<report type>/<input sha256[:32]>.parquet

One Parquet file per input file and day, named by the SHA-256 of the input's bytes, so ingesting the
same file again replaces the same Parquet file (idempotent) instead of adding duplicates.  Files are
written to a hidden temporary name in the same directory and renamed
(:func:`herald.fsutil.atomic_path`).  DuckDB reads a partition with ``read_parquet`` for routing,
statistics and the Reports API.

The store may also live on S3 (``[paths] events = "s3://bucket/prefix"``,
:mod:`herald.eventstore`): the functions that take a ``store``
(:class:`~herald.eventstore.EventStore`) then write through :class:`pyarrow.fs.S3FileSystem`
(one object per file, visible only once complete, so no temporary name is needed).  The listing
functions (:func:`store_days`, :func:`store_types`, :func:`store_files`) and
:func:`store_columns` read any store (the dashboard and ``herald operations stats`` use them);
:func:`event_days`, :func:`event_types` and :func:`event_files` are the same for the default
local store ``<data>/events``.
"""

from __future__ import annotations

import queue
import threading
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from herald.eventstore import EventStore
from herald.fsutil import atomic_path


def events_root(data_dir: Path) -> Path:
    """``<data>/events``: the root of the event store."""
    return Path(data_dir) / "events"


def day_dir(data_dir: Path, day: str | date) -> Path:
    """``<data>/events/date=<day>``: one day's partitions (``day`` as ``YYYY-MM-DD`` or a date)."""
    if isinstance(day, date):
        day = day.isoformat()
    return events_root(data_dir) / f"date={day}"


def type_dir(data_dir: Path, day: str | date, report_type: str) -> Path:
    """``<data>/events/date=<day>/type=<report_type>``: one partition."""
    return day_dir(data_dir, day) / f"type={report_type}"


def partition(store: EventStore, day: str, report_type: str) -> str:
    """The location of one partition of ``store``: ``<root>/date=<day>/type=<report_type>``."""
    return store.path(f"date={day}", f"type={report_type}")


def write_events(data_dir: Path, day: str, report_type: str, key: str,
                 batches, schema: pa.Schema, *, store: EventStore | None = None
                 ) -> tuple[Path | str, int]:
    """Stream one input's events for ``day`` into the store, atomically.

    Args:
        data_dir: the data directory.
        day: ``YYYY-MM-DD``.
        report_type: the report type name.
        key: the input's identity (hex SHA-256); the file is ``<key[:32]>.parquet``.
        batches: iterable of ``pyarrow.RecordBatch`` (or a ``pyarrow.Table``) of ``schema``;
            consumed one batch at a time, so memory stays bounded by one batch.
        schema: the Arrow schema of the rows.
        store: the event store; ``None``: the local folder ``<data_dir>/events``.

    Returns:
        ``(path, rows written)``: a :class:`~pathlib.Path` in a local store, an ``s3://`` URI
        (``str``) in an S3 store.

    Raises:
        OSError: the file cannot be written (S3: the object is deleted again when the write
            fails after it was started).
    """
    if store is not None and not store.is_local:
        return _write_remote(store, day, report_type, key, batches, schema)
    base = type_dir(data_dir, day, report_type) if store is None else \
        Path(partition(store, day, report_type))
    final = base / f"{key[:32]}.parquet"
    if isinstance(batches, pa.Table):
        batches = batches.to_batches()
    # Not fsync-ed here (as before): the run's one flush (fsutil.sync_paths) covers it.
    # Owner-only: the events are the day's raw addresses (personal data).
    with atomic_path(final, durable=False, mode=0o600) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            rows = _write_overlapped(writer, batches)
    return final, rows


def _write_remote(store: EventStore, day: str, report_type: str, key: str, batches,
                  schema: pa.Schema) -> tuple[str, int]:
    """:func:`write_events` into a non-local store: one output stream of the store's file system
    (S3: a multipart upload completed when the stream closes); on an error the object is deleted."""
    final = f"{partition(store, day, report_type)}/{key[:32]}.parquet"
    if isinstance(batches, pa.Table):
        batches = batches.to_batches()
    try:
        with store.filesystem().open_output_stream(store.fs_path(final)) as sink:
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                rows = _write_overlapped(writer, batches)
    except BaseException:
        store.delete_file(final)
        raise
    return final, rows


def _write_overlapped(writer: pq.ParquetWriter, batches) -> int:
    """Write ``batches`` (an iterable of ``pyarrow.RecordBatch``) with ``writer`` in a second
    thread while the caller's iterator produces the next ones; returns the rows written.

    The batches are the end of a lazy pipeline (CSV parsing, typing, enrichment); Parquet encoding
    and compression run in Arrow without the GIL, so on two cores they overlap that work instead of
    following it.  At most two batches wait in between (memory stays bounded).  The batches are
    written in order, so the file's bytes are the same as a plain loop's.  An exception of either
    side is raised here after the thread has stopped.
    """
    q: queue.Queue = queue.Queue(maxsize=2)
    failed: list[BaseException] = []

    def work() -> None:
        while True:
            b = q.get()
            if b is None:
                return
            if not failed:  # after a failure, only drain so that the producer never blocks
                try:
                    writer.write_batch(b)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    failed.append(exc)

    thread = threading.Thread(target=work, name="herald-parquet-writer", daemon=True)
    thread.start()
    rows = 0
    try:
        for b in batches:
            if failed:
                break
            if b.num_rows:
                q.put(b)
                rows += b.num_rows
    finally:
        q.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return rows


def store_days(store: EventStore) -> list[date]:
    """The days that have a partition folder in ``store`` (``date=YYYY-MM-DD``; a local folder or
    S3, listed through :meth:`EventStore.list_dir`), sorted; other names are ignored."""
    days = []
    for name, is_dir in store.list_dir(store.root):
        if not is_dir or not name.startswith("date="):
            continue
        try:
            day = date.fromisoformat(name.removeprefix("date="))
        except ValueError:
            continue
        if name == f"date={day.isoformat()}":
            days.append(day)
    return sorted(days)


def store_types(store: EventStore, day: str | date) -> list[str]:
    """The report types that have a partition on ``day`` (``type=<name>``) in ``store``, sorted;
    a partition may still be empty (see :func:`store_files`)."""
    return sorted(name.removeprefix("type=") for name, is_dir in
                  store.list_dir(store.path(f"date={day}")) if is_dir and name.startswith("type="))


def store_files(store: EventStore, day: str | date, report_type: str) -> list[str]:
    """The locations (local paths or ``s3://`` URIs) of the Parquet files of one day and type in
    ``store``, sorted by name (deterministic); temporary files being written (hidden:
    ``.<name>...tmp``) are not listed."""
    where = partition(store, str(day), report_type)
    return [store.path(f"date={day}", f"type={report_type}", name)
            for name, is_dir in store.list_dir(where)
            if not is_dir and name.endswith(".parquet") and not name.startswith(".")]


def event_days(data_dir: Path) -> list[date]:
    """:func:`store_days` of the default store ``<data_dir>/events``."""
    return store_days(EventStore.local(data_dir))


def event_types(data_dir: Path, day: str | date) -> list[str]:
    """:func:`store_types` of the default store ``<data_dir>/events``."""
    return store_types(EventStore.local(data_dir), day)


def event_files(data_dir: Path, day: str | date, report_type: str) -> list[Path]:
    """:func:`store_files` of the default store ``<data_dir>/events``, as paths."""
    return [Path(p) for p in store_files(EventStore.local(data_dir), day, report_type)]


def store_columns(store: EventStore, files: list[str], columns: list[str],
                  batch_rows: int = 131_072) -> pa.RecordBatchReader:
    """The ``columns`` of ``files`` (locations in ``store``) as one stream of ``string`` columns
    (a column a file lacks is null), read by pyarrow through the store's file system one batch
    of at most ``batch_rows`` rows at a time: what DuckDB scans for a store its ``read_parquet``
    cannot reach (S3 would need DuckDB's ``httpfs`` extension).  Memory: one batch.  The stream
    can be read once."""
    schema = pa.schema([pa.field(c, pa.string()) for c in columns])

    def batches():
        for f in files:
            pf = store.parquet_file(f)
            present = [c for c in columns if c in pf.schema_arrow.names]
            for b in pf.iter_batches(batch_size=batch_rows, columns=present):
                yield pa.RecordBatch.from_arrays(
                    [b.column(c).cast(pa.string()) if c in present
                     else pa.nulls(b.num_rows, pa.string()) for c in columns], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def store_column_names(store: EventStore, files: list[str]) -> set[str]:
    """The union of the column names of ``files`` (locations in ``store``; read from their
    footers)."""
    return {n for f in files for n in store.parquet_file(f).schema_arrow.names}

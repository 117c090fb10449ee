"""De-duplication within a day: the distinct events of one report type, in input order.

Two rows are the same event when all the type's columns are equal.  :func:`first_occurrences` finds
each event's first occurrence with one DuckDB aggregate over two 64-bit row hashes (it spills to
disk beyond :data:`DUCKDB_MEMORY_LIMIT`); :func:`distinct_batches` then streams the kept rows from
the Parquet files in bounded Arrow tables, so memory does not grow with the day.

With a non-local event store (S3, :mod:`herald.eventstore`) DuckDB cannot ``read_parquet`` the
files (that needs its ``httpfs`` extension): pyarrow reads them through the store's file system and
DuckDB hashes the Arrow batches (:func:`arrow_row_source`), with the same expression and an
explicit row number, so the first-occurrence masks are the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from herald.eventstore import EventStore
from herald.schema.registry import ReportType


#: At most this many distinct events per batch of the route/report stage.
ROUTE_BATCH_ROWS = 250_000
#: Cells (rows x columns) per batch of the route/report stage: a batch costs about 100-150 bytes
#: per cell while it is routed and rendered (the table, its CSV records, the records in recipient
#: order), so wide types (event4_sinkhole_http: 39 columns, scan_ssl: 76) get fewer rows.
ROUTE_BATCH_CELLS = 4_000_000


def batch_rows_for(rtype: ReportType) -> int:
    """Rows per route batch of ``rtype``: :data:`ROUTE_BATCH_CELLS` over its number of columns,
    between 16,384 and :data:`ROUTE_BATCH_ROWS`."""
    return int(min(ROUTE_BATCH_ROWS, max(16_384, ROUTE_BATCH_CELLS // max(1, len(rtype.columns)))))


#: Memory DuckDB may use for the de-duplication aggregate before it spills to disk.
DUCKDB_MEMORY_LIMIT = "500MB"


def duckdb_connection(tmp: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a memory limit and a spill directory (the day's events can be
    larger than memory: sorting and de-duplicating spill to ``tmp``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    # preserve_insertion_order off: no query here needs DuckDB's output order (the de-duplication
    # returns row keys), and with it on DuckDB spills less well (bench/README.md).
    return duckdb.connect(config={"memory_limit": DUCKDB_MEMORY_LIMIT, "temp_directory": str(tmp),
                                  "threads": max(1, min(os.cpu_count() or 1, 4)),
                                  "preserve_insertion_order": False})


def _sql_str(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


#: The row-number column of :func:`arrow_row_source` (DuckDB's ``file_row_number``).
ROW_COLUMN = "__herald_file_row_number"


def arrow_row_source(pf: pq.ParquetFile, columns: list[str], batch_rows: int = 131_072
                     ) -> pa.RecordBatchReader:
    """The ``columns`` of a Parquet file read by pyarrow, plus :data:`ROW_COLUMN` (``int64``, the
    row's 0-based position in the file, as DuckDB's ``file_row_number``), as a stream of batches
    of at most ``batch_rows`` rows for DuckDB to scan (memory: one batch)."""
    schema = pf.schema_arrow
    fields = [schema.field(c) for c in columns] + [pa.field(ROW_COLUMN, pa.int64())]
    out = pa.schema(fields)

    def gen():
        pos = 0
        for b in pf.iter_batches(batch_size=batch_rows, columns=columns):
            n = b.num_rows
            yield pa.RecordBatch.from_arrays(
                [*b.columns, pa.array(np.arange(pos, pos + n, dtype=np.int64))], schema=out)
            pos += n

    return pa.RecordBatchReader.from_batches(out, gen())


def _open(f: str, store: EventStore | None) -> pq.ParquetFile:
    """The stored file ``f`` (a local path, or a location of ``store``)."""
    return pq.ParquetFile(f) if store is None or store.is_local else store.parquet_file(f)


def first_occurrences(con: duckdb.DuckDBPyConnection, files: list[str], rtype: ReportType,
                      store: EventStore | None = None) -> list[np.ndarray]:
    """Which rows of ``files`` are the first occurrence of their event within the day.

    Two rows are the same event when all the type's columns are equal (a column a file lacks is
    null).  Each row is hashed twice by DuckDB (``hash`` over the type's columns in schema order
    and in reverse order: 128 bits; two distinct events are merged with a probability of about
    ``n**2 / 2**129``, about 1e-25 for a day of 15M events of one type), and one ``GROUP BY`` on the
    two hashes keeps the smallest (file index, row number) of each: the day's first occurrence in
    input order.  DuckDB spills the aggregate to disk beyond its memory limit.

    ``store``: where ``files`` are (``None`` or a local store: DuckDB's ``read_parquet``; another
    store: pyarrow reads them through its file system, :func:`arrow_row_source`).

    Returns:
        one ``bool[rows of file i]`` mask per file.
    """
    selects = []
    sizes = []
    arrow = store is not None and not store.is_local
    views = []
    for i, f in enumerate(files):
        pf = _open(f, store)
        names = set(pf.schema_arrow.names)
        sizes.append(pf.metadata.num_rows)
        exprs = [f'"{c}"' if c in names else "NULL" for c in rtype.columns]
        if arrow:
            view = f"_herald_rows_{i}"
            con.register(view, arrow_row_source(pf, [c for c in rtype.columns if c in names]))
            views.append(view)
            source, row = view, f'"{ROW_COLUMN}"'
        else:
            source, row = f"read_parquet({_sql_str(f)}, file_row_number=true)", "file_row_number"
        selects.append(
            f"SELECT ({i}::BIGINT << 40) + {row} AS k, hash({', '.join(exprs)}) AS h1, "
            f"hash({', '.join(reversed(exprs))}) AS h2 "
            f"FROM {source}")
    try:
        keys = con.sql(f"SELECT min(k) AS k FROM ({' UNION ALL '.join(selects)}) GROUP BY h1, h2"
                       ).fetchnumpy()["k"]
    finally:
        for view in views:
            con.unregister(view)
    keys = np.asarray(keys, dtype=np.int64)
    masks = [np.zeros(n, dtype=bool) for n in sizes]
    file_of = keys >> 40
    row_of = keys & ((1 << 40) - 1)
    for i in range(len(files)):
        masks[i][row_of[file_of == i]] = True
    return masks


def distinct_batches(con: duckdb.DuckDBPyConnection, files: list[str], rtype: ReportType,
                      batch_rows: int | None = None, store: EventStore | None = None
                      ) -> Iterator[pa.Table]:
    """The distinct events (the type's columns) of ``files``, each at its first occurrence, in input
    order (files in the given order, rows in file order), as tables of at most ``batch_rows`` rows of
    ``rtype.arrow_schema``.

    De-duplication (:func:`first_occurrences`) is one DuckDB aggregate over two 64-bit row hashes;
    the rows then stream from the Parquet files with pyarrow, so memory does not grow with the day
    (a ``bool`` per row for the masks).  ``store``: where ``files`` are (``None``: local paths).
    """
    masks = first_occurrences(con, files, rtype, store)
    batch_rows = batch_rows or batch_rows_for(rtype)
    schema = rtype.arrow_schema
    for f, keep in zip(files, masks):
        pf = _open(f, store)
        present = [c for c in rtype.columns if c in pf.schema_arrow.names]
        pos = 0
        for batch in pf.iter_batches(batch_size=batch_rows, columns=present):
            sel = keep[pos:pos + batch.num_rows]
            pos += batch.num_rows
            if not sel.any():
                continue
            if not sel.all():
                batch = batch.filter(pa.array(sel))
            n = batch.num_rows
            cols = [batch.column(c).cast(schema.field(c).type) if c in present
                    else pa.nulls(n, schema.field(c).type) for c in rtype.columns]
            yield pa.Table.from_arrays(cols, schema=schema)


def stored_rows(files: list[str], store: EventStore | None = None) -> int:
    """The number of rows of the Parquet ``files`` (from their footers; ``store``: where they are,
    ``None`` for local paths)."""
    return sum(_open(f, store).metadata.num_rows for f in files)

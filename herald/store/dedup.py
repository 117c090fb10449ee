"""De-duplication within a day: the distinct events of one report type, in input order.

Two rows are the same event when all the type's columns are equal.  :func:`first_occurrences` finds
each event's first occurrence with one DuckDB aggregate over two 64-bit row hashes (it spills to
disk beyond :data:`DUCKDB_MEMORY_LIMIT`); :func:`distinct_batches` then streams the kept rows from
the Parquet files in bounded Arrow tables, so memory does not grow with the day.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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


def first_occurrences(con: duckdb.DuckDBPyConnection, files: list[str], rtype: ReportType
                       ) -> list[np.ndarray]:
    """Which rows of ``files`` are the first occurrence of their event within the day.

    Two rows are the same event when all the type's columns are equal (a column a file lacks is
    null).  Each row is hashed twice by DuckDB (``hash`` over the type's columns in schema order
    and in reverse order: 128 bits; two distinct events are merged with a probability of about
    ``n**2 / 2**129``, about 1e-25 for a day of 15M events of one type), and one ``GROUP BY`` on the
    two hashes keeps the smallest (file index, row number) of each: the day's first occurrence in
    input order.  DuckDB spills the aggregate to disk beyond its memory limit.

    Returns:
        one ``bool[rows of file i]`` mask per file.
    """
    selects = []
    sizes = []
    for i, f in enumerate(files):
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        sizes.append(pf.metadata.num_rows)
        exprs = [f'"{c}"' if c in names else "NULL" for c in rtype.columns]
        selects.append(
            f"SELECT ({i}::BIGINT << 40) + file_row_number AS k, hash({', '.join(exprs)}) AS h1, "
            f"hash({', '.join(reversed(exprs))}) AS h2 "
            f"FROM read_parquet({_sql_str(f)}, file_row_number=true)")
    keys = con.sql(f"SELECT min(k) AS k FROM ({' UNION ALL '.join(selects)}) GROUP BY h1, h2"
                   ).fetchnumpy()["k"]
    keys = np.asarray(keys, dtype=np.int64)
    masks = [np.zeros(n, dtype=bool) for n in sizes]
    file_of = keys >> 40
    row_of = keys & ((1 << 40) - 1)
    for i in range(len(files)):
        masks[i][row_of[file_of == i]] = True
    return masks


def distinct_batches(con: duckdb.DuckDBPyConnection, files: list[str], rtype: ReportType,
                      batch_rows: int | None = None) -> Iterator[pa.Table]:
    """The distinct events (the type's columns) of ``files``, each at its first occurrence, in input
    order (files in the given order, rows in file order), as tables of at most ``batch_rows`` rows of
    ``rtype.arrow_schema``.

    De-duplication (:func:`first_occurrences`) is one DuckDB aggregate over two 64-bit row hashes;
    the rows then stream from the Parquet files with pyarrow, so memory does not grow with the day
    (a ``bool`` per row for the masks).
    """
    masks = first_occurrences(con, files, rtype)
    batch_rows = batch_rows or batch_rows_for(rtype)
    schema = rtype.arrow_schema
    for f, keep in zip(files, masks):
        pf = pq.ParquetFile(f)
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


def stored_rows(files: list[str]) -> int:
    """The number of rows of the Parquet ``files`` (from their footers)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

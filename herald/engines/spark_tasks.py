"""The functions Spark runs in its Python workers (:mod:`herald.engines.spark` plans them).

Each is a stage function of the local plan wrapped Arrow in → Arrow out (or, for ingest, path in →
:class:`~herald.store.ingest.StoredInput` out).  Nothing big travels in a closure: the IP data is
loaded from a path inside the task and the recipients come as a Spark broadcast; both are cached
per Python worker (Spark reuses its workers), so a worker loads them once per run.

- :func:`ingest_task` -- :func:`herald.store.ingest.ingest_input` of one input file;
- :func:`row_hashes` -- per stored row its order key ``k = (file index << 40) + row`` and the two
  64-bit DuckDB hashes the local de-duplication (:func:`herald.store.dedup.first_occurrences`)
  groups by -- the same SQL expression, so both engines keep exactly the same rows;
- :func:`route_chunk` -- one chunk of one file's kept rows: :meth:`herald.route.Router.route`,
  :func:`herald.reports.render.render_lines`, out ``(rid, k, line, jline)``;
- :func:`write_reports` -- a partition's records sorted by ``(type, recipient, k)`` (``k``: the
  local engine's order) streamed into report files with :class:`herald.reports.render.ReportSpool`,
  out ``(t, rid, path, sha256, rows, size, intelmq)``;
- :func:`route_type_task` -- a run with a routing policy (abuse contacts, inhibitions, windows):
  :func:`herald.reports.write.route_and_write` of one whole report type with the broadcast policy
  (:func:`shipped_policy`; the abuse-contact data is loaded in the task, :func:`task_policy`),
  out its :class:`~herald.reports.write.TypeReports` with the automatic recipients it met.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: ``k`` = (file index << ROW_BITS) + row number in the file (as in :mod:`herald.store.dedup`).
ROW_BITS = 40
#: Sentinel recipient ids of :func:`route_chunk`'s count rows (their ``k`` holds the count).
REPORTED, DISTINCT = -1, -2

#: Output schema (Spark DDL) of :func:`row_hashes`, :func:`route_chunk`, :func:`write_reports`.
HASH_SCHEMA = "t int, k long, h1 long, h2 long"
LINE_SCHEMA = "t int, rid int, k long, line binary, jline binary"
REPORT_SCHEMA = "t int, rid int, path string, sha256 string, rows long, size long, intelmq string"

_CACHE: dict = {}


def _cached(key, build):
    """``build()`` once per Python worker and ``key`` (the worker is reused across tasks)."""
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = build()
    return _CACHE[key]


def load_ipdata(path: str | None):
    """The IP data of the run: the table saved at ``path``, or the embedded default (``None``)."""
    from herald.enrich.ipdata import IPData

    return _cached(("ipdata", path), lambda: IPData.load(path) if path else IPData.default())


def ingest_task(item: tuple[str, str], *, day: str, data_dir: str, registry,
                ipdata_path: str | None, overwrite: bool, store=None):
    """Ingest one input ``(path, sha256)`` (:func:`herald.store.ingest.ingest_input`) into
    ``store`` (:class:`herald.eventstore.EventStore`, ``None``: ``<data_dir>/events``; an S3
    store reads its credentials from the executor's environment)."""
    from herald.store.ingest import ingest_input

    path, sha = item
    return ingest_input(Path(path), sha, day=day, data_dir=Path(data_dir), registry=registry,
                        ipdata=load_ipdata(ipdata_path), overwrite_enrichment=overwrite,
                        store=store)


def shipped_policy(policy):
    """What the driver broadcasts of the run's :class:`herald.reports.policy.RoutingPolicy`: a
    copy without the abuse-contact data (it can be as large as a RIR's database; each worker loads
    it from ``<data>/contacts/``), and the data's generation the driver loaded (``None`` without
    abuse-contact routing).  The policy itself is not changed.

    Returns:
        ``(policy copy, generation or None)``; the copy pickles with the standard pickler (the
        router, its recipients, overrides, stored names, inhibitions, windows: small).
    """
    import copy

    if policy.abuse is None:
        return policy, None
    shipped = copy.copy(policy)
    shipped.abuse = copy.copy(policy.abuse)
    shipped.abuse.data = None
    return shipped, policy.abuse.data.manifest["generation"]


def task_policy(policy_bc, token: str, data_dir: str, generation: str | None):
    """The run's policy in a Python worker: the broadcast copy (:func:`shipped_policy`) with the
    abuse-contact data of ``generation`` loaded from ``data_dir`` (:func:`herald.contacts.store.load_contacts`),
    both cached per worker (``token`` names the run's broadcast).

    Raises:
        ContactDataError: the generation is gone (a newer ``herald contacts import`` during the run).
    """
    def build():
        policy = policy_bc.value
        if generation is not None:
            from herald.contacts.store import load_contacts

            policy.abuse.data = _cached(("contacts", data_dir, generation),
                                        lambda: load_contacts(data_dir, generation))
        return policy

    return _cached(("policy", token), build)


def route_type_task(job: tuple[str, list[str]], *, policy_bc, token: str, generation: str | None,
                    data_dir: str, reports_dir: str, day: str, registry, intelmq: bool,
                    memory_limit_mb: int, store=None):
    """Route and write one report type ``(type name, stored files in input order)`` under the
    run's routing policy: :func:`herald.reports.write.route_and_write` with the policy of
    :func:`task_policy`, as the local stage pool's type job does.  DuckDB (one thread, at most
    ``memory_limit_mb`` MB) spills to a temporary folder on the executor's local disk.  The
    re-notification records of earlier days are read from, and the day's record written to,
    ``<data>/notified/`` (a shared path on a cluster).  ``store``: the event store the files are
    in (``None``: local paths).

    Returns:
        the type's :class:`~herald.reports.write.TypeReports`: recipient indexes of the task's own
        list, the automatic recipients it met in ``contacts`` (for the driver's
        :meth:`herald.reports.policy.RoutingPolicy.merge`), pair counts, seconds.
    """
    import shutil
    import tempfile

    from herald.reports.write import route_and_write
    from herald.store.dedup import duckdb_connection

    type_name, files = job
    policy = task_policy(policy_bc, token, data_dir, generation)
    tmp = Path(tempfile.mkdtemp(prefix="herald-duckdb-"))
    con = duckdb_connection(tmp)
    try:
        con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        con.execute("SET threads = 1")
        return route_and_write(con, Path(reports_dir), day, registry.get(type_name), files,
                               policy.router, intelmq=intelmq, policy=policy, store=store)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)


def row_hashes(batches: Iterator[pa.RecordBatch], columns: list[list[str]], store=None
               ) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` over ``(t, fidx, path)`` rows (report type index, file index, stored file):
    every stored row's ``(t, k, h1, h2)``; ``columns[t]`` are the columns of type ``t``.

    The expression is the one of :func:`herald.store.dedup.first_occurrences` (``hash`` of the
    type's columns in schema order and in reverse, a column the file lacks is ``NULL``), run by
    DuckDB on the file; the unsigned hashes are reinterpreted as ``int64`` for Spark.  With a
    non-local ``store`` (:class:`herald.eventstore.EventStore`) pyarrow reads the file through
    the store's file system and DuckDB hashes its batches
    (:func:`herald.store.dedup.arrow_row_source`, as the local de-duplication does then).
    """
    from herald.store.dedup import ROW_COLUMN, arrow_row_source

    arrow = store is not None and not store.is_local
    con = duckdb.connect(config={"threads": 1, "memory_limit": "256MB"})
    try:
        for batch in batches:
            for t, fidx, path in zip(*(batch.column(c).to_pylist() for c in ("t", "fidx", "path"))):
                pf = store.parquet_file(path) if arrow else pq.ParquetFile(path)
                names = set(pf.schema_arrow.names)
                exprs = [f'"{c}"' if c in names else "NULL" for c in columns[t]]
                if arrow:
                    con.register("_herald_rows", arrow_row_source(
                        pf, [c for c in columns[t] if c in names]))
                    source, row = "_herald_rows", f'"{ROW_COLUMN}"'
                else:
                    source = "read_parquet('" + path.replace("'", "''") + "', file_row_number=true)"
                    row = "file_row_number"
                reader = con.sql(
                    f"SELECT ({int(fidx)}::BIGINT << {ROW_BITS}) + {row} AS k, "
                    f"hash({', '.join(exprs)}) AS h1, hash({', '.join(reversed(exprs))}) AS h2 "
                    f"FROM {source}").fetch_record_batch(131_072)
                for b in reader:
                    yield pa.RecordBatch.from_arrays(
                        [pa.nulls(b.num_rows, pa.int32()).fill_null(t), b.column(0).cast(pa.int64()),
                         pa.array(b.column(1).to_numpy().view(np.int64)),
                         pa.array(b.column(2).to_numpy().view(np.int64))], names=["t", "k", "h1", "h2"])
                if arrow:
                    con.unregister("_herald_rows")
    finally:
        con.close()


def read_rows(path: str, rtype, start: int, stop: int, store=None) -> pa.Table:
    """Rows ``start:stop`` of a stored Parquet file as a table of ``rtype.arrow_schema`` (only the
    row groups that hold them are read; casts as :func:`herald.store.dedup.distinct_batches`).
    ``store``: the event store ``path`` is in (``None``: a local path)."""
    pf = store.parquet_file(path) if store is not None else pq.ParquetFile(path)
    md = pf.metadata
    present = [c for c in rtype.columns if c in pf.schema_arrow.names]
    groups, pos, first = [], 0, None
    for g in range(md.num_row_groups):
        n = md.row_group(g).num_rows
        if pos < stop and pos + n > start:
            groups.append(g)
            first = pos if first is None else first
        pos += n
    schema = rtype.arrow_schema
    if not groups:
        return schema.empty_table()
    t = pf.read_row_groups(groups, columns=present).slice(start - first, stop - start)
    n = t.num_rows
    cols = [t.column(c).cast(schema.field(c).type) if c in present
            else pa.nulls(n, schema.field(c).type) for c in rtype.columns]
    return pa.Table.from_arrays(cols, schema=schema)


def _router(recipients_bc, token: str):
    """The :class:`herald.route.Router` of a broadcast recipients list (built once per worker and
    run: ``token`` names the run's broadcast)."""
    from herald.route import Router

    return _cached(("router", token), lambda: Router(recipients_bc.value).prepare())


def route_chunk(table: pa.Table, *, files: list[str], file_type: list[int], rtypes: list,
                recipients_bc, token: str, intelmq: bool, store=None) -> pa.Table:
    """``groupBy(file, chunk).applyInArrow``: route and render one chunk's kept rows.

    ``table`` holds the chunk's kept order keys ``k`` (first occurrences); file ``f`` is of type
    ``rtypes[file_type[f]]`` and its chunks are ``batch_rows_for(rtype)`` rows.  Returns one row per
    (recipient, event) pair: ``rid``, ``k``, the CSV record ``line`` (and the IntelMQ JSON line
    ``jline`` when ``intelmq``), plus two count rows (``rid`` :data:`REPORTED` and
    :data:`DISTINCT`, count in ``k``).  ``store``: the event store ``files`` are in (``None``:
    local paths).
    """
    from herald.reports.render import render_lines

    from herald.store.dedup import batch_rows_for

    keys = np.sort(table.column("k").to_numpy())
    fidx = int(keys[0] >> ROW_BITS)
    t = file_type[fidx]
    rtype = rtypes[t]
    chunk_rows = batch_rows_for(rtype)
    rows = keys & ((1 << ROW_BITS) - 1)
    start = int(rows[0]) // chunk_rows * chunk_rows
    events = read_rows(files[fidx], rtype, start, start + chunk_rows, store
                       ).take(pa.array(rows - start))
    a = _router(recipients_bc, token).route(events, rtype)
    routed_rows = np.flatnonzero(a.routed)
    counts = {REPORTED: len(routed_rows), DISTINCT: len(keys)}
    if len(a.recipient):
        lines = render_lines(events.take(pa.array(routed_rows)), rtype)
        taken = lines.take(pa.array(np.searchsorted(routed_rows, a.event))).cast(pa.binary())
        if intelmq:
            from herald.schema.intelmq import to_intelmq

            jl = pa.array([(json.dumps(ev, ensure_ascii=False, sort_keys=True) + "\n").encode()
                           for ev in to_intelmq(events.take(pa.array(a.event)), rtype)], pa.binary())
        else:
            jl = pa.nulls(len(a.event), pa.binary())
        rid = np.concatenate([a.recipient.astype(np.int32), np.array(list(counts), np.int32)])
        k = np.concatenate([keys[a.event], np.array(list(counts.values()), np.int64)])
        line = pa.concat_arrays([taken, pa.nulls(2, pa.binary())])
        jline = pa.concat_arrays([jl, pa.nulls(2, pa.binary())])
    else:
        rid = np.array(list(counts), np.int32)
        k = np.array(list(counts.values()), np.int64)
        line = jline = pa.nulls(2, pa.binary())
    return pa.table({"t": pa.array(np.full(len(rid), t, np.int32)), "rid": pa.array(rid),
                     "k": pa.array(k), "line": line, "jline": jline})


def _joined(col: pa.ChunkedArray | pa.Array) -> memoryview:
    """The concatenated bytes of a binary column (one buffer slice, no per-row loop)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    return memoryview(data)[int(offs[0]):int(offs[-1])] if data is not None else memoryview(b"")


def write_reports(batches: Iterator[pa.RecordBatch], *, reports_dir: str, day: str, rtypes: list,
                  recipients_bc) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` over a partition sorted by ``(t, rid, k)``: write its recipients' reports.

    Spark partitions the records by ``(t, rid)`` and sorts each partition (an external sort: it
    spills), so a report's records arrive contiguous and in ``k`` order -- the local engine's
    order -- in a stream of batches, however large the report.  They are appended to one
    :class:`~herald.reports.render.ReportSpool` (memory bounded by its buffer: large reports
    stream to their ``.part`` files) and its IntelMQ twin's spool; the count rows (negative
    ``rid``) are summed.  Yields one row per report ``(t, rid, path, sha256, rows, size,
    intelmq)`` and one per count ``(t, rid < 0, rows = sum)``.
    """
    from herald.reports.render import ReportSpool, csv_header, report_filename

    spool, jspool = ReportSpool(), ReportSpool()
    targets: dict[tuple[int, int], Path] = {}
    jfiles: set[tuple[int, int]] = set()
    counts: dict[tuple[int, int], int] = {}
    for b in batches:
        t_col = b.column("t").to_numpy()
        r_col = b.column("rid").to_numpy()
        k_col = b.column("k").to_numpy()
        change = np.flatnonzero((np.diff(t_col) != 0) | (np.diff(r_col) != 0)) + 1
        starts = np.concatenate(([0], change)).tolist()
        ends = np.concatenate((change, [b.num_rows])).tolist()
        for st, en in zip(starts, ends):
            key = (int(t_col[st]), int(r_col[st]))
            if key[1] < 0:
                counts[key] = counts.get(key, 0) + int(k_col[st:en].sum())
                continue
            rtype = rtypes[key[0]]
            rpath = targets.get(key)
            if rpath is None:
                rcpt = recipients_bc.value[key[1]]
                rpath = Path(reports_dir) / day / rcpt.slug / report_filename(day, rtype, rcpt)
                targets[key] = rpath
            lines = b.column("line").slice(st, en - st)
            spool.append(rpath, csv_header(rtype), _joined(lines), en - st)
            jl = b.column("jline").slice(st, en - st)
            if jl.null_count < len(jl):
                jfiles.add(key)
                jspool.append(rpath.with_suffix(".intelmq.jsonl"), b"", _joined(jl), en - st)
    written = spool.finish()
    jspool.finish()
    rows = [(t, rid, None, None, n, 0, None) for (t, rid), n in counts.items()]
    for key, rpath in targets.items():
        digest, n, size = written[rpath]
        rows.append((*key, str(rpath), digest, n, size,
                     str(rpath.with_suffix(".intelmq.jsonl")) if key in jfiles else None))
    schema = _report_schema()
    if rows:
        yield pa.RecordBatch.from_arrays([pa.array(list(c), f.type) for c, f in zip(zip(*rows), schema)],
                                         schema=schema)


def _report_schema() -> pa.Schema:
    return pa.schema([("t", pa.int32()), ("rid", pa.int32()), ("path", pa.string()), ("sha256", pa.string()),
                      ("rows", pa.int64()), ("size", pa.int64()), ("intelmq", pa.string())])

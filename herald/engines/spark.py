"""``herald run --engine spark``: the plan's heavy stages as Apache Spark jobs (docs/spark.md).

:class:`SparkEngine` offers the two stages :mod:`herald.pipeline` hands to an engine; everything
else (inputs, resumption, messages, ledger, audit, outbox, summary) stays on the driver, unchanged:

- :meth:`SparkEngine.ingest` -- one Spark task per input file
  (:func:`herald.engines.spark_tasks.ingest_task` = :func:`herald.store.ingest.ingest_input`);
  the tasks write the event store's Parquet files and markers themselves.
- :meth:`SparkEngine.route_and_write_all` -- one Spark job for every report type of the day, with
  per type the result of :func:`herald.reports.write.route_and_write`:

  1. ``mapInArrow`` :func:`~herald.engines.spark_tasks.row_hashes` over the stored files:
     ``(k, h1, h2)`` per row, ``k`` the row's position in input order;
  2. ``groupBy(h1, h2).agg(min(k))``: each event's first occurrence (the local engine's DuckDB
     aggregate, as a Spark shuffle);
  3. ``groupBy(file, chunk).applyInArrow`` :func:`~herald.engines.spark_tasks.route_chunk`:
     read the chunk's kept rows, route (:class:`~herald.route.Router` from the broadcast
     recipients), render the CSV records;
  4. ``repartition(type, rid).sortWithinPartitions(type, rid, k).mapInArrow``
     :func:`~herald.engines.spark_tasks.write_reports`: each report's records arrive contiguous
     and sorted by ``k`` and stream into its file, byte for byte the local engine's file.

  With a routing policy that is not inert (abuse contacts, inhibitions, re-notification windows:
  :class:`herald.reports.policy.RoutingPolicy`), one Spark task per report type instead (the
  local stage pool's shape): :func:`~herald.engines.spark_tasks.route_type_task` runs
  ``route_and_write`` with the broadcast policy and returns the type's
  :class:`~herald.reports.write.TypeReports` and automatic recipients; the driver merges them in
  type order (:func:`herald.pipeline`, :meth:`~herald.reports.policy.RoutingPolicy.merge`).

The event store, reports and IP data paths must be visible to the executors under the same
names (local mode; a shared file system on a cluster -- docs/spark.md).  No report has to fit
in a task's memory (docs/spark.md, "Large recipients").
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from pathlib import Path

import pyarrow as pa

from herald.config import Settings
from herald.engines.spark_config import spark_session, spark_settings
from herald.engines.spark_tasks import (DISTINCT, HASH_SCHEMA, LINE_SCHEMA, REPORT_SCHEMA, REPORTED,
                                        ROW_BITS, ingest_task, route_chunk, route_type_task,
                                        row_hashes, shipped_policy, write_reports)
from herald.reports.write import ReportFile, TypeReports
from herald.schema.registry import Registry, ReportType
from herald.store.dedup import batch_rows_for, stored_rows
from herald.store.ingest import StoredInput


class SparkEngine:
    """Spark for one run.

    Args:
        settings: the configuration (``[spark]``, paths, enrichment).
        day: the report day.
        registry: report types.
        ipdata: the run's IP data; saved once to ``<data>/tmp/spark/`` for the tasks to load,
            unless it is the embedded default (no ``[enrich] ipdata``), which they load themselves.
        recipients: the day's recipients (broadcast to the tasks).
    """

    def __init__(self, settings: Settings, day: str, registry: Registry, ipdata, recipients) -> None:
        self.settings = settings
        self.day = day
        self.registry = registry
        self.spark = spark_session(spark_settings(settings))
        self.sc = self.spark.sparkContext
        self.ipdata_path: str | None = None
        if settings.ipdata:
            path = settings.paths.data / "tmp" / "spark" / f"ipdata-{uuid.uuid4().hex}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            ipdata.save(path)
            self.ipdata_path = str(path)
        self.recipients = self.sc.broadcast(list(recipients))
        self.token = uuid.uuid4().hex  # names this run's broadcast in the workers' caches

    def close(self) -> None:
        """Drop the broadcast and the saved IP data (the session stays for the next run)."""
        self.recipients.unpersist()
        if self.ipdata_path:
            Path(self.ipdata_path).unlink(missing_ok=True)
            Path(self.ipdata_path).with_suffix(".json").unlink(missing_ok=True)

    def ingest(self, todo: list[tuple[str, str]]) -> dict[str, StoredInput]:
        """Ingest ``todo`` (``(path, sha256)``, distinct contents), one Spark task per input.

        Returns:
            ``{sha256: StoredInput}``.
        """
        if not todo:
            return {}
        fn = functools.partial(ingest_task, day=self.day, data_dir=str(self.settings.paths.data),
                               registry=self.registry, ipdata_path=self.ipdata_path,
                               overwrite=self.settings.overwrite_enrichment,
                               store=self.settings.events)
        self.sc.setJobDescription(f"herald ingest {self.day}: {len(todo)} input(s)")
        results = self.sc.parallelize(todo, len(todo)).map(fn).collect()
        return {r.sha256: r for r in results}

    def route_and_write(self, reports_dir: Path, day: str, rtype: ReportType, files: list[str],
                        router=None, *, intelmq: bool = False) -> TypeReports:
        """:func:`herald.reports.write.route_and_write` of one type on Spark
        (:meth:`route_and_write_all` with one type; ``router`` is unused: the tasks build theirs
        from the broadcast recipients, the same list)."""
        return self.route_and_write_all(reports_dir, day, {rtype.name: files}, intelmq=intelmq
                                        )[rtype.name]

    def route_and_write_all(self, reports_dir: Path, day: str, stored: dict[str, list[str]], *,
                            intelmq: bool = False, policy=None) -> dict[str, TypeReports]:
        """:func:`herald.reports.write.route_and_write` of every type of the day, as one Spark job
        (see the module docstring): ``{type name: TypeReports}``.

        Args:
            reports_dir: the reports folder.
            day: ``YYYY-MM-DD``.
            stored: each type's stored Parquet files, in input order.
            intelmq: also write the IntelMQ JSON-lines twins.
            policy: the run's :class:`herald.reports.policy.RoutingPolicy`; when it is not inert,
                one task per type applies it (:meth:`route_types`) and each result must go
                through ``policy.merge`` in type order.
        """
        if policy is not None and not policy.inert:
            return self.route_types(reports_dir, day, stored, policy, intelmq=intelmq)
        from pyspark.sql import functions as F

        t0 = time.monotonic()
        names = sorted(stored)
        rtypes = [self.registry.get(n) for n in names]
        files = [f for n in names for f in stored[n]]
        file_type = [t for t, n in enumerate(names) for _ in stored[n]]
        if not files:
            return {}
        self.sc.setJobDescription(f"herald route {day}: {len(names)} type(s), {len(files)} file(s)")
        rows = [(t, i, f) for i, (t, f) in enumerate(zip(file_type, files))]
        paths = self.spark.createDataFrame(self.sc.parallelize(rows, len(rows)),
                                           "t int, fidx int, path string")
        hashes = paths.mapInArrow(
            functools.partial(row_hashes, columns=[list(r.columns) for r in rtypes],
                              store=self.settings.events), HASH_SCHEMA)
        kept = hashes.groupBy("t", "h1", "h2").agg(F.min("k").alias("k"))
        # A file's chunk: batch_rows_for(its type) rows (the local engine's batch bound).
        sizes = F.array(*[F.lit(batch_rows_for(rtypes[t])) for t in file_type])
        f = F.shiftright("k", ROW_BITS)
        row = F.col("k").bitwiseAND((1 << ROW_BITS) - 1)
        keyed = kept.withColumn("f", f).withColumn(
            "c", F.floor(row / F.element_at(sizes, f.cast("int") + 1)))
        recipients, token, store = self.recipients, self.token, self.settings.events

        # Plain functions with type hints: applyInArrow infers its mode from them.
        def route(table: pa.Table) -> pa.Table:
            return route_chunk(table, files=files, file_type=file_type, rtypes=rtypes,
                               recipients_bc=recipients, token=token, intelmq=intelmq,
                               store=store)

        lines = keyed.groupBy("f", "c").applyInArrow(route, LINE_SCHEMA)
        # Each report's records contiguous and in input order in one partition, streamed to its
        # file: no report has to fit in a task's memory (Spark's sort spills).
        written = (lines.repartition("t", "rid").sortWithinPartitions("t", "rid", "k")
                   .mapInArrow(functools.partial(write_reports, reports_dir=str(reports_dir), day=day,
                                                 rtypes=rtypes, recipients_bc=recipients),
                               REPORT_SCHEMA).collect())
        seconds = time.monotonic() - t0
        out = {}
        for t, name in enumerate(names):
            mine = [r for r in written if r.t == t]
            counts = {r.rid: r.rows for r in mine if r.rid < 0}
            reports = tuple(
                ReportFile(r.rid, Path(r.path), r.sha256, r.rows, r.size,
                           Path(r.intelmq) if r.intelmq else None)
                for r in sorted((r for r in mine if r.rid >= 0), key=lambda r: r.rid))
            distinct, reported = counts.get(DISTINCT, 0), counts.get(REPORTED, 0)
            out[name] = TypeReports(name, reports, distinct, reported, distinct - reported,
                                    stored_rows(stored[name], self.settings.events) - distinct,
                                    {"spark": seconds if t == 0 else 0.0})
        return out


    def route_types(self, reports_dir: Path, day: str, stored: dict[str, list[str]], policy, *,
                    intelmq: bool = False) -> dict[str, TypeReports]:
        """Route and write each report type under the routing ``policy``: one Spark task per type
        (:func:`herald.engines.spark_tasks.route_type_task`, the local stage pool's type job),
        the largest types (stored bytes) scheduled first.  The policy goes to the executors as a
        broadcast without its abuse-contact data (:func:`~herald.engines.spark_tasks.shipped_policy`),
        which each Python worker loads once from ``<data>/contacts/`` (the generation the driver
        loaded); the re-notification records are read and written under ``<data>/notified/``.

        Returns:
            ``{type name: TypeReports}`` as the tasks returned them (recipient indexes of each
            task's own list, automatic recipients in ``contacts``): the caller merges them in type
            order (:meth:`herald.reports.policy.RoutingPolicy.merge`).  Seconds: one ``spark``
            entry (the job's wall time) on the first type.
        """
        from herald.parallel import memory_bytes
        from herald.store.dedup import DUCKDB_MEMORY_LIMIT

        t0 = time.monotonic()
        names = sorted(stored)
        if not names:
            return {}
        jobs = sorted(((n, stored[n]) for n in names),
                      key=lambda j: (-sum(_file_size(f, self.settings.events) for f in j[1]), j[0]))
        shipped, generation = shipped_policy(policy)
        policy_bc = self.sc.broadcast(shipped)
        conf = self.sc.getConf()
        per_executor = int(conf.get("spark.executor.cores", "0")) or self.sc.defaultParallelism
        fn = functools.partial(
            route_type_task, policy_bc=policy_bc, token=uuid.uuid4().hex, generation=generation,
            data_dir=str(self.settings.paths.data), reports_dir=str(reports_dir), day=day,
            registry=self.registry, intelmq=intelmq,
            memory_limit_mb=max(64, memory_bytes(DUCKDB_MEMORY_LIMIT) // max(1, per_executor) // 2**20),
            store=self.settings.events)
        self.sc.setJobDescription(f"herald route {day}: {len(names)} type(s) under the routing policy")
        try:
            results = self.sc.parallelize(jobs, len(jobs)).map(fn).collect()
        finally:
            policy_bc.unpersist()
        seconds = time.monotonic() - t0
        by_name = {r.report_type: r for r in results}
        return {n: dataclasses.replace(by_name[n], seconds={"spark": seconds if i == 0 else 0.0})
                for i, n in enumerate(names)}


def _file_size(path: str, store=None) -> int:
    """The size of a stored file in bytes (``store``: its event store, ``None``: a local path);
    0 when it cannot be read."""
    try:
        return Path(path).stat().st_size if store is None else store.size(path)
    except OSError:
        return 0


def engine_for(name: str, settings: Settings, day: str, registry: Registry, ipdata, recipients):
    """The engine called ``name`` (``local``: ``None``, the plan runs its stages itself;
    ``spark``: a :class:`SparkEngine`)."""
    if name == "local":
        return None
    if name == "spark":
        return SparkEngine(settings, day, registry, ipdata, recipients)
    from herald.errors import ConfigError

    raise ConfigError(f"unknown engine {name!r} (local, spark)")


__all__ = ["SparkEngine", "engine_for"]

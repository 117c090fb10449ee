"""The daily run's CPU-bound stages on every core: a pool of forked worker processes (issue 14).

:class:`StagePool` runs the run's two CPU-bound stages in worker processes:

* **ingest** -- one job per input (:func:`herald.store.ingest.ingest_input`: parse, enrich, Parquet
  write, quarantine and marker written by the worker); the :class:`~herald.store.ingest.StoredInput`
  s come back in input order;
* **route and write** (and compose the messages, below) -- per report type
  (:func:`herald.reports.write.route_and_write` with the worker's own DuckDB connection, and the
  run's routing policy applied to a copy of its state: abuse contacts, inhibitions,
  re-notification windows); the :class:`Routed` results (the
  :class:`~herald.reports.write.TypeReports`) come back in type order, with the automatic
  recipients each job met, for the driver to merge
  (:meth:`herald.reports.policy.RoutingPolicy.merge`).  With an inert policy a type that would
  leave a worker idle (:func:`shard_counts`) is one job per worker, by recipient
  (``shard=(k, n)``: recipient index ``k`` modulo ``n``; each shard de-duplicates and routes the
  whole type and writes its recipients' reports, whole files, so no report file is ever split),
  joined by :func:`herald.reports.write.merge_shards`; with a policy that is not inert, one job
  per type (its automatic recipients are created while routing).

Jobs are handed out largest first (input bytes, stored Parquet bytes) so that the biggest job does
not start last; the caller still receives the results in its own order, so what the run writes and
counts is the same as with one process.  Shards by recipient, not a hash partition of the events:
a report's rows must come in input order (first occurrence) and one recipient's rows of a type go
to one file.  The shards repeat the type's de-duplication and routing (a fifth of the work), so
a type is split only when that keeps a worker from standing idle at the end (bench/README.md,
"Cores").

The workers are forked once (``fork`` start method, deliberately: they inherit the run's IP data,
router and registry without pickling or reloading them -- the IP data alone takes seconds to load;
``forkserver`` would reload it in every worker).  It is a :class:`herald.parentdeath.ForkedPool`,
as :class:`herald.deliver.messages.MessageWorkers` is: before forking, the parent collects garbage
and freezes its objects (:func:`gc.freeze`), since a forked child must never free an object of the
parent holding native state of the parent's threads (Arrow, DuckDB).  The parent opens no DuckDB
connection before the fork.  Workers die with the parent; a worker that dies makes the waiting
call raise ``BrokenProcessPool`` (the run is recorded ``failed``), it does not hang.  Each job
passes the fault point ``stage`` in the worker (tests).

Messages: with an inert routing policy a route job also composes the messages of the reports it
wrote (:func:`herald.deliver.messages.write_messages`, in the worker; fault point ``compose``), so
composing overlaps the routing of the other types and no worker stands idle between the two
stages.  With a policy that is not inert the driver composes them after merging the type's
automatic recipients (:class:`herald.deliver.messages.MessageWorkers`, after the pool is shut
down).  Either way the run never has more busy processes than cores.  Each worker's DuckDB gets
``memory_limit / workers`` and ``cores / workers`` threads, so memory stays bounded as with one
process.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from herald import faults
from herald.config import Settings
from herald.deliver.messages import MessageContext, write_messages
from herald.parentdeath import ForkedPool, check_parent, inherited
from herald.reports.write import TypeReports, merge_shards, route_and_write
from herald.route import Router
from herald.schema.registry import Registry
from herald.store.ingest import StoredInput, ingest_input


def usable_cores() -> int:
    """The processors this process may run on (``taskset`` narrows it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_workers(settings: Settings) -> int:
    """The run's worker processes: ``[run] workers``, default the usable cores."""
    return settings.workers or usable_cores()


@dataclass(frozen=True)
class StageContext:
    """What the workers inherit by fork.

    Attributes:
        settings: the configuration.
        day: ``YYYY-MM-DD``.
        registry: the report types.
        ipdata: the run's IP data (:class:`herald.enrich.ipdata.IPData`).
        router: the day's recipients.
        intelmq: also write IntelMQ files.
        workers: the pool's size (shares DuckDB's memory and threads).
        policy: the run's routing policy (:class:`herald.reports.policy.RoutingPolicy`), or
            ``None``; a route job works on its own copy
            (:meth:`~herald.reports.policy.RoutingPolicy.for_type`) and returns the automatic
            recipients it met, which the driver merges in type order.
        messages: the run's :class:`herald.deliver.messages.MessageContext` when a route job
            also composes the messages of the reports it wrote (the routing policy is inert: the
            recipients are those of the fork); ``None``: the driver composes them.
    """

    settings: Settings
    day: str
    registry: Registry
    ipdata: object
    router: Router
    intelmq: bool
    workers: int
    policy: object = None
    messages: MessageContext | None = None


def _ingest_job(job: tuple[str, str]) -> StoredInput:
    """Worker: ingest one input ``(path, sha256)``."""
    check_parent()
    faults.hit("stage")
    ctx: StageContext = inherited()
    path_s, sha = job
    return ingest_input(Path(path_s), sha, day=ctx.day, data_dir=ctx.settings.paths.data,
                        registry=ctx.registry, ipdata=ctx.ipdata,
                        overwrite_enrichment=ctx.settings.overwrite_enrichment,
                        store=ctx.settings.events)


@dataclass(frozen=True)
class Routed:
    """What one type's route job(s) did.

    Attributes:
        reports: the type's :class:`~herald.reports.write.TypeReports`.
        messages: the run summary's entries of the messages the job(s) composed and wrote
            (:func:`herald.deliver.messages.write_messages`; in no particular order), or
            ``None`` when the driver composes them.
        paths: the message files written (``.eml``, with the reports they attach).
        seconds: seconds the job(s) spent composing messages (summed over shards).
    """

    reports: TypeReports
    messages: list[dict] | None = None
    paths: frozenset[Path] = frozenset()
    seconds: float = 0.0


def _route_job(job: tuple[str, list[str], int, int]) -> Routed:
    """Worker: route one type ``(type name, stored files, shard k, of n)`` and write its reports
    (those of the shard's recipients), with a DuckDB connection of its own (spilling to a folder
    of its own); then, when the context carries a message context, compose their messages (fault
    point ``compose``)."""
    from herald.store.dedup import DUCKDB_MEMORY_LIMIT, duckdb_connection

    check_parent()
    faults.hit("stage")
    ctx: StageContext = inherited()
    type_name, files, k, n = job
    rtype = ctx.registry.get(type_name)
    tmp = ctx.settings.paths.data / "tmp" / "duckdb" / f"worker-{os.getpid()}"
    con = duckdb_connection(tmp)
    try:
        limit = memory_bytes(DUCKDB_MEMORY_LIMIT) // ctx.workers
        con.execute(f"SET memory_limit = '{max(limit // 2**20, 64)}MB'")
        con.execute(f"SET threads = {max(1, usable_cores() // ctx.workers)}")
        done = route_and_write(con, ctx.settings.paths.reports, ctx.day, rtype, files, ctx.router,
                               intelmq=ctx.intelmq, policy=ctx.policy, shard=(k, n),
                               store=ctx.settings.events)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if ctx.messages is None:
        return Routed(done)
    t = time.monotonic()
    faults.hit("compose")
    entries, paths = write_messages(ctx.messages, rtype, list(done.reports), first=None)
    return Routed(done, entries, frozenset(paths), time.monotonic() - t)


def memory_bytes(text: str) -> int:
    """``"500MB"`` -> bytes (int) in DuckDB's units: KB, MB, GB as powers of 1000 or KiB, MiB, GiB;
    a bare number is bytes.  Raises ValueError on other text."""
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    t = text.strip().upper()
    for unit, mult in units.items():
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * mult)
    return int(t)


class StagePool(ForkedPool):
    """The forked workers of one run's ingest and route stages; see the module docstring.  Use as
    a context manager (or call :meth:`close`); the workers are forked at the first job."""

    def __init__(self, ctx: StageContext) -> None:
        super().__init__(ctx, ctx.workers)

    def ingest(self, jobs: list[tuple[str, str]]) -> list[Future]:
        """Start ingesting ``(path, sha256)`` jobs, the largest files first; returns one future of
        a :class:`StoredInput` per job, in the order of ``jobs``."""
        return self._map(_ingest_job, jobs, [_size(p) for p, _ in jobs])

    def route(self, jobs: list[tuple[str, list[str]]]) -> list["TypeResult"]:
        """Start routing ``(type name, stored files)`` jobs, the most stored bytes first; returns
        one :class:`TypeResult` (its :meth:`~TypeResult.result` is the type's :class:`Routed`)
        per job, in the order of ``jobs``.

        With an inert routing policy each type is split into one job per worker by recipient
        (``route_and_write(shard=(k, n))``: every shard de-duplicates and routes the whole type,
        and writes the reports of its recipients), merged by
        :func:`herald.reports.write.merge_shards`: a day of five types of about the same number
        of reports no longer leaves a worker idle for the last type (``bench/cores.py``).  With a
        policy that is not inert a type is one job (its automatic recipients are created while
        routing, in order).
        """
        policy = self.ctx.policy
        sizes = [sum(_size(f) for f in files) for _, files in jobs]
        counts = shard_counts(sizes, self.ctx.workers) if policy is None or policy.inert \
            else [1] * len(jobs)
        parts = [(name, files, k, n) for (name, files), n in zip(jobs, counts) for k in range(n)]
        psizes = [size // n for size, n in zip(sizes, counts) for _ in range(n)]
        futures = self._map(_route_job, parts, psizes)
        results, i = [], 0
        for n in counts:
            results.append(TypeResult(futures[i:i + n]))
            i += n
        return results

    def _map(self, fn: Callable, jobs: list, sizes: list[int]) -> list[Future]:
        order = sorted(range(len(jobs)), key=lambda i: (-sizes[i], i))
        futures: list[Future | None] = [None] * len(jobs)
        for i, fut in zip(order, self.submit_all(fn, [jobs[i] for i in order])):
            futures[i] = fut
        return futures  # type: ignore[return-value]


#: The share of a route job's work that every shard of the type repeats (reading the stored
#: events, de-duplicating and routing the whole type), of the whole job: measured on the 1M
#: benchmark day in one process, de-duplication and routing took 1.9 s of 10.3 s
#: (``RunSummary.stages``: distinct, route; against reports and messages).
SHARD_REPEATED = 0.2
#: A type is split while the longest worker's share of the schedule is above this many times an
#: even share of the work.
SHARD_SLACK = 1.1


def shard_counts(sizes: list[int], workers: int) -> list[int]:
    """Into how many recipient shards each type's route job is split, for ``workers`` processes.

    The jobs are scheduled largest first on the least busy worker (as :class:`StagePool` hands
    them out).  A type is one job unless that leaves one worker with more than
    :data:`SHARD_SLACK` times an even share of the work: then the largest types are split into
    ``workers`` shards, one at a time, while splitting shortens the schedule.  A shard costs
    ``size * (SHARD_REPEATED + (1 - SHARD_REPEATED) / workers)``: every shard repeats the type's
    de-duplication and routing.  So a day of several types of similar size runs one job per type
    (no work repeated), and a day whose largest type is most of it is split.

    Args:
        sizes: each type's stored bytes (the work is taken to be proportional to them).
        workers: worker processes (>= 1).

    Returns:
        ``list[int]``, one count per type: ``1`` or ``workers``.
    """
    counts = [1] * len(sizes)
    if workers <= 1 or not sizes:
        return counts
    even = sum(sizes) / workers
    best = _makespan(sizes, counts, workers)
    for i in sorted(range(len(sizes)), key=lambda j: (-sizes[j], j)):
        if best <= SHARD_SLACK * even:
            break
        trial = counts[:i] + [workers] + counts[i + 1:]
        span = _makespan(sizes, trial, workers)
        if span >= best:
            break
        counts, best = trial, span
    return counts


def _makespan(sizes: list[int], counts: list[int], workers: int) -> float:
    """The busiest worker's work when the jobs of ``counts`` shards per type are handed out
    largest first to the least busy worker."""
    jobs = []
    for size, n in zip(sizes, counts):
        cost = size if n == 1 else size * (SHARD_REPEATED + (1 - SHARD_REPEATED) / n)
        jobs += [cost] * n
    load = [0.0] * workers
    for cost in sorted(jobs, reverse=True):
        load[load.index(min(load))] += cost
    return max(load)


class TypeResult:
    """The pending result of one type's route jobs (its shards)."""

    def __init__(self, futures: list[Future]) -> None:
        self.futures = futures

    def result(self) -> Routed:
        """The type's :class:`Routed` (waits for every shard; raises the first job error): the
        shards' reports merged (:func:`~herald.reports.write.merge_shards`), their messages
        joined."""
        parts: list[Routed] = [f.result() for f in self.futures]
        if len(parts) == 1:
            return parts[0]
        messages = None if any(p.messages is None for p in parts) else \
            [e for p in parts for e in p.messages]
        return Routed(merge_shards([p.reports for p in parts]), messages,
                      frozenset().union(*(p.paths for p in parts)), sum(p.seconds for p in parts))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

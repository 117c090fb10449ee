"""Route one report type's distinct events of a day and write its reports (steps 4-5).

:func:`route_and_write` is a stage: it takes the type's stored Parquet files and returns a
:class:`TypeReports` (the :class:`ReportFile` s written, counts and timings); messages are composed
afterwards from the :class:`ReportFile` s (:mod:`herald.deliver.messages`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from herald.eventstore import EventStore
from herald.reports.policy import RoutingPolicy, TypeContact
from herald.reports.render import ReportSpool, csv_header, render_lines, report_filename
from herald.route import Assignment, Router
from herald.schema.registry import ReportType
from herald.store.dedup import distinct_batches, stored_rows


@dataclass(frozen=True)
class ReportFile:
    """One report written: a recipient's events of one type and day.

    Attributes:
        recipient: the recipient's index in the router's recipients.
        path: the CSV file.
        sha256: hex SHA-256 of its bytes.
        rows: events in it.
        size: its size in bytes.
        intelmq: its IntelMQ JSON-lines twin (``[report] formats = ["intelmq"]``), or ``None``.
    """

    recipient: int
    path: Path
    sha256: str
    rows: int
    size: int
    intelmq: Path | None = None


@dataclass(frozen=True)
class TypeReports:
    """What :func:`route_and_write` did for one type.

    Attributes:
        report_type: the type's name.
        reports: the reports written, in recipient order (then path): the same order whether the
            type was written by one job or by recipient shards (:func:`merge_shards`).
        distinct: distinct events of the day.
        reported: distinct events that reached at least one recipient.
        unrouted: distinct events that reached none.
        duplicate: stored rows that repeat an earlier event of the day.
        seconds: time spent in ``distinct``, ``route`` and ``reports`` (seconds).
        inhibited: (event, recipient) pairs removed by inhibitions (informational).
        renotify_suppressed: pairs removed by re-notification windows (informational).
        contacts: the automatic recipients the routing policy met
            (:meth:`herald.reports.policy.RoutingPolicy.contacts`), until
            :meth:`~herald.reports.policy.RoutingPolicy.merge` took them into the run.
        start: recipients the job began with: a ``ReportFile.recipient`` at or above it names a
            recipient the job created (one of ``contacts``).
    """

    report_type: str
    reports: tuple[ReportFile, ...]
    distinct: int
    reported: int
    unrouted: int
    duplicate: int
    seconds: dict[str, float] = field(default_factory=dict)
    inhibited: int = 0
    renotify_suppressed: int = 0
    contacts: tuple[TypeContact, ...] = ()
    start: int = 0

    @property
    def paths(self) -> set[Path]:
        """Every file written (reports and IntelMQ files)."""
        out = {r.path for r in self.reports}
        return out | {r.intelmq for r in self.reports if r.intelmq is not None}


def route_and_write(con: duckdb.DuckDBPyConnection, reports_dir: Path, day: str, rtype: ReportType,
                    files: list[str], router: Router, *, intelmq: bool = False,
                    policy: RoutingPolicy | None = None,
                    shard: tuple[int, int] = (0, 1), store: EventStore | None = None
                    ) -> TypeReports:
    """Route one type's distinct events of the day and write its reports.

    The distinct events (:func:`herald.store.dedup.distinct_batches`) stream in bounded batches, so
    memory does not grow with the day.  Per batch: route; render every routed row's CSV record once
    (:func:`herald.reports.render.render_lines`); one ``take`` of the records in (recipient, event)
    order; each recipient's share is then one contiguous slice of bytes, appended to its report
    file ``<reports>/<day>/<slug>/<day>-<type>-<slug>-<filter>.csv``
    (:class:`herald.reports.render.ReportSpool`).  A report's rows come in input order (the first
    occurrence of each event), so a re-run writes the same bytes.

    Args:
        con: a DuckDB connection (:func:`herald.store.dedup.duckdb_connection`).
        reports_dir: the reports folder (``[paths] reports``).
        day: ``YYYY-MM-DD``.
        rtype: the report type.
        files: the type's stored Parquet files of the day, in input order.
        router: the day's recipients.
        intelmq: also write each report as IntelMQ JSON lines (``.intelmq.jsonl``).
        policy: abuse contacts, inhibitions and re-notification windows applied to each batch's
            assignment (:class:`herald.reports.policy.RoutingPolicy`); ``None``: none.  The job
            works on :meth:`~herald.reports.policy.RoutingPolicy.for_type` (the policy and the
            router are not changed): the automatic recipients it met come back in
            ``contacts``, for :meth:`~herald.reports.policy.RoutingPolicy.merge`.
        shard: ``(k, n)``: write only the reports of recipients whose index is ``k`` modulo ``n``
            (every shard de-duplicates and routes the whole type; its counts are the type's).
            :func:`merge_shards` joins the ``n`` shards' results into the type's.  Only with an
            inert policy (a policy creates recipients while routing).
        store: the event store ``files`` are in (:class:`herald.eventstore.EventStore`);
            ``None``: local paths.

    Returns:
        the :class:`TypeReports` (recipient indexes of the job's own list until merged).

    Raises:
        ValueError: a shard other than ``(0, 1)`` with a policy that is not inert.
    """
    k, n = shard
    if n > 1 and policy is not None and not policy.inert:
        raise ValueError("recipient shards need an inert routing policy")
    header = csv_header(rtype)
    spool = ReportSpool()
    jspool = ReportSpool() if intelmq else None
    by_path: dict[Path, int] = {}
    rpaths: dict[int, Path] = {}  # recipient index -> report path (built once per type)
    distinct = reported = 0
    st = {"distinct": 0.0, "route": 0.0, "reports": 0.0}
    batches = distinct_batches(con, files, rtype, store=store)
    if policy is not None:
        policy = policy.for_type()
        router = policy.router
        policy.start_type(rtype)
    while True:
        t0 = time.monotonic()
        table = next(batches, None)
        t1 = time.monotonic()
        st["distinct"] += t1 - t0
        if table is None:
            break
        distinct += table.num_rows
        assignment = router.route(table, rtype)
        if policy is not None:
            assignment = policy.apply(table, rtype, assignment)
        t0 = time.monotonic()
        st["route"] += t0 - t1
        reported += int(assignment.routed.sum())
        if n > 1:
            mine = assignment.recipient % n == k
            assignment = Assignment(assignment.event[mine], assignment.recipient[mine],
                                    assignment.routed)
        if not len(assignment.recipient):
            st["reports"] += time.monotonic() - t0
            continue
        # Render only the rows that reach someone, then gather them in (recipient, event) order.
        routed_rows = np.unique(assignment.event) if n > 1 else np.flatnonzero(assignment.routed)
        lines = render_lines(table.take(pa.array(routed_rows)), rtype)
        local = np.searchsorted(routed_rows, assignment.event)
        taken = lines.take(pa.array(local))
        offsets = np.frombuffer(taken.buffers()[1], dtype=np.int64)[taken.offset:taken.offset + len(taken) + 1]
        data = memoryview(taken.buffers()[2])
        bounds = np.flatnonzero(np.diff(assignment.recipient)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(assignment.recipient)]))
        offs = offsets.tolist()
        for s, e, rid in zip(starts.tolist(), ends.tolist(), assignment.recipient[starts].tolist()):
            rpath = rpaths.get(rid)
            if rpath is None:
                rcpt = router.recipients[rid]
                rpath = rpaths[rid] = reports_dir / day / rcpt.slug / report_filename(day, rtype, rcpt)
                by_path[rpath] = rid
            spool.append(rpath, header, data[offs[s]:offs[e]], e - s)
            if jspool is not None:
                from herald.schema.intelmq import to_intelmq

                rows = table.take(pa.array(assignment.event[s:e]))
                text = "".join(json.dumps(ev, ensure_ascii=False, sort_keys=True) + "\n"
                               for ev in to_intelmq(rows, rtype))
                jspool.append(rpath.with_suffix(".intelmq.jsonl"), b"", text.encode(), e - s)
        st["reports"] += time.monotonic() - t0
    if policy is not None:
        policy.finish_type()
    jfiles = jspool.finish() if jspool is not None else {}
    written = spool.finish()
    reports = tuple(sorted((
        ReportFile(by_path[rpath], rpath, digest, rows, size,
                   rpath.with_suffix(".intelmq.jsonl") if rpath.with_suffix(".intelmq.jsonl") in jfiles
                   else None)
        for rpath, (digest, rows, size) in written.items()), key=lambda r: (r.recipient, str(r.path))))
    return TypeReports(rtype.name, reports, distinct, reported, distinct - reported,
                       stored_rows(files, store) - distinct, st,
                       policy.inhibited if policy is not None else 0,
                       policy.suppressed if policy is not None else 0,
                       policy.contacts(rtype.name) if policy is not None else (),
                       policy.start if policy is not None else len(router.recipients))


def merge_shards(parts: list[TypeReports]) -> TypeReports:
    """One type's :class:`TypeReports` from its recipient shards (:func:`route_and_write` with
    ``shard=(k, n)`` for ``k`` in ``0..n-1``, in that order): the reports of every shard, in
    recipient order (each recipient is in exactly one shard); the counts of the type (every shard
    counted the whole type: taken from the first); the stage seconds summed (CPU spent, not wall
    time).

    Raises:
        ValueError: no parts, or parts of different types.
    """
    if not parts or len({p.report_type for p in parts}) != 1:
        raise ValueError("merge_shards: the shards of one report type are needed")
    first = parts[0]
    reports = sorted((r for p in parts for r in p.reports), key=lambda r: (r.recipient, str(r.path)))
    seconds: dict[str, float] = {}
    for p in parts:
        for key, v in p.seconds.items():
            seconds[key] = seconds.get(key, 0.0) + v
    return TypeReports(first.report_type, tuple(reports), first.distinct, first.reported,
                       first.unrouted, first.duplicate, seconds, start=first.start)


def remove_stale(root: Path, keep: set[Path]) -> None:
    """Remove report/message files (``.csv``, ``.eml``, ``.jsonl``) under ``root`` that are not in
    ``keep`` (recipients or inputs changed since an earlier run of the same day), and temporary
    files a crashed run left behind (``.<name>...tmp``, ``.<name>.part``).  Call it once this run's
    writes are all done (the day's lock keeps other runs of the day out)."""
    if not root.is_dir():
        return
    keep_s = {str(p) for p in keep}
    # os.walk with plain strings: the day may hold a hundred thousand files.
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith((".csv", ".eml", ".jsonl")) or (f.startswith(".") and f.endswith((".tmp", ".part"))):
                full = os.path.join(dirpath, f)
                if full not in keep_s:
                    os.unlink(full)

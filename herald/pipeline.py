"""The daily run (``herald run``) as a plan of stages.

:func:`run_day` runs day ``D`` under the day's lock (:mod:`herald.store.runlock`) and records it in
the ledger (:mod:`herald.store.ledger`).  Each step is a function of its stage's package that takes
values and returns values, so that it could run in another process:

1. **collect inputs** -- :func:`herald.sources.inputs.find_inputs` lists ``<inbox>/D/`` and
   ``<inbox>/D-*`` in name order; :func:`~herald.sources.inputs.file_sha256` names each input;
2. **ingest** -- :func:`herald.store.ingest.ingest_input` parses one input, enriches its empty ASN
   and country columns from the embedded IP data, stores the events as Parquet under
   ``<data>/events/date=D/type=T/<sha256[:32]>.parquet`` and quarantines unreadable rows; it
   returns a :class:`~herald.store.ingest.StoredInput` (a resumed run takes the stored ones from
   their markers);
3. **de-duplicate, route and write** -- per report type, :func:`herald.reports.write.route_and_write`
   streams the distinct events (:mod:`herald.store.dedup`: identical rows within the day count
   once, as ``rows_duplicate``) through the recipients' filters and writes one CSV per recipient,
   type and day; it returns a :class:`~herald.reports.write.TypeReports` of
   :class:`~herald.reports.write.ReportFile` s;
4. **compose** -- :mod:`herald.deliver.messages` composes each report's message once and writes it
   as ``<outbox>/D/<slug>/<report>.eml``; the report entries of the summary come back from it;
5. **record** -- one flush makes the files durable; the automatic recipients (abuse mailboxes) the
   routing added get their database rows
   (:func:`herald.contacts.autorecipients.store_automatic_recipients`, in bulk), then
   :func:`herald.store.release.record_reports` records every report in the ledger (an audit entry
   per new content);
6. **deliver** -- with an ``[smtp]`` relay, :func:`herald.deliver.outbox.enqueue_reports` queues
   the composed messages (``herald send`` sends them).

Steps 2 and 3 run in worker processes when ``[run] workers`` (default: the usable cores) is more
than one (:mod:`herald.parallel`: inputs and report types are handed to the workers, results are
taken in input and type order, so the files and counts are those of a one-process run); then the
pool is shut down before step 4 (never more busy processes than cores).  The routing policy
(abuse contacts, inhibitions, windows) runs in each type's job on a copy of the run's state; the
automatic recipients a job met are merged here in type order
(:meth:`herald.reports.policy.RoutingPolicy.merge`), in one process as with the pool or Spark
(one Spark task per type, :meth:`herald.engines.spark.SparkEngine.route_types`).

The :class:`RunSummary` is built here from what the stages return.  Accounting:
``rows_in = rows_reported + rows_unrouted + rows_quarantined + rows_duplicate + rows_failed``
(``rows_failed``: the data rows of inputs that could not be read at all).  A day with a failed
input is recorded ``failed``, not done: the next run processes it again.  Every file is
written to a temporary name and renamed; a re-run with the same inputs and recipients rewrites
byte-identical files.  Crash tests stop the run at named points (:mod:`herald.faults`).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from herald import faults
from herald.config import Settings
from herald.constituency.recipients import Recipient
from herald.errors import ConfigError, HeraldError
from herald.fsutil import atomic_write, files_sha256, sync_paths
from herald.schema.registry import Registry, default_registry
from herald.sources.inputs import file_sha256, find_inputs
from herald.store.ingest import StoredInput
from herald.summary import COUNTS, RunSummary, summary_json

__all__ = ["RunSummary", "find_inputs", "file_sha256", "run_day"]

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Progress:
    """Progress lines on stderr when it is a terminal (long runs), silent otherwise."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def run_day(settings: Settings, day: str, *, registry: Registry | None = None,
            recipients: list[Recipient] | None = None, progress: bool | None = None,
            force: bool = False, actor: str = "pipeline", engine: str = "local") -> RunSummary:
    """Run the daily job for ``day`` (``YYYY-MM-DD``); see the module docstring.

    The configuration's recipients and operations are imported into the metadata database first
    (idempotent) and loaded once; a finished day is not run again unless ``force``.  A run that
    crashed (its ledger entry still ``running`` but no process holds the day's lock) is taken over
    and resumes: inputs already stored are not parsed again.

    Args:
        settings: the configuration.
        day: the report day.
        registry: report types (default: bundled).
        recipients: override the database's recipients (benchmarks, tests).
        progress: show progress on stderr (default: when stderr is a terminal).
        force: run a day that is already done.
        actor: the name recorded in the ledger's audit entries.
        engine: ``local`` (this process) or ``spark`` (:mod:`herald.engines.spark`: ingest, route
            and write run as Spark jobs; the rest is the same).

    Returns:
        the :class:`RunSummary` (``skipped`` is set when the day was already done); inputs that
        failed are listed in ``errors`` and the rest of the run goes on.

    Raises:
        ConfigError: invalid configuration or recipients; an S3 event store without credentials
            or bucket (:meth:`herald.eventstore.EventStore.check`).
        RunInProgress: another process is running the same day.
        HeraldError: the day string is not ``YYYY-MM-DD``.
    """
    if not _DAY_RE.match(day):
        raise HeraldError(f"--date {day!r}: expected YYYY-MM-DD")
    from herald.constituency.sync import routing_recipients, sync_config
    from herald.store import ledger
    from herald.store.db import open_db
    from herald.store.runlock import DayLock

    paths = settings.paths
    if settings.events is not None:
        settings.events.check()  # an S3 store: credentials, bucket (ConfigError naming the setting)
    paths.data.mkdir(parents=True, exist_ok=True)
    db = open_db(settings.database_url)
    try:
        with DayLock(paths.data, day):
            if not paths.inbox.is_dir():
                raise ConfigError(f"inbox {paths.inbox} does not exist (paths.inbox in "
                                  f"{settings.path or 'the configuration'})")
            found = find_inputs(paths.inbox, day)
            hashes = [(str(p), h) for p, h in zip(found, files_sha256(found))]
            previous = ledger.last_run(db, day, reports=False, summary=not force)
            crashed = previous is not None and previous.status == "running"
            if previous is not None and previous.status == "done" and not force:
                before = {(i.path, i.sha256) for i in previous.inputs}
                return RunSummary(day=day, skipped=True, previous=previous.summary or {},
                                  new_inputs=sorted(p for p, h in hashes if (p, h) not in before))
            if not hashes:
                # Nothing to do, and nothing recorded: files that arrive later are taken by a later run.
                return RunSummary(day=day, warnings=[
                    f"no input files for {day} in {paths.inbox} "
                    f"(expected {paths.inbox / day}/ or {day}-*.csv)"])
            if recipients is None:
                sync_config(db, settings)
                recipients = routing_recipients(db, day)
            run_id = ledger.start_run(db, day, [(p, h, 0) for p, h in hashes],
                                      force=force or crashed, actor=actor)
            try:
                summary = _plan(settings, day, registry or default_registry(), recipients,
                                _Progress(progress), hashes, db, run_id, resume=crashed,
                                engine=engine)
            except BaseException as exc:
                ledger.fail_run(db, run_id, f"{type(exc).__name__}: {exc}")
                raise
            summary.run_id = run_id
            result = summary.to_dict()
            counts = {k: result[k] for k in COUNTS}
            if summary.errors:
                # Not done: the next run (without --force) processes the day again, once the
                # input is fixed or removed.
                ledger.fail_run(db, run_id, f"{len(summary.errors)} input(s) failed", summary=result,
                                counts=counts)
            else:
                ledger.finish_run(db, run_id, result, counts=counts)
            return summary
    finally:
        db.engine.dispose()


def _plan(settings: Settings, day: str, registry: Registry, recipients: list[Recipient], show,
          hashes: list[tuple[str, str]], db, run_id: int, resume: bool,
          engine: str = "local") -> RunSummary:
    """The stages of one run, in order; returns the summary built from their results."""
    from herald.contacts.autorecipients import store_automatic_recipients
    from herald.enrich.ipdata import IPData
    from herald.reports.policy import policy_for_run
    from herald.reports.write import remove_stale
    from herald.route import Router
    from herald.store.release import record_reports

    paths = settings.paths
    stages: dict[str, float] = {}
    warnings: list[str] = []
    t = time.monotonic()
    ipdata = IPData.from_specs(settings.ipdata)
    if ipdata.info().get("warning"):
        warnings.append(f"IP data: {ipdata.info()['warning']}")
    # The IP data's and the router's lookup tables are built before any worker is forked: the
    # workers inherit them instead of each building its own.  One after the other: built side by
    # side (threads), their temporary arrays raised the process's peak by 70 MB (bench/README.md).
    router = Router(recipients).prepare()
    ipdata.prepare()
    policy, policy_warnings = policy_for_run(settings, day, router, db)
    warnings += policy_warnings
    from herald.engines.spark import engine_for

    spark = engine_for(engine, settings, day, registry, ipdata, recipients)
    stages["setup"] = time.monotonic() - t

    # 1-2: collect and ingest (parse, enrich, store) each input; with more than one worker, in
    # the stage pool's processes (herald.parallel), forked here with the IP data and router; with
    # Spark, in Spark tasks.
    from herald.deliver.messages import MessageContext, warm
    from herald.parallel import Routed, StageContext, StagePool, run_workers

    intelmq = "intelmq" in settings.report.formats
    workers = 1 if spark else run_workers(settings)
    messages = MessageContext.for_run(settings, day, registry, router.recipients)
    pool = None
    if workers > 1:
        # With an inert policy the pool's route jobs compose their reports' messages too.
        in_pool = messages if policy is None or policy.inert else None
        if in_pool is not None:
            warm(in_pool)
        pool = StagePool(StageContext(settings, day, registry, ipdata, router, intelmq, workers,
                                      policy, in_pool))
    try:
        t = time.monotonic()
        show(f"{len(hashes)} input file(s) for {day} in {paths.inbox}")
        inputs = _ingest_all(settings, day, registry, ipdata, hashes, resume, warnings, show, pool,
                             spark)
        stages["ingest"] = time.monotonic() - t
        stored: dict[str, list[str]] = {}
        for res in inputs:
            if res.parquet and not res.error:
                stored.setdefault(res.report_type, []).append(res.parquet)

        # 3-4: per type, de-duplicate, route and write the reports, then compose their messages.
        # With Spark, every type is routed and written by one job first (one task per type when
        # the routing policy is not inert, the pool's shape).  With the pool: every
        # type is routed in the workers first (results in type order), the pool is shut down, then
        # the messages are composed (sequential phases: never more busy processes than cores).
        # Each type's job applies the routing policy (abuse contacts, inhibitions, windows) to its
        # own copy of the run's state; the automatic recipients it met are merged here in type
        # order (RoutingPolicy.merge), as a one-process run meets them.
        t = time.monotonic()
        types = sorted(stored)
        routed = None
        if spark:
            by_spark = spark.route_and_write_all(paths.reports, day, stored, intelmq=intelmq,
                                                  policy=policy)
            routed = [Routed(by_spark[n]) for n in types]
        elif pool is not None:
            futures = pool.route([(n, stored[n]) for n in types])
            routed = [f.result() for f in futures]
        if pool is not None:
            pool.close()
        per_type, reports, written = _route_and_compose(
            settings, messages, registry, router, types, stored, routed, intelmq, show, policy)
    finally:
        if pool is not None:
            pool.close()
        if spark:
            spark.close()
    remove_stale(paths.reports / day, written)
    remove_stale(paths.outbox / day, written)
    for done, seconds in per_type:
        for k, v in {**done.seconds, "messages": seconds}.items():
            stages[k] = stages.get(k, 0.0) + v
    t_sync = time.monotonic()
    # One flush makes every report and message durable before the ledger records them (a crash
    # before this point leaves the run "running"; the resumed run rewrites what differs).
    sync_paths({p.parent for p in written})
    stages["sync"] = time.monotonic() - t_sync
    stages["route_report"] = time.monotonic() - t
    reports.sort(key=lambda r: (r["recipient"], r["type"], r["path"]))

    # 5: record the reports in the ledger; the automatic recipients (abuse mailboxes) the routing
    # added get their database rows first (one bulk insert of the new ones).
    t = time.monotonic()
    faults.hit("ledger")
    warnings += store_automatic_recipients(db, router.recipients, day=day, run_id=run_id)
    by_name = {r.name: r for r in router.recipients}
    for i, report_id in record_reports(db, run_id, day, reports, by_name).items():
        reports[i]["report_id"] = report_id
    stages["ledger"] = time.monotonic() - t

    # 6: queue the composed messages when a relay is configured (`herald send` delivers them).
    if settings.smtp_configured and reports:
        from herald.deliver.outbox import enqueue_reports

        t = time.monotonic()
        faults.hit("outbox")
        enqueue_reports(db, settings, reports, day, recipients=by_name)
        warnings += [f"message for {r['recipient']} ({r['type']}) {r['delivery']}: "
                     f"{r.get('delivery_reason')}"
                     for r in reports if r.get("delivery") in ("held", "error")]
        stages["outbox"] = time.monotonic() - t

    summary = RunSummary(
        day=day, inputs=inputs, reports=reports, warnings=warnings, stages=stages,
        errors=[i.error for i in inputs if i.error],
        paths={k: str(v) for k, v in vars(paths).items()},
        rows_in=sum(i.rows_in for i in inputs), rows_stored=sum(i.rows_stored for i in inputs),
        rows_quarantined=sum(i.rows_quarantined for i in inputs),
        rows_failed=sum(i.rows_failed for i in inputs),
        rows_reported=sum(d.reported for d, _ in per_type),
        rows_unrouted=sum(d.unrouted for d, _ in per_type),
        rows_duplicate=sum(d.duplicate for d, _ in per_type),
        rows_inhibited=sum(d.inhibited for d, _ in per_type),
        rows_renotify_suppressed=sum(d.renotify_suppressed for d, _ in per_type))
    atomic_write(paths.data / "runs" / f"{day}.json", summary_json(summary.to_dict()))
    return summary


def _route_and_compose(settings: Settings, messages, registry: Registry, router,
                       types: list[str], stored: dict[str, list[str]], routed: list | None,
                       intelmq: bool, show, policy=None):
    """Per type (in ``types`` order): route and write its reports (unless ``routed`` holds the
    pool's or Spark's :class:`~herald.parallel.Routed` result of each type), merge the result
    into the run's routing ``policy`` (its automatic recipients; a type whose job named a new
    recipient otherwise than this order does is routed again here), then compose its messages
    (unless the pool's job composed them: then fault points ``report:<n>`` are passed here, in run
    order, as if they had been composed here).

    Args:
        messages: the run's :class:`herald.deliver.messages.MessageContext`.

    Returns:
        ``([(TypeReports, message seconds)], report entries, paths written)``.
    """
    from herald.deliver.messages import MessageWorkers
    from herald.reports.write import route_and_write
    from herald.store.dedup import duckdb_connection

    paths = settings.paths
    day = messages.day
    per_type, reports, written = [], [], set()
    con = None
    try:
        with MessageWorkers(messages) as mw:
            for i, type_name in enumerate(types):
                rtype = registry.get(type_name)
                pre = routed[i] if routed is not None else None
                done = pre.reports if pre is not None else None
                merged = policy.merge(done) if done is not None and policy is not None else done
                if merged is None:
                    pre = None
                    if con is None:
                        con = duckdb_connection(paths.data / "tmp" / "duckdb")
                    done = route_and_write(con, paths.reports, day, rtype, stored[type_name],
                                           router, intelmq=intelmq, policy=policy,
                                           store=settings.events)
                    merged = policy.merge(done) if policy is not None else done
                done = merged
                if pre is not None and pre.messages is not None:
                    entries, out, seconds = pre.messages, set(pre.paths), pre.seconds
                    for n in range(len(reports) + 1, len(reports) + len(entries) + 1):
                        faults.hit(f"report:{n}")
                else:
                    t0 = time.monotonic()
                    entries, out = mw.messages(rtype, list(done.reports), first=len(reports))
                    seconds = time.monotonic() - t0
                per_type.append((done, seconds))
                reports += entries
                written |= out | done.paths
                show(f"routed {type_name}: {done.distinct} distinct events, {done.reported} "
                     f"reported, {len(done.reports)} reports")
    finally:
        if con is not None:
            con.close()
    return per_type, reports, written


def _ingest_all(settings: Settings, day: str, registry: Registry, ipdata, hashes: list[tuple[str, str]],
                resume: bool, warnings: list[str], show, pool=None, spark=None) -> list[StoredInput]:
    """Ingest each input once (the same bytes under two names are read once; a resumed run takes
    inputs an earlier run stored from their markers).  With a :class:`herald.parallel.StagePool`
    the inputs are ingested in its workers, all started at once; with a Spark engine, by Spark
    tasks first; the results are taken here in input order.  Fault point ``ingest:<n>`` after the
    n-th result is taken (in input order; with the pool or Spark, later inputs may already be
    stored then: a resumed run takes them from their markers)."""
    from herald.store.ingest import ingest_input, remove_partial, resumed_input

    data = settings.paths.data
    store = settings.events  # None: the local <data>/events (as before [paths] events)
    if resume:
        remove_partial(data, day, store=store)  # temporary files of writes the crash interrupted
    inputs: list[StoredInput] = []
    seen: dict[str, str] = {}
    todo: list[tuple[str, str, StoredInput | None]] = []  # (path, sha, result known now)
    for path_s, sha in hashes:
        if sha in seen:
            todo.append((path_s, sha, StoredInput(path=path_s, sha256=sha)))
            continue
        seen[sha] = path_s
        todo.append((path_s, sha,
                     resumed_input(data, day, path_s, sha, store=store) if resume else None))
    pre: dict[str, StoredInput] = {}
    if spark is not None:
        pre = spark.ingest([(p, h) for p, h, r in todo if r is None])
    futures = iter(pool.ingest([(p, h) for p, h, r in todo if r is None]) if pool else ())
    first_seen: dict[str, str] = {}
    for path_s, sha, res in todo:
        if sha in first_seen:
            warnings.append(f"{path_s}: same content as {first_seen[sha]}; not read again")
            inputs.append(res)
            continue
        first_seen[sha] = path_s
        if res is None and sha in pre:
            res = pre[sha]
        elif res is None and pool is not None:
            res = next(futures).result()
        elif res is None:
            res = ingest_input(Path(path_s), sha, day=day, data_dir=data, registry=registry,
                               ipdata=ipdata, overwrite_enrichment=settings.overwrite_enrichment,
                               store=store)
        inputs.append(res)
        warnings += res.warnings
        if res.error:
            show(f"FAILED {Path(path_s).name}: {res.error}")
            continue
        faults.hit(f"ingest:{len(inputs)}")
        show(f"read {Path(path_s).name}: {res.report_type}, {res.rows_in} rows, "
             f"{res.rows_quarantined} quarantined")
    return inputs

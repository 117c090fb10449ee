"""The daily run: ingest -> enrich -> store -> route -> write reports and outbox messages.

:func:`run_day` is what ``herald run`` calls.  For day ``D`` it reads every input of the inbox that
belongs to ``D`` (files under ``<inbox>/D/`` and files directly in ``<inbox>`` whose names start with
``D-``), in name order:

1. *ingest*: parse each input into a typed Arrow table of its report type (Shadowserver CSV,
   sensor Parquet, or another feed format), quarantining unreadable rows with their reasons;
2. *enrich*: fill empty ASN and country columns from the embedded IP data (vectorized);
3. *store*: write the events as Parquet under ``<data>/events/date=D/type=T/``, one file per input,
   named by the input's SHA-256 (re-ingesting a file replaces, never duplicates);
4. *route*: per report type, the distinct events of this run's inputs (identical rows within the
   day are counted once, as ``rows_duplicate``) are matched against the recipients' filters;
5. *report*: one CSV per recipient, type and day, and one ``.eml`` message per report in the outbox.

The run is recorded in the metadata database (SQLite by default, PostgreSQL by URL): the ledger
(inputs with SHA-256, counts, status), every report produced, and an audit entry per report
released.  Recipients come from the database: the configuration's ``[[recipients]]`` and
``[[operations]]`` are imported at the start of each run (idempotent), and only verified filters
route.

Accounting: ``rows_in = rows_reported + rows_unrouted + rows_quarantined + rows_duplicate +
rows_failed`` where ``rows_reported`` counts distinct events that reached at least one recipient,
``rows_unrouted`` distinct events that reached none (they stay in the store) and ``rows_failed`` the
data rows of inputs that could not be read at all (:func:`herald.sources.rowcount.physical_rows`).
A day with a failed input is recorded as ``failed``, not done: the next run processes it again.  Every file is written to a temporary
name and renamed; a re-run with the same inputs and recipients rewrites byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import sys
import time
from datetime import date
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from herald.config import Settings
from herald.constituency.recipients import Recipient
from herald.deliver.eml import compose_report
from herald.errors import ConfigError, HeraldError, InputError
from herald.parentdeath import check_parent, exit_with_parent
from herald.reports.render import (ParallelWrites, ReportSpool, atomic_write, csv_header, render_lines,
                                   report_filename, sync_paths)
from herald.route import Router
from herald.schema.registry import Registry, ReportType, default_registry
from herald.sources.shadowserver_csv import QUARANTINE_SCHEMA, Quarantine, iter_file, type_from_filename
from herald.store.events import day_types, write_events

log = logging.getLogger(__name__)

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PARQUET_RE = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<type>[A-Za-z0-9_]+)-.*\.parquet$")


@dataclass
class InputResult:
    """What happened to one input file."""

    path: str
    sha256: str
    report_type: str | None = None
    format: str | None = None
    rows_in: int = 0
    rows_stored: int = 0
    rows_quarantined: int = 0
    rows_failed: int = 0
    error: str | None = None


@dataclass
class RunSummary:
    """The result of a daily run; :meth:`to_dict` is the JSON summary."""

    day: str
    rows_in: int = 0
    rows_stored: int = 0
    rows_reported: int = 0
    rows_unrouted: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_failed: int = 0
    reports: list[dict] = field(default_factory=list)
    inputs: list[InputResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    skipped: bool = False
    previous: dict = field(default_factory=dict)
    new_inputs: list[str] = field(default_factory=list)
    run_id: int | None = None

    @property
    def reconciles(self) -> bool:
        """``rows_in == rows_reported + rows_unrouted + rows_quarantined + rows_duplicate +
        rows_failed``."""
        return self.rows_in == (self.rows_reported + self.rows_unrouted + self.rows_quarantined
                                + self.rows_duplicate + self.rows_failed)

    @property
    def ok(self) -> bool:
        """No input failed and the counts reconcile."""
        return not self.errors and self.reconciles

    def to_dict(self) -> dict:
        """JSON-ready summary (counts, reports ``[{recipient, email, type, rows, path, sha256, ...}]``,
        inputs, ``failed_inputs`` ``[{path, rows, error}]``, errors, stage timings in seconds)."""
        return {
            "day": self.day,
            "run_id": self.run_id,
            "status": "ok" if self.ok else "errors",
            "rows_in": self.rows_in,
            "rows_stored": self.rows_stored,
            "rows_reported": self.rows_reported,
            "rows_unrouted": self.rows_unrouted,
            "rows_quarantined": self.rows_quarantined,
            "rows_duplicate": self.rows_duplicate,
            "rows_failed": self.rows_failed,
            "failed_inputs": [{"path": i.path, "rows": i.rows_failed, "error": i.error}
                              for i in self.inputs if i.error],
            "reconciles": self.reconciles,
            "reports": self.reports,
            "inputs": [vars(i) for i in self.inputs],
            "errors": self.errors,
            "warnings": self.warnings,
            "stages_seconds": {k: round(v, 3) for k, v in self.stages.items()},
            "paths": self.paths,
        }


def find_inputs(inbox: Path, day: str) -> list[Path]:
    """The inputs of ``day``: files in ``<inbox>/<day>/`` (recursively) and files in ``<inbox>``
    whose names start with ``<day>-``; hidden files and ``.license`` files are skipped; sorted."""
    inbox = Path(inbox)
    found: list[Path] = []
    d = inbox / day
    if d.is_dir():
        found += [p for p in d.rglob("*") if p.is_file()]
    if inbox.is_dir():
        found += [p for p in inbox.iterdir() if p.is_file() and p.name.startswith(f"{day}-")]
    return sorted(p for p in found
                  if not p.name.startswith(".") and not p.name.endswith((".license", ".md")))


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _open_input(path: Path, registry: Registry) -> tuple[ReportType, Quarantine, Iterator[pa.RecordBatch], str, Callable[[], int]]:
    """Open one input: ``(type, quarantine, batches, format name, rows_in getter)``.

    Raises:
        InputError / UnknownReportType: the file cannot be read at all.
    """
    name = path.name
    m = _PARQUET_RE.match(name)
    if name.endswith(".parquet"):
        if not m:
            raise InputError("sensor Parquet files must be named YYYY-MM-DD-<type>-<sensor>-<n>.parquet",
                             str(path))
        rtype = registry.get(m.group("type"), source=str(path))
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"cannot read Parquet: {exc}", str(path)) from exc
        missing = [c for c in rtype.columns if c not in table.column_names]
        if missing:
            raise InputError(f"columns missing: {', '.join(missing)}", str(path))
        extras = [c for c in table.column_names if c not in rtype.column_types]
        try:
            # The type's columns with its types, then any extra columns as strings (as for CSV).
            table = table.select(list(rtype.columns) + extras).cast(pa.schema(
                list(rtype.arrow_schema) + [pa.field(c, pa.string()) for c in extras]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InputError(f"columns do not have the report type's types: {exc}", str(path)) from exc
        return rtype, Quarantine(str(path)), iter(table.to_batches()), "parquet", lambda: table.num_rows
    ss_type, _ = type_from_filename(path)
    if name.endswith(".csv") and ss_type and ss_type in registry:
        it = iter_file(path, registry=registry)
        meta = next(it)
        return meta.report_type, meta.quarantine, it, "shadowserver", lambda: meta.rows_in
    try:
        from herald.sources.detect import parse_any
    except ImportError:  # pragma: no cover - feed sources not installed
        parse_any = None
    if parse_any is None:
        # No other format reader: read as Shadowserver CSV, which names the unknown type.
        it = iter_file(path, registry=registry)
        meta = next(it)
        return meta.report_type, meta.quarantine, it, "shadowserver", lambda: meta.rows_in
    parsed = parse_any(str(path))
    return (parsed.report_type, parsed.quarantine, iter(parsed.table.to_batches()),
            getattr(parsed, "format", "feed"), lambda: parsed.rows_in)


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
            force: bool = False, actor: str = "pipeline") -> RunSummary:
    """Run the daily job for ``day`` (``YYYY-MM-DD``); see the module docstring.

    The run is recorded in the metadata database (``settings.database_url``): the configuration's
    recipients and operations are imported first (idempotent), a ledger entry holds the inputs
    with their SHA-256, every report released is recorded with an audit entry, and a finished day
    is not run again unless ``force``.  A run that crashed (its ledger entry still ``running`` but
    no process holds the day's lock) is taken over and resumes: inputs already stored are not
    parsed again.

    Args:
        settings: the configuration.
        day: the report day.
        registry: report types (default: bundled).
        recipients: override the database's recipients (benchmarks, tests).
        progress: show progress on stderr (default: when stderr is a terminal).
        force: run a day that is already done.
        actor: the name recorded in the ledger's audit entries.

    Returns:
        the :class:`RunSummary` (``skipped`` is set when the day was already done); inputs that
        failed are listed in ``errors`` and the rest of the run goes on.

    Raises:
        ConfigError: invalid configuration or recipients.
        RunInProgress: another process is running the same day.
        HeraldError: the day string is not ``YYYY-MM-DD``.
    """
    if not _DAY_RE.match(day):
        raise HeraldError(f"--date {day!r}: expected YYYY-MM-DD")
    from herald.constituency.sync import routing_recipients, sync_config
    from herald.store import ledger
    from herald.store.db import open_db

    paths = settings.paths
    paths.data.mkdir(parents=True, exist_ok=True)
    db = open_db(settings.database_url)
    lock = _DayLock(paths.data / "runs" / f"{day}.lock")
    try:
        lock.acquire()  # raises RunInProgress when another process holds the day
        if not paths.inbox.is_dir():
            raise ConfigError(f"inbox {paths.inbox} does not exist (paths.inbox in "
                              f"{settings.path or 'the configuration'})")
        inputs = find_inputs(paths.inbox, day)
        hashes = [(str(p), file_sha256(p)) for p in inputs]
        previous = ledger.last_run(db, day)
        crashed = previous is not None and previous.status == "running"
        if previous is not None and previous.status == "done" and not force:
            summary = RunSummary(day=day)
            summary.skipped = True
            summary.previous = previous.summary or {}
            before = {(i.path, i.sha256) for i in previous.inputs}
            summary.new_inputs = sorted(p for p, h in hashes if (p, h) not in before)
            return summary
        if not hashes:
            # Nothing to do, and nothing recorded: files that arrive later are taken by a later run.
            summary = RunSummary(day=day)
            summary.warnings.append(f"no input files for {day} in {paths.inbox} "
                                    f"(expected {paths.inbox / day}/ or {day}-*.csv)")
            return summary
        if recipients is None:
            sync_config(db, settings)
            recipients = routing_recipients(db, day)
        run_id = ledger.start_run(db, day, [(p, h, 0) for p, h in hashes], force=force or crashed,
                                  actor=actor)
        try:
            summary = _run(settings, day, registry or default_registry(), recipients,
                           _Progress(progress), hashes, db, run_id, resume=crashed)
        except BaseException as exc:
            ledger.fail_run(db, run_id, f"{type(exc).__name__}: {exc}")
            raise
        summary.run_id = run_id
        data = summary.to_dict()
        counts = {k: data[k] for k in ("rows_in", "rows_stored", "rows_reported", "rows_unrouted",
                                       "rows_quarantined", "rows_duplicate", "rows_failed")}
        if summary.errors:
            # Not done: the next run (without --force) processes the day again, once the input is
            # fixed or removed.
            ledger.fail_run(db, run_id, f"{len(summary.errors)} input(s) failed", summary=data,
                            counts=counts)
        else:
            ledger.finish_run(db, run_id, data, counts=counts)
        return summary
    finally:
        lock.release()
        db.engine.dispose()


def _checkpoint(name: str) -> None:
    """Fault-injection point for the crash tests: when ``HERALD_KILL_AT`` equals ``name`` the
    process kills itself with SIGKILL (no clean-up runs, as in a real crash).  Points:
    ``ingest:<n>`` after the n-th input is stored, ``report:<n>`` after the n-th report is written,
    ``ledger`` before the ledger is updated, ``compose`` in a message worker process."""
    if os.environ.get("HERALD_KILL_AT") == name:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


class _DayLock:
    """An exclusive ``flock`` on ``<data>/runs/<day>.lock`` for the duration of a run.

    The kernel drops the lock when the process dies, so a ledger entry left ``running`` without the
    lock held is a crashed run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = None

    def acquire(self) -> None:
        import fcntl

        from herald.store.ledger import RunInProgress
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            self.fh = None
            raise RunInProgress(self.path.stem, None) from None

    def release(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def _run(settings: Settings, day: str, registry: Registry, recipients: list[Recipient],
         show: "_Progress", hashes: list[tuple[str, str]], db, run_id: int, resume: bool) -> RunSummary:
    from herald.enrich import enrich
    from herald.enrich.ipdata import IPData

    summary = RunSummary(day=day)
    paths = settings.paths
    summary.paths = {k: str(v) for k, v in vars(paths).items()}
    t = time.monotonic()
    ipdata = IPData.from_specs(settings.ipdata)
    warning = ipdata.info().get("warning")
    if warning:
        summary.warnings.append(f"IP data: {warning}")
    router = Router(recipients)
    summary.stages["setup"] = time.monotonic() - t

    # 1-3: ingest, enrich, store.
    t = time.monotonic()
    stored: dict[str, list[Path]] = {}
    show(f"{len(hashes)} input file(s) for {day} in {paths.inbox}")
    qdir = paths.data / "quarantine" / day
    done_dir = paths.data / "events" / f"date={day}" / "_inputs"
    seen: dict[str, str] = {}
    for path_s, sha in hashes:
        path = Path(path_s)
        res = InputResult(path=path_s, sha256=sha)
        summary.inputs.append(res)
        if sha in seen:
            # The same bytes under two names: read once (its events are the same events).
            res.error = None
            summary.warnings.append(f"{path_s}: same content as {seen[sha]}; not read again")
            continue
        seen[sha] = path_s
        marker = done_dir / f"{sha[:32]}.json"
        if resume and marker.exists():
            # Stored by an earlier, interrupted run of this day: take its counts, skip the work.
            prior = json.loads(marker.read_text())
            for k, v in prior.items():
                setattr(res, k, v)
            if res.rows_stored:
                stored.setdefault(res.report_type, []).append(Path(prior["_parquet"]))
            res.__dict__.pop("_parquet", None)
        else:
            try:
                rtype, quarantine, batches, fmt, rows_in = _open_input(path, registry)
                res.report_type, res.format = rtype.name, fmt
                enriched = (enrich(pa.Table.from_batches([b]), rtype, ipdata,
                                   overwrite=settings.overwrite_enrichment).to_batches()
                            for b in batches)
                flat = (b for group in enriched for b in group)
                first = next(flat, None)
                out = None
                if first is not None:
                    out, n = write_events(paths.data, day, rtype.name, sha, _chain(first, flat),
                                          first.schema)
                    stored.setdefault(rtype.name, []).append(out)
                    res.rows_stored = n
                res.rows_in = rows_in()
                res.rows_quarantined = len(quarantine)
                if len(quarantine):
                    # Named by the input's name and content hash: two inputs with the same name
                    # (in different folders) never share a quarantine file; long names are cut.
                    _write_quarantine(qdir / f"{path.name[:120]}.{sha[:12]}.quarantine.csv", quarantine)
                _write_json(marker, {**vars(res), "_parquet": str(out) if out else None})
                _checkpoint(f"ingest:{len(summary.inputs)}")
            except Exception as exc:  # noqa: BLE001 - reported with its type, the run goes on
                # Whatever goes wrong with one input must not stop the others; its rows are
                # counted as failed (and none of them as stored).
                if not isinstance(exc, InputError):
                    log.debug("input %s failed", path, exc_info=True)
                _input_failed(res, summary, stored, path, exc)
                show(f"FAILED {path.name}: {exc}")
                continue
        summary.rows_in += res.rows_in
        summary.rows_stored += res.rows_stored
        summary.rows_quarantined += res.rows_quarantined
        show(f"read {path.name}: {res.report_type}, {res.rows_in} rows, {res.rows_quarantined} quarantined")
    summary.stages["ingest"] = time.monotonic() - t

    # 4-5: route and report, per type, in bounded batches (see _route_and_report).
    t = time.monotonic()
    written: set[Path] = set()
    con = _duckdb_connection(paths.data / "tmp" / "duckdb")
    composers = _MessageWorkers(settings, day, registry, router.recipients)
    try:
        for type_name in sorted(stored):
            written |= _route_and_report(con, settings, day, registry.get(type_name),
                                         [str(p) for p in stored[type_name]], router, summary, show,
                                         composers)
    finally:
        composers.close()
        con.close()
    _remove_stale(paths.reports / day, written)
    _remove_stale(paths.outbox / day, written)
    t_sync = time.monotonic()
    # Reports and messages were written without a per-file fsync: one flush makes them all durable
    # before the ledger records them (a crash before this point leaves the run "running"; the
    # resumed run rewrites any report whose bytes differ).
    sync_paths({p.parent for p in written})
    summary.stages["sync"] = time.monotonic() - t_sync
    summary.stages["route_report"] = time.monotonic() - t
    summary.reports.sort(key=lambda r: (r["recipient"], r["type"], r["path"]))

    # Ledger and audit: every report released is recorded (once per content).
    t = time.monotonic()
    _checkpoint("ledger")
    _record_reports(db, run_id, day, summary, {r.name: r for r in recipients})
    summary.stages["ledger"] = time.monotonic() - t
    if "smtp" in settings.raw and summary.reports:
        # A relay is configured: queue one message per report in the outbox table (idempotent on
        # Message-ID); `herald send` delivers them.  Held messages (missing or expired OpenPGP
        # keys) are listed in the summary's reports with their reason.
        from herald.deliver.outbox import enqueue_reports

        t = time.monotonic()
        _checkpoint("outbox")
        enqueue_reports(db, settings, summary.reports, day)
        held = [r for r in summary.reports if r.get("delivery") in ("held", "error")]
        for r in held:
            summary.warnings.append(f"message for {r['recipient']} ({r['type']}) {r['delivery']}: "
                                    f"{r.get('delivery_reason')}")
        summary.stages["outbox"] = time.monotonic() - t
    _write_json(paths.data / "runs" / f"{day}.json", summary.to_dict())
    return summary


def _input_failed(res: InputResult, summary: RunSummary, stored: dict[str, list[Path]], path: Path,
                  exc: Exception) -> None:
    """Account for an input that cannot be read: its data rows
    (:func:`herald.sources.rowcount.physical_rows`) are ``rows_in`` and ``rows_failed``; events
    already stored from it (it failed after the store) are removed and not routed."""
    from herald.sources.rowcount import physical_rows

    res.error = str(exc) if isinstance(exc, InputError) else \
        f"{path}: cannot be read: {type(exc).__name__}: {exc}"
    summary.errors.append(res.error)
    for type_name, files in list(stored.items()):
        for f in list(files):
            if f.stem == res.sha256[:32]:  # the store names it by the input's SHA-256
                files.remove(f)
                f.unlink(missing_ok=True)
        if not files:
            del stored[type_name]
    try:
        n = physical_rows(path)
    except OSError as err:
        n = 0
        summary.warnings.append(f"{path}: rows of the failed input not counted: {err}")
    res.rows_in = res.rows_failed = n
    res.rows_stored = res.rows_quarantined = 0
    summary.rows_in += n
    summary.rows_failed += n


def _record_reports(db, run_id: int, day: str, summary: RunSummary, by_name: dict) -> None:
    """Record each report in the ledger; write a ``report.release`` audit entry when its content
    is new (a re-run that rewrites identical bytes releases nothing new)."""
    import sqlalchemy as sa

    from herald.store import audit, ledger
    from herald.store.db import ReportRow

    for rep in summary.reports:
        rcpt = by_name.get(rep["recipient"])
        scope = rep.get("operation") or ""
        if rcpt is None or rcpt.id is None:
            continue  # recipients given in code (benchmarks) are not in the database
        with db.session() as s:
            before = s.scalar(sa.select(ReportRow.sha256).filter_by(
                recipient_id=rcpt.id, report_type=rep["type"], day=date.fromisoformat(day), scope=scope))
        report_id = ledger.record_report(db, run_id, rcpt, rep["type"], day, rep["rows"], rep["sha256"],
                                         rep["path"], scope=scope)
        rep["report_id"] = report_id
        if before != rep["sha256"]:
            audit.record(db, "pipeline", "report.release", "report", report_id,
                         None, {"recipient": rep["recipient"], "type": rep["type"], "day": day,
                                "rows": rep["rows"], "sha256": rep["sha256"], "path": rep["path"],
                                "scope": scope, "tlp": rep["tlp"]})


def _chain(first, rest):
    yield first
    yield from rest


#: At most this many distinct events per batch of the route/report stage.
ROUTE_BATCH_ROWS = 250_000
#: Cells (rows x columns) per batch of the route/report stage: a batch costs about 100-150 bytes
#: per cell while it is routed and rendered (the table, its CSV records, the records in recipient
#: order), so wide types (event4_sinkhole_http: 39 columns, scan_ssl: 76) get fewer rows.
ROUTE_BATCH_CELLS = 4_000_000


def _batch_rows(rtype: ReportType) -> int:
    """Rows per route batch of ``rtype``: :data:`ROUTE_BATCH_CELLS` over its number of columns,
    between 16,384 and :data:`ROUTE_BATCH_ROWS`."""
    return int(min(ROUTE_BATCH_ROWS, max(16_384, ROUTE_BATCH_CELLS // max(1, len(rtype.columns)))))


#: Memory DuckDB may use for the de-duplication aggregate before it spills to disk.
DUCKDB_MEMORY_LIMIT = "500MB"


def _duckdb_connection(tmp: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a memory limit and a spill directory (the day's events can be
    larger than memory: sorting and de-duplicating spill to ``tmp``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    # preserve_insertion_order off: no query here needs DuckDB's output order (the de-duplication
    # returns row keys), and with it on DuckDB spills less well (bench/README.md).
    return duckdb.connect(config={"memory_limit": DUCKDB_MEMORY_LIMIT, "temp_directory": str(tmp),
                                  "threads": max(1, min(os.cpu_count() or 1, 4)),
                                  "preserve_insertion_order": False})


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_occurrences(con: duckdb.DuckDBPyConnection, files: list[str], rtype: ReportType
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


def _distinct_batches(con: duckdb.DuckDBPyConnection, files: list[str], rtype: ReportType,
                      batch_rows: int | None = None) -> Iterator[pa.Table]:
    """The distinct events (the type's columns) of ``files``, each at its first occurrence, in input
    order (files in the given order, rows in file order), as tables of at most ``batch_rows`` rows of
    ``rtype.arrow_schema``.

    De-duplication (:func:`_first_occurrences`) is one DuckDB aggregate over two 64-bit row hashes;
    the rows then stream from the Parquet files with pyarrow, so memory does not grow with the day
    (a ``bool`` per row for the masks).
    """
    masks = _first_occurrences(con, files, rtype)
    batch_rows = batch_rows or _batch_rows(rtype)
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


def _distinct_events(con: duckdb.DuckDBPyConnection, files: list[str], rtype: ReportType) -> pa.Table:
    """Distinct rows (the type's columns) of the given Parquet files, in input order."""
    tables = list(_distinct_batches(con, files, rtype))
    return pa.concat_tables(tables) if tables else rtype.arrow_schema.empty_table()


def _route_and_report(con: duckdb.DuckDBPyConnection, settings: Settings, day: str, rtype: ReportType,
                      files: list[str], router: Router, summary: RunSummary, show,
                      composers: "_MessageWorkers | None" = None) -> set[Path]:
    """Route one type's distinct events of the day and write its reports and messages.

    The distinct events (:func:`_distinct_batches`) stream in batches of at most
    :data:`ROUTE_BATCH_CELLS` values (:func:`_batch_rows`), so memory does not grow with the day.  Per
    batch: route; render every routed row's CSV record once (:func:`render_lines`); one ``take``
    of the records in (recipient, event) order; each recipient's share is then one contiguous
    slice of bytes, appended to its report file (:class:`ReportSpool`).  A report's rows come in
    input order (the first occurrence of each event), so a re-run writes the same bytes.  Messages
    (``.eml``) are composed once per report at the end, with the ``[mail]`` settings.

    Returns:
        the paths written (reports, messages, JSON lines).
    """
    paths = settings.paths
    mail = composers.mail if composers is not None else _mail_options(settings)
    header = csv_header(rtype)
    spool = ReportSpool()
    jsonl = "intelmq" in settings.raw.get("report", {}).get("formats", [])
    jspool = ReportSpool() if jsonl else None
    by_path: dict[Path, int] = {}
    rpaths: dict[int, Path] = {}  # recipient index -> report path (built once per type)
    distinct = reported = 0
    st = summary.stages
    batches = _distinct_batches(con, files, rtype)
    while True:
        t0 = time.monotonic()
        table = next(batches, None)
        t1 = time.monotonic()
        st["distinct"] = st.get("distinct", 0.0) + (t1 - t0)
        if table is None:
            break
        distinct += table.num_rows
        assignment = router.route(table, rtype)
        t0 = time.monotonic()
        st["route"] = st.get("route", 0.0) + (t0 - t1)
        n_routed = int(assignment.routed.sum())
        reported += n_routed
        summary.rows_reported += n_routed
        summary.rows_unrouted += table.num_rows - n_routed
        if not len(assignment.recipient):
            st["reports"] = st.get("reports", 0.0) + (time.monotonic() - t0)
            continue
        # Render only the rows that reach someone, then gather them in (recipient, event) order.
        routed_rows = np.flatnonzero(assignment.routed)
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
                rpath = rpaths[rid] = paths.reports / day / rcpt.slug / report_filename(day, rtype, rcpt)
                by_path[rpath] = rid
            spool.append(rpath, header, data[offs[s]:offs[e]], e - s)
            if jspool is not None:
                from herald.schema.intelmq import to_intelmq

                rows = table.take(pa.array(assignment.event[s:e]))
                text = "".join(json.dumps(ev, ensure_ascii=False, sort_keys=True) + "\n"
                               for ev in to_intelmq(rows, rtype))
                jspool.append(rpath.with_suffix(".intelmq.jsonl"), b"", text.encode(), e - s)
        st["reports"] = st.get("reports", 0.0) + (time.monotonic() - t0)
    t0 = time.monotonic()
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    summary.rows_duplicate += total - distinct
    out: set[Path] = set()
    jfiles = jspool.finish() if jspool is not None else {}
    spool_paths = spool.finish()
    jobs = [(by_path[rpath], rpath, digest, rows, jfiles.get(rpath.with_suffix(".intelmq.jsonl")))
            for rpath, (digest, rows, _size) in spool_paths.items()]
    if composers is not None and len(jobs) >= PARALLEL_MESSAGES and composers.available():
        # Composing and writing tens of thousands of messages is a large part of the run: worker
        # processes do it.  This process waits for them rather than routing the next type at the
        # same time: on two cores the overlap made the 10M day slower (116 s against 105 s).
        composers.submit(rtype, jobs)
        out |= composers.collect(summary)
        _checkpoint(f"report:{len(summary.reports)}")
    else:
        kill_points = os.environ.get("HERALD_KILL_AT", "").startswith("report:")
        writer = ParallelWrites()
        try:
            for rid, rpath, digest, rows, jsonl_file in jobs:
                out |= _write_message(settings, day, rtype, router.recipients[rid], rpath, digest,
                                      rows, summary, jsonl_file, mail, writer)
                if kill_points:
                    # the fault tests kill the run right after a given message is written
                    writer.close()
                    writer = ParallelWrites()
                    _checkpoint(f"report:{len(summary.reports)}")
        finally:
            writer.close()
    st["messages"] = st.get("messages", 0.0) + (time.monotonic() - t0)
    show(f"routed {rtype.name}: {distinct} distinct events, {reported} reported, "
         f"{len(jobs)} reports")
    return out | set(spool_paths)


#: Reports of one type from which messages are composed in worker processes.
PARALLEL_MESSAGES = 256
#: At most this many message-composing processes.
MESSAGE_WORKERS = 4
_MSG_CONTEXT: tuple | None = None


class _MessageWorkers:
    """Message-composing processes shared by the run's report types (forked once, on first use,
    one per core up to :data:`MESSAGE_WORKERS`).  :meth:`collect` waits for what was submitted.

    Workers inherit the run's settings, registry, recipients and ``[mail]`` options from the
    fork (:data:`_MSG_CONTEXT`); a job names the report type and carries
    ``(recipient index, report path, sha256, rows, IntelMQ file)`` tuples.

    Before forking, the parent collects garbage and freezes its objects (:func:`gc.freeze`): the
    workers' garbage collector then never frees an object of the parent.  Such objects may hold
    native state of the parent's threads (Arrow's allocator and thread pools, DuckDB) that does not
    exist in a forked child; freeing them there crashed a worker with a segmentation fault.  A
    worker that dies anyway makes :meth:`collect` raise (``BrokenProcessPool``) instead of waiting
    for ever.
    """

    def __init__(self, settings: Settings, day: str, registry: Registry, recipients: list[Recipient]) -> None:
        #: ``[mail]`` options (:func:`_mail_options`), read once per run.
        self.mail = _mail_options(settings)
        self.context = (settings, day, registry, recipients, self.mail)
        self.workers = min(os.cpu_count() or 1, MESSAGE_WORKERS)
        self.pool = None
        self.pending: list = []

    def available(self) -> bool:
        """More than one core and the ``fork`` start method."""
        return self.workers > 1 and "fork" in mp.get_all_start_methods()

    def submit(self, rtype: ReportType, jobs: list) -> None:
        """Compose and write the messages of ``jobs`` (reports of ``rtype``) in the workers."""
        import gc
        from concurrent.futures import ProcessPoolExecutor

        n = self.workers * 4
        chunks = [(rtype.name, jobs[i::n]) for i in range(n) if jobs[i::n]]
        if self.pool is not None:
            self.pending.extend(self.pool.submit(_compose_chunk, c) for c in chunks)
            return
        global _MSG_CONTEXT
        _MSG_CONTEXT = self.context
        # Each recipient's area and filter texts, once, here: the forked workers inherit them.
        from herald.deliver.compose import recipient_texts
        for r in self.context[3]:
            recipient_texts(r)
        # Workers die with this process (a SIGKILL of `herald run` must not leave them behind).
        self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"),
                                        initializer=exit_with_parent, initargs=(os.getpid(),))
        # With the fork start method the executor forks all its workers at this first submit.
        gc.collect()
        gc.freeze()
        try:
            self.pending.extend(self.pool.submit(_compose_chunk, c) for c in chunks)
        finally:
            gc.unfreeze()

    def collect(self, summary: RunSummary) -> set[Path]:
        """Wait for every submitted job; their summary entries go into ``summary``.  Returns the
        paths written.

        Raises:
            the first worker error; ``concurrent.futures.process.BrokenProcessPool`` when a worker
            died.
        """
        out: set[Path] = set()
        pending, self.pending = self.pending, []
        for fut in pending:
            entries, paths_out = fut.result()
            summary.reports.extend(entries)
            out |= paths_out
        return out

    def close(self) -> None:
        """Stop the workers (after :meth:`collect`, or on an error: then unfinished jobs are
        abandoned; the ledger does not record the run as done)."""
        global _MSG_CONTEXT
        if self.pool is not None:
            for fut in self.pending:
                fut.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            self.pending = []
            _MSG_CONTEXT = None


def _mail_options(settings: Settings) -> dict:
    """Keyword arguments of :func:`herald.deliver.eml.compose_report` from ``[mail]``: ZIP and
    attachment thresholds (bytes), templates, language and unsubscribe targets, so that the
    outbox copies say what the queued messages say."""
    from herald.deliver.compose import Templates
    from herald.deliver.settings import delivery_settings

    m = delivery_settings(settings).mail
    return {"zip_above": m.zip_above, "attach_max": m.attach_max,
            "templates": Templates(m.templates) if m.templates else None, "language": m.language,
            "unsubscribe_url": m.unsubscribe_url, "unsubscribe_mailto": m.unsubscribe_mailto}


def _compose_chunk(jobs: tuple[str, list]) -> tuple[list[dict], set[Path]]:
    """Worker: write the messages of ``jobs`` (``(type name, [job, ...])``, see
    :class:`_MessageWorkers`); returns the summary entries and the paths written."""
    settings, day, registry, recipients, mail = _MSG_CONTEXT
    type_name, jobs = jobs
    check_parent()  # the parent died (where the kernel does not signal): stop
    _checkpoint("compose")  # fault tests: a message worker dies
    rtype = registry.get(type_name)
    part = RunSummary(day=day)
    out: set[Path] = set()
    with ParallelWrites() as writer:
        for rid, rpath, digest, rows, jsonl_file in jobs:
            out |= _write_message(settings, day, rtype, recipients[rid], rpath, digest, rows, part,
                                  jsonl_file, mail, writer)
    return part.reports, out


def _write_message(settings: Settings, day: str, rtype: ReportType, rcpt: Recipient, rpath: Path,
                   digest: str, rows: int, summary: RunSummary, jsonl, mail: dict,
                   writer: ParallelWrites | None = None) -> set[Path]:
    """The ``.eml`` of a written report, and its summary entry.  Returns the paths written.

    With ``writer`` the file is written on its threads (the caller closes it before relying on
    the file)."""
    paths = settings.paths
    name = rpath.name
    tlp = (rcpt.tlp or settings.tlp).upper().removeprefix("TLP:")
    size = rpath.stat().st_size
    data = rpath.read_bytes() if size <= mail["attach_max"] else b""  # not attached: not read
    # compose_report's bytes are what build_message's parsed message gives back (round trip), so
    # the parse is skipped: it costs more than composing for large reports.
    msg = compose_report(rcpt, rtype, day, rows, name, data, digest, settings.sender, tlp,
                         size=size, **mail).as_bytes()
    epath = paths.outbox / day / rcpt.slug / f"{name}.eml"
    if writer is not None:
        writer.submit(atomic_write, epath, msg, durable=False)
    else:
        atomic_write(epath, msg, durable=False)
    out = {rpath, epath}
    entry = {"recipient": rcpt.name, "kind": rcpt.kind, "type": rtype.name,
             "rows": rows, "path": str(rpath), "sha256": digest,
             "message": str(epath), "tlp": tlp, "operation": rcpt.operation, "email": rcpt.email}
    if jsonl is not None:
        jpath = rpath.with_suffix(".intelmq.jsonl")
        entry["intelmq_path"] = str(jpath)
        out.add(jpath)
    summary.reports.append(entry)
    return out


def _remove_stale(root: Path, keep: set[Path]) -> None:
    """Remove report/message files of the day that this run did not produce (recipients or inputs
    changed since an earlier run of the same day)."""
    if not root.is_dir():
        return
    keep_s = {str(p) for p in keep}
    # os.walk with plain strings: the day may hold a hundred thousand files.
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith((".csv", ".eml", ".jsonl")):
                full = os.path.join(dirpath, f)
                if full not in keep_s:
                    os.unlink(full)


def _write_quarantine(path: Path, quarantine: Quarantine) -> None:
    import io
    buf = io.BytesIO()
    pacsv.write_csv(quarantine.to_table(), buf)
    atomic_write(path, buf.getvalue())


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

"""The run ledger: which days were processed, from which inputs, producing which reports.

A daily run calls :func:`start_run` first.  A day whose newest finished run is ``done`` is not
processed again (:class:`AlreadyDone`) unless forced; a day with a ``running`` run is not started twice
(:class:`RunInProgress`) — a partial unique index on ``runs(day) WHERE status = 'running'`` makes
that hold across processes and hosts.  The run ends with :func:`finish_run` (summary and counts
stored) or :func:`fail_run`.  :func:`record_report` remembers each report file; it is idempotent
per (recipient, report type, day, scope), so a re-run replaces the row rather than adding one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from herald.errors import StoreError
from herald.names import slugify
from herald.store import audit
from herald.store.db import (
    Database, NotFound, RecipientRow, ReportRow, RunInputRow, RunRow, utcnow,
)


class AlreadyDone(StoreError):
    """The day already has a finished run; pass ``force=True`` to run it again.

    Attributes:
        day: the day.
        run_id: the finished run.
        inputs_changed: True when the new inputs (path, sha256) differ from that run's — a reason
            to force.
    """

    def __init__(self, day: date, run_id: int, inputs_changed: bool) -> None:
        hint = ("; its inputs have changed since, use --force to rebuild"
                if inputs_changed else "; inputs are unchanged")
        super().__init__(f"{day}: already processed by run {run_id}{hint}")
        self.day, self.run_id, self.inputs_changed = day, run_id, inputs_changed


class RunInProgress(StoreError):
    """Another run of the same day is in progress (or crashed without ending: force to take over).

    Attributes:
        day: the day.
        run_id: the running run, when known.
    """

    def __init__(self, day: date, run_id: int | None) -> None:
        which = f"run {run_id}" if run_id else "another run"
        super().__init__(f"{day}: {which} is in progress; if it crashed, use --force to take over")
        self.day, self.run_id = day, run_id


@dataclass(frozen=True)
class RunInput:
    """An input file of a run."""

    path: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class ReportInfo:
    """A produced report file (see :class:`herald.store.db.ReportRow`)."""

    id: int
    run_id: int
    recipient_id: int
    recipient: str
    report_type: str
    day: date
    scope: str
    rows: int
    sha256: str
    path: str


@dataclass(frozen=True)
class RunInfo:
    """A ledger entry.  Times are aware UTC; ``inputs``/``reports`` are filled by :func:`get_run`
    and :func:`last_run`, empty in :func:`list_runs`."""

    id: int
    day: date
    status: str
    started_at: datetime
    finished_at: datetime | None
    forced: bool
    error: str | None
    counts: dict[str, Any] | None
    summary: dict[str, Any] | None
    inputs: tuple[RunInput, ...] = ()
    reports: tuple[ReportInfo, ...] = ()


def _day(value: date | str) -> date:
    if isinstance(value, datetime):
        raise TypeError("day must be a date, not a datetime")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise StoreError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def _info(s: Session, run: RunRow, full: bool, reports_too: bool = True,
          summary: bool = True) -> RunInfo:
    inputs: tuple[RunInput, ...] = ()
    reports: tuple[ReportInfo, ...] = ()
    if full:
        inputs = tuple(RunInput(i.path, i.sha256, i.rows) for i in run.inputs)
    if full and reports_too:
        reports = tuple(
            ReportInfo(r.id, r.run_id, r.recipient_id, name, r.report_type, r.day, r.scope,
                       r.rows, r.sha256, r.path)
            for r, name in s.execute(sa.select(ReportRow, RecipientRow.name).join(RecipientRow)
                                     .where(ReportRow.run_id == run.id).order_by(ReportRow.id)))
    return RunInfo(run.id, run.day, run.status, run.started_at, run.finished_at, run.forced,
                   run.error, run.counts if summary else None, run.summary if summary else None,
                   inputs, reports)


def start_run(db: Database, day: date | str, inputs: Iterable[tuple[str, str, int]],
              force: bool = False, actor: str = "pipeline") -> int:
    """Open a ledger entry for ``day`` with its input files.

    Args:
        day: the day processed (a date or ``YYYY-MM-DD``).
        inputs: ``(path, sha256, rows)`` of each input file.
        force: run even though the day is done, and take over a ``running`` run (marking it
            failed) — for a run that crashed.  Forcing is written to the audit log.
        actor: recorded in the audit log when forcing.

    Returns:
        The new run's id.

    Raises:
        AlreadyDone: the day has a ``done`` run and ``force`` is false.
        RunInProgress: the day has a ``running`` run and ``force`` is false, or another process
            started one at the same moment.
    """
    day = _day(day)
    inputs = [RunInput(str(p), str(h), int(n)) for p, h, n in inputs]
    paths = [i.path for i in inputs]
    if len(set(paths)) != len(paths):
        raise StoreError(f"{day}: an input path is listed twice")
    try:
        with db.session() as s:
            # Without their summaries (JSON documents of every report: megabytes per run).
            previous = s.scalars(sa.select(RunRow).where(RunRow.day == day)
                                 .options(defer(RunRow.summary), defer(RunRow.counts))
                                 .order_by(RunRow.id.desc())).all()
            running = next((r for r in previous if r.status == "running"), None)
            # The day is done when its newest finished run is done: a later run that failed
            # (an input could not be read, a crash) leaves the day to be run again.
            finished = next((r for r in previous if r.status != "running"), None)
            done = finished if finished is not None and finished.status == "done" else None
            if running is not None and not force:
                raise RunInProgress(day, running.id)
            if done is not None and not force:
                before = {(i.path, i.sha256) for i in done.inputs}
                raise AlreadyDone(day, done.id, before != {(i.path, i.sha256) for i in inputs})
            if running is not None:
                running.status, running.finished_at = "failed", utcnow()
                running.error = "abandoned: a forced run of the same day took over"
                s.flush()
            run = RunRow(day=day, status="running", started_at=utcnow(), forced=force)
            run.inputs = [RunInputRow(path=i.path, sha256=i.sha256, rows=i.rows) for i in inputs]
            s.add(run)
            s.flush()
            if force:
                audit.record(s, actor, "run.force", "run", run.id, None,
                             {"day": day, "previous_done": done.id if done else None,
                              "taken_over": running.id if running else None})
            return run.id
    except IntegrityError as exc:
        # The partial unique index on running days: another process won the race.
        text = str(exc.orig)
        if "uq_runs_running_day" in text or "runs.day" in text:
            raise RunInProgress(day, None) from None
        raise


def _running(s: Session, run_id: int) -> RunRow:
    run = s.get(RunRow, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    if run.status != "running":
        raise StoreError(f"run {run_id} is already {run.status}")
    return run


def finish_run(db: Database, run_id: int, summary: dict[str, Any],
               counts: dict[str, Any] | None = None) -> None:
    """Mark a run done, storing its summary (JSON) and counts.

    ``counts`` defaults to ``summary["counts"]`` when the summary has one.

    Raises:
        NotFound: no such run.
        StoreError: the run is not ``running`` (already done, failed, or taken over).
    """
    with db.session() as s:
        run = _running(s, run_id)
        run.status, run.finished_at, run.summary = "done", utcnow(), summary
        run.counts = counts if counts is not None else summary.get("counts")


def fail_run(db: Database, run_id: int, error: str, summary: dict[str, Any] | None = None,
             counts: dict[str, Any] | None = None) -> None:
    """Mark a run failed with an error message (and the partial summary and counts, if any).

    A failed run does not make its day done: the next run of the day starts without ``force``.

    Raises:
        NotFound: no such run.
        StoreError: the run is not ``running``.
    """
    with db.session() as s:
        run = _running(s, run_id)
        run.status, run.finished_at, run.error = "failed", utcnow(), str(error)
        if summary is not None:
            run.summary = summary
        if counts is not None:
            run.counts = counts


class ReportRecipient(Protocol):
    """What the ledger needs of a report's recipient (a
    :class:`herald.constituency.recipients.Recipient` has it): its database id if known, its
    name, and the operation of a law-enforcement share (``None`` for its own report)."""

    id: int | None
    name: str
    operation: str | None


def _recipient_id(s: Session, recipient: int | str | ReportRecipient) -> tuple[int, str]:
    """Database id and scope (operation name or "") of a report's recipient."""
    scope = ""
    if not isinstance(recipient, (int, str)):
        scope = recipient.operation or ""
        if recipient.id is not None:
            return recipient.id, scope
        recipient = recipient.name
    if isinstance(recipient, int):
        if s.get(RecipientRow, recipient) is None:
            raise NotFound(f"no recipient {recipient}")
        return recipient, scope
    rid = s.scalar(sa.select(RecipientRow.id).where(sa.or_(
        RecipientRow.name == recipient, RecipientRow.slug == slugify(recipient))))
    if rid is None:
        raise NotFound(f"no recipient {recipient!r} in the database (import the configuration's "
                       f"recipients first: herald recipients import)")
    return rid, scope


def record_report(db: Database, run_id: int, recipient: int | str | ReportRecipient, report_type: str,
                  day: date | str, rows: int, sha256: str, path: str,
                  scope: str | None = None) -> int:
    """Remember a report file; idempotent per (recipient, report type, day, scope).

    Args:
        recipient: a :class:`ReportRecipient` such as a ``Recipient`` (by ``id``, else by
            name; its ``operation`` is the scope), a database id, or a name/slug.
        scope: overrides the scope: ``""`` for the recipient's own report, or an operation name.

    Returns:
        The report row's id (the same id when recorded again; the row then points at this run and
        the new rows/sha256/path).

    Raises:
        NotFound: no such run or recipient.
    """
    day = _day(day)
    with db.session() as s:
        if s.get(RunRow, run_id) is None:
            raise NotFound(f"no run {run_id}")
        rid, default_scope = _recipient_id(s, recipient)
        scope = default_scope if scope is None else scope
        row = s.scalars(sa.select(ReportRow).filter_by(
            recipient_id=rid, report_type=report_type, day=day, scope=scope)).one_or_none()
        if row is None:
            row = ReportRow(recipient_id=rid, report_type=report_type, day=day, scope=scope)
            s.add(row)
        row.run_id, row.rows, row.sha256, row.path = run_id, int(rows), sha256, str(path)
        row.created_at = utcnow()
        s.flush()
        return row.id


def last_run(db: Database, day: date | str, reports: bool = True,
             summary: bool = True) -> RunInfo | None:
    """The newest run of ``day`` (any status), with its inputs and (unless ``reports`` is false:
    the daily run's check of what is done reads a day's tens of thousands of reports otherwise)
    its reports, or ``None``.  ``summary=False``: without its summary and counts (``None`` in the
    :class:`RunInfo`; the summary is a JSON document of every report, megabytes on a large day)."""
    day = _day(day)
    stmt = sa.select(RunRow).where(RunRow.day == day).order_by(RunRow.id.desc()).limit(1)
    if not summary:
        stmt = stmt.options(defer(RunRow.summary), defer(RunRow.counts))
    with db.session() as s:
        run = s.scalars(stmt).first()
        return _info(s, run, True, reports, summary) if run else None


def get_run(db: Database, run_id: int) -> RunInfo:
    """One run with its inputs and reports.

    Raises:
        NotFound: no such run.
    """
    with db.session() as s:
        run = s.get(RunRow, run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        return _info(s, run, True)


def list_runs(db: Database, day: date | str | None = None, status: str | None = None,
              limit: int = 50) -> list[RunInfo]:
    """The newest runs first (without inputs/reports), optionally of one day or status."""
    stmt = sa.select(RunRow).order_by(RunRow.id.desc()).limit(limit)
    if day is not None:
        stmt = stmt.where(RunRow.day == _day(day))
    if status:
        stmt = stmt.where(RunRow.status == status)
    with db.session() as s:
        return [_info(s, r, False) for r in s.scalars(stmt)]


def running_days(db: Database) -> set[date]:
    """Days with a run in progress (retention must not touch them)."""
    with db.session() as s:
        return set(s.scalars(sa.select(RunRow.day).where(RunRow.status == "running")))

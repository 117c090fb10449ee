"""Retention: delete what Herald no longer needs to keep.

Configuration (``[retention]`` of the TOML file)::

    [retention]
    events_days = 30     # event partitions, report files, outbox files and finished outbox rows
    audit_days = 400     # audit-log entries (at least AUDIT_MIN_RETENTION_DAYS = 365)
    ledger_days = 400    # runs, their inputs and report rows (default: audit_days)

A day ``D`` is expired when ``D < today - keep_days``: with 30 days, on 2026-11-30 the partitions
of 2026-10-31 and later stay.  Never deleted, whatever the settings: today's and later days, and
any day with a ``running`` run; outbox rows still queued, sending or held.

Directories are first renamed to a hidden ``.purge-*`` name (one atomic step, so readers globbing
``date=*`` never see half a partition), then the database rows are deleted and the purge recorded
in the audit log in one transaction, and only then are the renamed directories removed.

An event store on S3 (``[paths] events = "s3://..."``, :mod:`herald.eventstore`) has no
atomic rename: its expired ``date=D`` prefixes are listed the same way and deleted (every object
under the prefix) only after the transaction, so a failed transaction leaves them all in place.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from herald.config import Settings, check_section
from herald.errors import ConfigError
from herald.store import audit
from herald.store.db import (
    AUDIT_MIN_RETENTION_DAYS, AuditRow, Database, OutboxRow, RunRow, utcnow,
)
from herald.store.events import store_days
from herald.store.ledger import running_days

_DAY_DIR = re.compile(r"^(?:date=)?(\d{4}-\d{2}-\d{2})$")

#: Outbox rows in these states are finished and may be deleted when old.
_FINISHED_OUTBOX = ("sent", "failed")


@dataclass(frozen=True)
class Retention:
    """Retention periods in days (see the module docstring)."""

    events_days: int = 30
    audit_days: int = 400
    ledger_days: int = 400


def retention_from_settings(settings: Settings) -> Retention:
    """Read ``[retention]``.

    Raises:
        ConfigError: a value that is not a positive integer, or ``audit_days`` below
            :data:`herald.store.db.AUDIT_MIN_RETENTION_DAYS` (the database would refuse it); an
            unknown key in the section.
    """
    raw = check_section(settings, "retention", {"events_days", "audit_days", "ledger_days"})
    values = {}
    for key, default in (("events_days", 30), ("audit_days", 400)):
        values[key] = raw.get(key, default)
    values["ledger_days"] = raw.get("ledger_days", values["audit_days"])
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"retention.{key} must be a positive number of days, not {v!r}")
    if values["audit_days"] < AUDIT_MIN_RETENTION_DAYS:
        raise ConfigError(f"retention.audit_days {values['audit_days']} is below the minimum "
                          f"{AUDIT_MIN_RETENTION_DAYS}: the audit log keeps at least a year")
    return Retention(**values)


@dataclass
class PurgeResult:
    """What a purge removed (or, with ``dry_run``, would remove).

    Attributes:
        event_days / report_days / outbox_days: days whose directories were removed.
        outbox_rows, runs, audit_rows: database rows deleted.
        protected_days: expired days kept because a run of that day is in progress.
        audit_id: the audit entry recording the purge (``None`` for a dry run).
    """

    cutoff: date
    dry_run: bool
    event_days: list[date] = field(default_factory=list)
    report_days: list[date] = field(default_factory=list)
    outbox_days: list[date] = field(default_factory=list)
    outbox_rows: int = 0
    outbox_files: int = 0
    runs: int = 0
    audit_rows: int = 0
    protected_days: list[date] = field(default_factory=list)
    audit_id: int | None = None


def _day_dirs(parent: Path) -> list[tuple[date, Path]]:
    out = []
    if not parent.is_dir():
        return out
    for child in parent.iterdir():
        m = _DAY_DIR.match(child.name)
        if m and child.is_dir():
            try:
                out.append((date.fromisoformat(m.group(1)), child))
            except ValueError:
                continue
    return sorted(out)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def purge(db: Database, settings: Settings, today: date, keep_days: int | None = None,
          dry_run: bool = False, actor: str = "purge") -> PurgeResult:
    """Delete expired event partitions, report and outbox files, old outbox rows, old ledger
    entries and old audit entries; record the purge in the audit log.

    Args:
        today: the current day (UTC); nothing of this day or later is touched.
        keep_days: days of events/reports/outbox to keep; default ``[retention] events_days``.
        dry_run: only compute what would be removed.

    Returns:
        A :class:`PurgeResult`.

    Raises:
        ConfigError: invalid retention settings or ``keep_days`` < 1; an S3 event store without
            credentials.
        OSError: an S3 event store cannot be listed or its objects deleted.
    """
    ret = retention_from_settings(settings)
    keep = ret.events_days if keep_days is None else keep_days
    if not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"keep_days must be at least 1, not {keep!r}")
    cutoff = today - timedelta(days=keep)
    ledger_cutoff = today - timedelta(days=ret.ledger_days)
    audit_cutoff = utcnow() - timedelta(days=ret.audit_days)
    running = running_days(db)
    result = PurgeResult(cutoff=cutoff, dry_run=dry_run)

    doomed: list[Path] = []
    remote: list[str] = []  # expired day prefixes of a non-local event store
    store = settings.event_store
    # A local store is purged like the reports folder (rename, then remove); S3 by prefix (None).
    for parent, bucket in ((Path(store.root) if store.is_local else None, result.event_days),
                           (settings.paths.reports, result.report_days),
                           (settings.paths.outbox, result.outbox_days)):
        listed = ([(d, store.path(f"date={d}")) for d in store_days(store)] if parent is None
                  else _day_dirs(parent))
        for day, path in listed:
            if day >= cutoff or day >= today:
                continue
            if day in running:
                if day not in result.protected_days:
                    result.protected_days.append(day)
                continue
            bucket.append(day)
            (remote if parent is None else doomed).append(path)

    outbox_where = sa.and_(OutboxRow.state.in_(_FINISHED_OUTBOX),
                           OutboxRow.created_at < _midnight(cutoff))
    runs_where = sa.and_(RunRow.day < ledger_cutoff, RunRow.status != "running")
    audit_where = AuditRow.at < audit_cutoff
    if dry_run:
        with db.session() as s:
            result.outbox_rows = s.scalar(sa.select(sa.func.count()).where(outbox_where)
                                          .select_from(OutboxRow))
            result.runs = s.scalar(sa.select(sa.func.count()).where(runs_where).select_from(RunRow))
            result.audit_rows = s.scalar(sa.select(sa.func.count()).where(audit_where)
                                         .select_from(AuditRow))
        return result

    # Hide the directories first (atomic rename), so a reader never sees a half-deleted partition.
    hidden: list[Path] = []
    for path in doomed:
        target = path.with_name(f".purge-{path.name}-{os.getpid()}")
        path.rename(target)
        hidden.append(target)

    try:
        files = _delete_rows(db, settings, result, outbox_where, runs_where, audit_where, today,
                             keep, ledger_cutoff, audit_cutoff, actor)
    except BaseException:
        # Nothing was recorded: put the directories back as they were.
        for original, target in zip(doomed, hidden):
            target.rename(original)
        raise
    for path in hidden:
        shutil.rmtree(path, ignore_errors=True)
    for location in remote:
        store.delete_dir(location)
    for p in files:
        try:
            p.unlink()
            result.outbox_files += 1
        except FileNotFoundError:
            pass
    return result


def _delete_rows(db: Database, settings: Settings, result: PurgeResult, outbox_where, runs_where,
                 audit_where, today: date, keep: int, ledger_cutoff: date,
                 audit_cutoff: datetime, actor: str) -> list[Path]:
    """Delete expired rows and record the purge, in one transaction; return the outbox message
    files to remove afterwards."""
    cutoff = result.cutoff
    outbox_dir = settings.paths.outbox.resolve()
    files: list[Path] = []
    with db.session() as s:
        for row_path in s.scalars(sa.select(OutboxRow.path).where(outbox_where)):
            if row_path:
                p = Path(row_path).resolve()
                # Only files inside the outbox directory: a row must not make purge delete
                # anything else.
                if p.is_relative_to(outbox_dir):
                    files.append(p)
        result.outbox_rows = s.execute(sa.delete(OutboxRow).where(outbox_where)).rowcount
        result.runs = s.execute(sa.delete(RunRow).where(runs_where)).rowcount
        result.audit_rows = s.execute(sa.delete(AuditRow).where(audit_where)
                                      .execution_options(synchronize_session=False)).rowcount
        result.audit_id = audit.record(s, actor, "purge.run", "retention", today.isoformat(), None, {
            "cutoff": cutoff, "keep_days": keep, "event_days": result.event_days,
            "report_days": result.report_days, "outbox_days": result.outbox_days,
            "outbox_rows": result.outbox_rows, "runs": result.runs,
            "ledger_before": ledger_cutoff, "audit_rows": result.audit_rows,
            "audit_before": audit_cutoff, "protected_days": result.protected_days})
    return files

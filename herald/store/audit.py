"""The audit log: who did what to which object, when and why.

Every change Herald makes to recipients, filters, operations, forced runs and retention is recorded
here.  The log is append-only: Herald has no function that changes or deletes an entry, the ORM
refuses such a flush, and the database itself refuses UPDATE (and DELETE of entries younger than
:data:`herald.store.db.AUDIT_MIN_RETENTION_DAYS`) with triggers — see docs/database.md.

Actions are dotted ``<object>.<verb>`` words (``recipient.add``, ``filter.verify``,
``run.force``, ``purge.run``); actors are ``config`` (a configuration import), ``cli:<user>``,
``pipeline``, or a portal user's e-mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from herald.store.db import AuditRow, Database, utcnow


@dataclass(frozen=True)
class AuditEntry:
    """One audit-log entry, as read back.

    Attributes:
        id: increasing entry number.
        at: when, timezone-aware UTC.
        actor, action, object_type, object_id, reason: as recorded.
        details: JSON document, or ``None``.
    """

    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    reason: str | None
    details: dict[str, Any] | None


#: Widths of the ``actor`` and ``object_id`` columns (``audit_log``, migration 0001).
ACTOR_MAX = 200
OBJECT_ID_MAX = 200


def _clip(value: Any, limit: int) -> str:
    """``value`` as text of at most ``limit`` characters (an ellipsis marks a clipped value)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(row.id, row.at, row.actor, row.action, row.object_type, row.object_id,
                      row.reason, row.details)


def entry_values(actor: str, action: str, object_type: str, object_id: Any = None,
                 reason: str | None = None, details: dict[str, Any] | None = None,
                 at: datetime | None = None) -> dict[str, Any]:
    """The column values of one audit entry (arguments as :func:`record`), checked and clipped:
    for :func:`record` and for bulk inserts (``sa.insert(AuditRow)`` with a list of them).

    Raises:
        ValueError: ``actor``, ``action`` or ``object_type`` is empty.
    """
    for name, value in (("actor", actor), ("action", action), ("object_type", object_type)):
        if not value or not str(value).strip():
            raise ValueError(f"audit record: {name} is required")
    # Clipped to the columns' widths: an actor can be text a client sent (the e-mail of a failed
    # login), which must neither fail the insert (PostgreSQL refuses over-long VARCHARs) nor
    # bloat the log.
    return {"actor": _clip(actor, ACTOR_MAX), "action": action, "object_type": object_type,
            "object_id": None if object_id is None else _clip(object_id, OBJECT_ID_MAX),
            "reason": reason, "details": details, "at": at or utcnow()}


def record(target: Database | Session, actor: str, action: str, object_type: str,
           object_id: Any = None, reason: str | None = None,
           details: dict[str, Any] | None = None, at: datetime | None = None) -> int:
    """Append one entry to the audit log.

    Args:
        target: a :class:`Session` — the entry is part of its transaction, so it is committed
            with (and only with) the change it describes — or a :class:`Database`, in which case
            the entry is committed at once in its own transaction.
        actor: who (``config``, ``cli:alice``, ``pipeline``, a user's e-mail).
        action: what, ``<object>.<verb>``.
        object_type: ``recipient``, ``filter``, ``operation``, ``run``, ...
        object_id: the object's id or name (stored as text), or ``None``.
        reason: the human reason given, if any.
        details: a JSON-serialisable dict (dates become ISO text).
        at: the time (aware); default now (UTC).  Meant for imports of older logs and tests.

    Returns:
        The new entry's id.

    Raises:
        ValueError: ``actor``, ``action`` or ``object_type`` is empty, or ``at`` is naive.
    """
    row = AuditRow(**entry_values(actor, action, object_type, object_id, reason, details, at))
    if isinstance(target, Session):
        target.add(row)
        target.flush()
        return row.id
    with target.session() as s:
        s.add(row)
        s.flush()
        return row.id


def query(db: Database, actor: str | None = None, action: str | None = None,
          since: datetime | None = None, until: datetime | None = None,
          object_type: str | None = None, object_id: Any = None,
          limit: int | None = None) -> list[AuditEntry]:
    """Read audit entries, oldest first, matching every given condition.

    Args:
        actor: exact actor.
        action: exact action, or a prefix ending in ``.`` or ``*`` (``filter.`` / ``filter*``
            matches every filter action).
        since / until: aware datetimes; ``since <= at < until``.
        object_type / object_id: the object.
        limit: at most this many of the *newest* matching entries (still returned oldest first).

    Returns:
        A list of :class:`AuditEntry`.
    """
    stmt = sa.select(AuditRow)
    if actor:
        stmt = stmt.where(AuditRow.actor == actor)
    if action:
        if action.endswith("*") or action.endswith("."):
            prefix = action.rstrip("*")
            stmt = stmt.where(AuditRow.action.startswith(prefix, autoescape=True))
        else:
            stmt = stmt.where(AuditRow.action == action)
    if since is not None:
        stmt = stmt.where(AuditRow.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRow.at < until)
    if object_type:
        stmt = stmt.where(AuditRow.object_type == object_type)
    if object_id is not None:
        stmt = stmt.where(AuditRow.object_id == str(object_id))
    stmt = stmt.order_by(AuditRow.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    with db.session() as s:
        rows = [_entry(r) for r in s.scalars(stmt)]
    rows.reverse()
    return rows

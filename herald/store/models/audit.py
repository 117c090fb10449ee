"""Model of the audit log, append-only (herald/store/audit.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from herald.errors import StoreError
from herald.store.models.base import Base, JSONDoc, UTCDateTime, utcnow

#: Audit rows younger than this many days cannot be deleted, not even by retention: the database
#: triggers created by migration 0001 refuse it.  ``[retention] audit_days`` may not be lower.
AUDIT_MIN_RETENTION_DAYS = 365


class AuditRow(Base):
    """One audit-log entry.  Append-only: database triggers refuse UPDATE, and DELETE of rows
    younger than :data:`AUDIT_MIN_RETENTION_DAYS` (see migration 0001)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
        Index("ix_audit_log_object_type_object_id", "object_type", "object_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict | None] = mapped_column(JSONDoc)


@event.listens_for(Session, "before_flush")
def _audit_is_append_only(session: Session, flush_context, instances) -> None:
    """Refuse, in the ORM too, any flush that changes or deletes an audit row.

    The database triggers are the guarantee; this gives a clearer error earlier.
    """
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditRow) and (obj in session.deleted or session.is_modified(obj)):
            raise StoreError("audit_log is append-only: entries cannot be changed or deleted")

"""Model of the outbox: the messages to deliver (herald/deliver/outbox.py)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from herald.store.models.base import Base, UTCDateTime, check_in, utcnow

OUTBOX_STATES = ("queued", "sending", "sent", "failed", "held")


class OutboxRow(Base):
    """A message to deliver (the delivery code is not written yet; this is its table)."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(check_in("state", OUTBOX_STATES), name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # The sender's work queue: due messages in a state.
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: RFC 5322 Message-ID, unique so a message is never queued twice.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"),
                                              index=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id", ondelete="SET NULL"),
                                                  index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    envelope_sender: Mapped[str] = mapped_column(String(320))
    #: The rendered message file in the outbox directory, if any.
    path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Delivery columns (migration d001, herald/deliver/outbox.py).
    rcpt_to: Mapped[str | None] = mapped_column(String(320))
    day: Mapped[date | None] = mapped_column(Date, index=True)
    report_type: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(Text)
    tlp: Mapped[str | None] = mapped_column(String(16))
    sha256: Mapped[str | None] = mapped_column(String(64))
    protection: Mapped[str | None] = mapped_column(String(16))
    hold_reason: Mapped[str | None] = mapped_column(String(32))
    smtp_phase: Mapped[str | None] = mapped_column(String(16))
    smtp_reply: Mapped[str | None] = mapped_column(Text)

"""Models of the outbox: the messages to deliver and their envelope addresses
(herald/deliver/outbox.py, herald/deliver/envelope.py)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from herald.store.models.base import Base, UTCDateTime, check_in, utcnow

OUTBOX_STATES = ("queued", "sending", "sent", "failed", "held")
#: States of one envelope address of a message (``outbox_addresses.state``).
ADDRESS_STATES = ("queued", "sent", "failed", "held")


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
    rcpt_to: Mapped[str | None] = mapped_column(Text)  # the envelope's addresses, as a list (c005)
    day: Mapped[date | None] = mapped_column(Date, index=True)
    report_type: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(Text)
    tlp: Mapped[str | None] = mapped_column(String(16))
    sha256: Mapped[str | None] = mapped_column(String(64))
    protection: Mapped[str | None] = mapped_column(String(16))
    hold_reason: Mapped[str | None] = mapped_column(String(32))
    smtp_phase: Mapped[str | None] = mapped_column(String(16))
    smtp_reply: Mapped[str | None] = mapped_column(Text)


class OutboxAddressRow(Base):
    """One envelope address of an outbox message and what became of it (migration c003).

    A message goes to every address of its recipient's contact (an RPSL ``abuse-mailbox`` may
    list several), one ``RCPT TO`` each; each address has its own state: ``queued`` (to be sent
    by the next attempt), ``sent`` (the relay took the message for it), ``failed`` (refused
    permanently, or given up after ``[smtp] max_attempts``), ``held`` (``hold_reason``
    ``bouncing``: dropped from the envelope while it bounces).  ``smtp_reply`` is the reply that
    decided it (its ``RCPT`` reply when refused there, else the end-of-data reply) or the reason
    it is held.
    """

    __tablename__ = "outbox_addresses"
    __table_args__ = (
        CheckConstraint(check_in("state", ADDRESS_STATES), name="state"),
        UniqueConstraint("outbox_id", "address"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    #: The address as written in ``To`` and ``RCPT TO`` (a quoted local part stays quoted).
    address: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    hold_reason: Mapped[str | None] = mapped_column(String(32))
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

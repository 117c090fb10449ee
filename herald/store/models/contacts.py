"""Models of contact addresses' health and corrections: bounces (herald/deliver/bounces.py) and
the operator's overrides of RPSL abuse contacts (herald/contacts/overrides.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from herald.store.models.base import Base, UTCDateTime, utcnow

class BounceRow(Base):
    """Delivery failures of one contact address, from RFC 3464 delivery status notifications
    (``herald bounces``, herald/deliver/bounces.py; migration c001)."""

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The failed address, lower-cased.
    address: Mapped[str] = mapped_column(String(320), unique=True)
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_bounce_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_bounce_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: RFC 3463 status code of the last failure (``5.1.1``).
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_diagnostic: Mapped[str | None] = mapped_column(Text)


class BounceReportRow(Base):
    """One counted failure: a DSN (by the SHA-256 of its bytes) and one of its recipients, so a
    DSN read twice is counted once."""

    __tablename__ = "bounce_reports"
    __table_args__ = (UniqueConstraint("dsn_sha256", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dsn_sha256: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(320), index=True)
    status: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactOverrideRow(Base):
    """The operator's correction of an RPSL abuse contact (``herald contacts override``;
    herald/contacts/overrides.py): for a network (CIDR) or an ASN, use ``mailbox`` instead of
    the RIR's answer, or, with ``mailbox`` NULL, suppress the RIR's answer (send nothing)."""

    __tablename__ = "contact_overrides"
    __table_args__ = (CheckConstraint("network IS NOT NULL OR asn IS NOT NULL", name="matches"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network: Mapped[str | None] = mapped_column(String(64))
    asn: Mapped[int | None] = mapped_column(BigInteger)
    mailbox: Mapped[str | None] = mapped_column(Text)  # an address or a list (c005)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

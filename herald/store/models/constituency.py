"""Models of the constituency: recipients, their contacts and filters, law-enforcement
operations and their partners, and inhibitions (herald/constituency/)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from herald.store.models.base import Base, JSONDoc, UTCDateTime, check_in, utcnow

RECIPIENT_KINDS = ("network_owner", "national_cert", "law_enforcement", "abuse_contact")
FILTER_KINDS = ("asn", "cidr", "country", "domain", "report_type", "min_severity")
FILTER_STATES = ("pending", "verified", "rejected")


class RecipientRow(Base):
    """A recipient organisation: network owner, national CERT, law-enforcement partner or an
    automatic recipient (an RPSL abuse mailbox, kind ``abuse_contact``).

    Recipients are never deleted (reports, keys and the audit log refer to them); ``disabled``
    stops routing to them.
    """

    __tablename__ = "recipients"
    __table_args__ = (
        CheckConstraint(check_in("kind", RECIPIENT_KINDS), name="kind"),
        CheckConstraint("tlp IS NULL OR tlp IN ('CLEAR', 'GREEN', 'AMBER', 'AMBER+STRICT', 'RED')",
                        name="tlp"),
        CheckConstraint("renotify_days IS NULL OR renotify_days >= 0", name="renotify_days"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="network_owner")
    tlp: Mapped[str | None] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Re-notification window in days (migration c004; herald.reports.policy): an event reported
    #: to this recipient is not reported to it again within that many days.  ``None``: no window
    #: of its own; 0: off.
    renotify_days: Mapped[int | None] = mapped_column(Integer)

    contacts: Mapped[list[ContactRow]] = relationship(
        back_populates="recipient", order_by="ContactRow.id", cascade="all, delete-orphan")
    filters: Mapped[list[FilterRow]] = relationship(
        back_populates="recipient", order_by="FilterRow.id", cascade="all, delete-orphan")


class ContactRow(Base):
    """An e-mail address of a recipient; the ``is_primary`` one receives the reports."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("recipient_id", "email"),
        # At most one primary contact per recipient.
        Index("uq_contacts_primary", "recipient_id", unique=True,
              sqlite_where=sa.text("is_primary"), postgresql_where=sa.text("is_primary")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(Text)  # an address, or an abuse-mailbox list (c005)
    pgp_fingerprint: Mapped[str | None] = mapped_column(String(64))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    recipient: Mapped[RecipientRow] = relationship(back_populates="contacts")


class FilterRow(Base):
    """One claim of a recipient: an ASN, CIDR, country, domain, report type or minimum severity.

    Only ``verified`` filters route.  ``value`` is canonical text (ASN as decimal, CIDR with host
    bits cleared, country upper case, domain lower case without trailing dot).
    """

    __tablename__ = "filters"
    __table_args__ = (
        CheckConstraint(check_in("kind", FILTER_KINDS), name="kind"),
        CheckConstraint(check_in("state", FILTER_STATES), name="state"),
        CheckConstraint("state = 'pending' OR (decided_by IS NOT NULL AND decided_at IS NOT NULL)",
                        name="decided"),
        UniqueConstraint("recipient_id", "kind", "value"),
        # Who else claims this ASN / network / country: conflict checks and portal look-ups.
        Index("ix_filters_kind_value", "kind", "value"),
        Index("ix_filters_state", "state"),
        # A recipient has at most one verified minimum severity.
        Index("uq_filters_min_severity", "recipient_id", unique=True,
              sqlite_where=sa.text("kind = 'min_severity' AND state = 'verified'"),
              postgresql_where=sa.text("kind = 'min_severity' AND state = 'verified'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)

    recipient: Mapped[RecipientRow] = relationship(back_populates="filters")


class OperationRow(Base):
    """A law-enforcement operation (a takedown, a sinkholing): what it covers and when."""

    __tablename__ = "operations"
    __table_args__ = (
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    #: ``family`` / ``infection`` values, lower case.
    families: Mapped[list] = mapped_column(JSONDoc, default=list)
    #: ``tag`` values, lower case.
    tags: Mapped[list] = mapped_column(JSONDoc, default=list)
    sinkholed_domains: Mapped[list] = mapped_column(JSONDoc, default=list)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    partners: Mapped[list[OperationPartnerRow]] = relationship(
        back_populates="operation", order_by="OperationPartnerRow.id", cascade="all, delete-orphan")


class OperationPartnerRow(Base):
    """A law-enforcement recipient taking part in an operation, with its jurisdiction."""

    __tablename__ = "operation_partners"
    __table_args__ = (UniqueConstraint("operation_id", "recipient_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"),
                                              index=True)
    #: ISO 3166-1 alpha-2 codes of the partner's jurisdiction, upper case.
    countries: Mapped[list] = mapped_column(JSONDoc, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    operation: Mapped[OperationRow] = relationship(back_populates="partners")
    recipient: Mapped[RecipientRow] = relationship()


class InhibitionRow(Base):
    """Do not report matching events (``herald inhibitions``; herald/constituency/inhibitions.py).

    Matches on any combination of a network (CIDR), an ASN, a report type and a tag; applies to
    one recipient or (``recipient_id`` NULL) everyone; expires at ``expires_at`` (UTC) if set.
    """

    __tablename__ = "inhibitions"
    __table_args__ = (
        CheckConstraint("network IS NOT NULL OR asn IS NOT NULL OR report_type IS NOT NULL "
                        "OR tag IS NOT NULL", name="matches"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network: Mapped[str | None] = mapped_column(String(64))
    asn: Mapped[int | None] = mapped_column(BigInteger)
    report_type: Mapped[str | None] = mapped_column(String(100))
    tag: Mapped[str | None] = mapped_column(String(100))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"),
                                                     index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

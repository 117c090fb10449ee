"""The metadata database: SQLAlchemy models, engine and session helpers, migrations.

Herald keeps two stores (docs/database.md): events in Parquet, and *metadata* here — recipients and
their filters, law-enforcement operations, the run ledger, produced reports, the outbox, API keys,
portal users and the audit log.  SQLite is the zero-setup default (a file in the data directory);
PostgreSQL is for production (``postgresql+psycopg://user@host/db``, psycopg 3).

The schema is owned by the Alembic migrations shipped in ``herald/store/migrations/``; the models
below must match them (``tests/test_db.py`` compares the two on both back ends).  Conventions:

- Every timestamp is timezone-aware UTC in Python (:class:`UTCDateTime`); SQLite stores it as
  naive UTC text, PostgreSQL as ``timestamptz``.
- Closed vocabularies (kinds, states, roles) are ``VARCHAR`` plus a ``CHECK`` constraint, not a
  database enum type, so adding a value is a plain migration on both back ends.
- Constraint names follow :data:`NAMING_CONVENTION` so migrations can refer to them.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import (
    JSON, BigInteger, Boolean, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer,
    MetaData, String, Text, UniqueConstraint, event,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

from herald.errors import StoreError

#: Deterministic constraint names, so migrations can name what they alter or drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RECIPIENT_KINDS = ("network_owner", "national_cert", "law_enforcement", "abuse_contact")
FILTER_KINDS = ("asn", "cidr", "country", "domain", "report_type", "min_severity")
FILTER_STATES = ("pending", "verified", "rejected")
RUN_STATES = ("running", "done", "failed")
OUTBOX_STATES = ("queued", "sending", "sent", "failed", "held")
USER_ROLES = ("recipient", "admin")

#: Audit rows younger than this many days cannot be deleted, not even by retention: the database
#: triggers created by migration 0001 refuse it.  ``[retention] audit_days`` may not be lower.
AUDIT_MIN_RETENTION_DAYS = 365

#: Alembic revision this code expects (the newest file in migrations/versions/).
HEAD_REVISION = "c002"

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator):
    """A ``DateTime`` that accepts only aware datetimes and always returns aware UTC ones.

    Raises:
        ValueError: on binding a naive datetime (its time zone would be a guess).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Herald stores timezone-aware UTC times")
        value = value.astimezone(timezone.utc)
        # SQLite has no time-zone type; store naive UTC text so string comparisons (the audit
        # triggers, range queries) order correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


#: JSON documents: ``JSONB`` on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDoc = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every Herald table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RecipientRow(Base):
    """A recipient organisation: network owner, national CERT or law-enforcement partner.

    Recipients are never deleted (reports, keys and the audit log refer to them); ``disabled``
    stops routing to them.
    """

    __tablename__ = "recipients"
    __table_args__ = (
        CheckConstraint(_in("kind", RECIPIENT_KINDS), name="kind"),
        CheckConstraint("tlp IS NULL OR tlp IN ('CLEAR', 'GREEN', 'AMBER', 'AMBER+STRICT', 'RED')",
                        name="tlp"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="network_owner")
    tlp: Mapped[str | None] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

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
    email: Mapped[str] = mapped_column(String(320))
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
        CheckConstraint(_in("kind", FILTER_KINDS), name="kind"),
        CheckConstraint(_in("state", FILTER_STATES), name="state"),
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


class RunRow(Base):
    """The ledger: one row per attempt to process a day."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATES), name="status"),
        CheckConstraint("status = 'running' OR finished_at IS NOT NULL", name="finished"),
        Index("ix_runs_day", "day"),
        # At most one run of a day at a time: the database, not a lock file, arbitrates.
        Index("uq_runs_running_day", "day", unique=True,
              sqlite_where=sa.text("status = 'running'"),
              postgresql_where=sa.text("status = 'running'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    error: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[dict | None] = mapped_column(JSONDoc)
    summary: Mapped[dict | None] = mapped_column(JSONDoc)

    inputs: Mapped[list[RunInputRow]] = relationship(
        back_populates="run", order_by="RunInputRow.id", cascade="all, delete-orphan",
        passive_deletes=True)


class RunInputRow(Base):
    """An input file a run read: its path, SHA-256 and row count."""

    __tablename__ = "run_inputs"
    __table_args__ = (UniqueConstraint("run_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)

    run: Mapped[RunRow] = relationship(back_populates="inputs")


class ReportRow(Base):
    """A report file produced for a recipient: one per (recipient, type, day, scope).

    ``scope`` is ``""`` for a recipient's own report and the operation name for a
    law-enforcement share, so a partner in two operations gets two distinct reports.
    """

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("recipient_id", "report_type", "day", "scope"),
        Index("ix_reports_day", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    report_type: Mapped[str] = mapped_column(String(100))
    day: Mapped[date] = mapped_column(Date)
    scope: Mapped[str] = mapped_column(String(200), default="", server_default="")
    rows: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxRow(Base):
    """A message to deliver (the delivery code is not written yet; this is its table)."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in("state", OUTBOX_STATES), name="state"),
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
    mailbox: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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


class ApiKeyRow(Base):
    """A Reports API key.  ``key_id`` is the public part; only a hash of the secret is stored.

    API secrets are long random strings, so a fast hash (SHA-256) is enough to make a stolen table
    useless; slow password hashes are for the human passwords in ``users``.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"),
                                              index=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Migration w001 (herald.web.keys): HMAC verification needs the secret itself, so it is kept
    # encrypted with the server key (never in the database in clear, never in the TOML).
    label: Mapped[str | None] = mapped_column(String(200))
    secret_enc: Mapped[str | None] = mapped_column(Text)
    #: The previous secret stays valid until ``prev_valid_until`` after a rotation.
    prev_secret_enc: Mapped[str | None] = mapped_column(Text)
    prev_secret_hash: Mapped[str | None] = mapped_column(String(255))
    prev_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Opt-in: requests must carry a fresh ``timestamp`` and a never-seen ``nonce``.
    replay_protection: Mapped[bool] = mapped_column(Boolean, default=False,
                                                    server_default=sa.false())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiNonceRow(Base):
    """A nonce seen on a replay-protected API key (migration w001); kept a few minutes."""

    __tablename__ = "api_nonces"
    __table_args__ = (UniqueConstraint("key_id", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class UserRow(Base):
    """A portal login (the web code is not written yet; this is its table)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", USER_ROLES), name="role"),
        # A recipient-role user acts for exactly one recipient.
        CheckConstraint("role = 'admin' OR recipient_id IS NOT NULL", name="recipient"),
        CheckConstraint("failed_attempts >= 0", name="failed_attempts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: Argon2id PHC string; never the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(128))
    #: TOTP secret encrypted with the server key (migration w001); ``totp_secret`` stays unused.
    totp_secret_enc: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16), default="recipient")
    recipient_id: Mapped[int | None] = mapped_column(
        ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Migration w002: incremented on logout; part of the session version (herald.web.users).
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Migration w002: RFC 6238 time step of the last accepted TOTP code (each code works once).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


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


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True, ensure_ascii=False)


@dataclass
class Database:
    """An open metadata database: an engine and a session factory.

    Attributes:
        url: the SQLAlchemy URL (password hidden by ``str(engine.url)``).
        engine: the SQLAlchemy engine.
        sessions: the ``sessionmaker``; prefer :meth:`session`.
    """

    url: str
    engine: Engine
    sessions: sessionmaker

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on normal exit, rolled back on an exception."""
        with self.sessions() as s, s.begin():
            yield s

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (default the newest).  Safe to repeat.

        Raises:
            StoreError: the database is unreachable or a migration failed.
        """
        upgrade(self.engine, revision)

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at, or ``None`` for an empty database."""
        from alembic.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(engine: Engine):
    """An Alembic ``Config`` for the shipped migrations and ``engine``'s URL (no alembic.ini).

    For developers: ``command.revision(alembic_config(engine), "message", autogenerate=True)``
    with ``cfg.attributes["connection"]`` set drafts a new migration; see docs/database.md.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is interpolation syntax in alembic's ConfigParser.
    cfg.set_main_option("sqlalchemy.url",
                        engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the shipped Alembic migrations on ``engine`` up to ``revision``.

    Raises:
        StoreError: the database is unreachable or a migration failed.
    """
    migrate(engine, "upgrade", revision)


def migrate(engine: Engine, direction: str, revision: str) -> None:
    """Run migrations ``upgrade`` or ``downgrade`` to ``revision``, in one transaction.

    On SQLite, foreign keys are switched off meanwhile: Alembic's batch mode re-creates a table
    to alter it, and dropping the old copy of a parent table with foreign keys on would run the
    children's ``ON DELETE CASCADE`` (https://www.sqlite.org/foreignkeys.html, section 5).  The
    references are checked (``PRAGMA foreign_key_check``) before committing.

    Raises:
        StoreError: the database is unreachable, a migration failed, or it broke a reference.
    """
    from alembic import command

    cfg = alembic_config(engine)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection if sqlite else None
            if raw is not None:
                # Outside any transaction, or SQLite ignores it.
                raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with conn.begin():
                    cfg.attributes["connection"] = conn
                    getattr(command, direction)(cfg, revision)
                    if raw is not None:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise StoreError(f"migration to {revision} broke foreign keys: "
                                             f"{broken[:5]}")
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys = ON")
    except OperationalError as exc:
        raise StoreError(f"cannot migrate {engine.url!r}: {exc.orig}") from None


def create_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a Herald database URL.

    SQLite gets foreign keys on, WAL journaling and a busy timeout (several processes — the
    pipeline, the CLI, the web app — share the file); its parent directory is created.

    Raises:
        StoreError: the URL is not a valid SQLAlchemy URL, or names a driver that is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from None
    kwargs: dict[str, Any] = {"json_serializer": _dumps, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database URL {parsed!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Python's sqlite3 module opens transactions itself, and only before INSERT/UPDATE/DELETE:
    # DDL would autocommit statement by statement, so a failed migration would leave half a
    # schema.  Turn that off and let SQLAlchemy's "begin" emit BEGIN (_sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA journal_mode = WAL")
    # NORMAL is durable in WAL mode except for the last commits before a power loss.
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.close()


def _sqlite_begin(conn) -> None:
    # IMMEDIATE takes the write lock at the start, waiting up to busy_timeout for it.  A deferred
    # BEGIN that reads and then writes fails at once with "database is locked" when another
    # process committed in between (SQLITE_BUSY_SNAPSHOT, https://sqlite.org/isolation.html):
    # concurrent runs of different days hit exactly that.  In WAL mode readers are not blocked.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def connect_db(url: str) -> Database:
    """A :class:`Database` for ``url`` without checking or migrating its schema (for
    ``herald db upgrade|status``; other code uses :func:`open_db`).

    Raises:
        StoreError: bad URL or missing driver (the database is not contacted yet).
    """
    engine = create_engine(url)
    return Database(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def open_db(url: str, upgrade: bool | None = None) -> Database:
    """Open the metadata database at ``url``.

    Args:
        url: SQLAlchemy URL, e.g. ``Settings.database_url``; ``sqlite:///path`` or
            ``postgresql+psycopg://user@host/db``.
        upgrade: migrate to the newest schema first.  ``None`` (default) means yes for SQLite — the
            zero-setup default — and no for other databases, whose schema is changed only by
            ``herald db upgrade`` (so that several processes never race to migrate production).

    Returns:
        A :class:`Database`.

    Raises:
        StoreError: bad URL, unreachable database, or (when not upgrading) a schema that is not at
            :data:`HEAD_REVISION` — the message says to run ``herald db upgrade``.
    """
    db = connect_db(url)
    engine = db.engine
    if upgrade is None:
        upgrade = engine.dialect.name == "sqlite"
    try:
        if upgrade:
            if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
                # Several processes may open a new SQLite file at once (runs of different days,
                # a sensor, the web server): one migrates, the others wait for it.
                from herald.fsutil import FileLock

                lock = FileLock(Path(f"{engine.url.database}.migrate-lock"))
                lock.acquire(wait=True)
                try:
                    if db.current_revision() != HEAD_REVISION:
                        db.upgrade()
                finally:
                    lock.release()
            else:
                db.upgrade()
        else:
            rev = db.current_revision()
            if rev != HEAD_REVISION:
                raise StoreError(
                    f"database {engine.url!r} is at schema revision {rev or 'none (empty)'}, this "
                    f"Herald needs {HEAD_REVISION}: run 'herald db upgrade'")
    except OperationalError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database {engine.url!r}: {exc.orig}") from None
    except StoreError:
        engine.dispose()
        raise
    return db


def get_or_none(session: Session, model, **where):
    """The one row of ``model`` matching ``where``, or ``None``."""
    return session.scalars(sa.select(model).filter_by(**where)).one_or_none()


class NotFound(StoreError):
    """A named object (recipient, filter, operation, run) is not in the database."""

"""Models of the run ledger: runs, the input files they read, and the reports they produced
(herald/store/ledger.py)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from herald.store.models.base import Base, JSONDoc, UTCDateTime, check_in, utcnow

RUN_STATES = ("running", "done", "failed")


class RunRow(Base):
    """The ledger: one row per attempt to process a day."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(check_in("status", RUN_STATES), name="status"),
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

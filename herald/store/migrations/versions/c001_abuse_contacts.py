"""Abuse contacts (issue 15): bounce state, counted DSNs, inhibitions, contact overrides.

Revision ID: c001
Revises: w002
Create Date: 2026-12-07

``bounces``: per contact address (lower-cased), how many RFC 3464 delivery status notifications
reported a permanent failure (``Action: failed``, RFC 3463 status ``5.x.x``), when, and the last
status; after ``[abuse_contacts] bounce_threshold`` of them the sender holds messages to that
address (``outbox.hold_reason = 'bouncing'``).  ``bounce_reports``: each counted (DSN, address)
pair, so that a notification read twice counts once.  ``inhibitions``: operator rules that stop
reporting matching events (network CIDR / ASN / report type / tag, for one recipient or everyone,
until an expiry time).  ``contact_overrides``: the operator's corrections of RPSL abuse contacts
(for a network CIDR or an ASN: another mailbox, or NULL to suppress).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c001"
down_revision = "w002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("first_bounce_at", _TS, nullable=False),
        sa.Column("last_bounce_at", _TS, nullable=False),
        sa.Column("last_status", sa.String(16), nullable=True),
        sa.Column("last_diagnostic", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
        sa.UniqueConstraint("address", name=op.f("uq_bounces_address")),
    )
    op.create_table(
        "bounce_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dsn_sha256", sa.String(64), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("received_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_reports")),
        sa.UniqueConstraint("dsn_sha256", "address", name=op.f("uq_bounce_reports_dsn_sha256_address")),
    )
    op.create_index(op.f("ix_bounce_reports_address"), "bounce_reports", ["address"])
    op.create_table(
        "inhibitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network", sa.String(64), nullable=True),
        sa.Column("asn", sa.BigInteger(), nullable=True),
        sa.Column("report_type", sa.String(100), nullable=True),
        sa.Column("tag", sa.String(100), nullable=True),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.CheckConstraint("network IS NOT NULL OR asn IS NOT NULL OR report_type IS NOT NULL "
                           "OR tag IS NOT NULL", name=op.f("ck_inhibitions_matches")),
        sa.ForeignKeyConstraint(["recipient_id"], ["recipients.id"], ondelete="CASCADE",
                                name=op.f("fk_inhibitions_recipient_id_recipients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inhibitions")),
    )
    op.create_index(op.f("ix_inhibitions_recipient_id"), "inhibitions", ["recipient_id"])
    op.create_table(
        "contact_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network", sa.String(64), nullable=True),
        sa.Column("asn", sa.BigInteger(), nullable=True),
        sa.Column("mailbox", sa.String(320), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.CheckConstraint("network IS NOT NULL OR asn IS NOT NULL",
                           name=op.f("ck_contact_overrides_matches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_overrides")),
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_table("contact_overrides")
    op.drop_index(op.f("ix_inhibitions_recipient_id"), table_name="inhibitions")
    op.drop_table("inhibitions")
    op.drop_index(op.f("ix_bounce_reports_address"), table_name="bounce_reports")
    op.drop_table("bounce_reports")
    op.drop_table("bounces")

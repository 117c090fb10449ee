"""Delivery: what the SMTP sender needs on each outbox row.

Revision ID: d001
Revises: w001
Create Date: 2026-11-30

``outbox`` gains the envelope recipient (``rcpt_to``, fixed when the message is queued), the
report day and type, the subject and TLP label (for ``herald outbox``), the SHA-256 of the message
file, how it is protected (``none``/``signed``/``encrypted``, RFC 3156), why it is held
(``hold_reason``: ``pgp_key``, ``pgp``, ``outcome_unknown``, ``operator``), the SMTP phase a
``sending`` attempt reached (``smtp_phase``: ``smtp`` before the end of the message data was
sent, ``eod`` after — see docs/delivery.md for the crash policy) and the relay's last reply.
All columns are nullable: rows queued before this revision stay valid.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "d001"
down_revision = "w001"
branch_labels = None
depends_on = None

_COLUMNS = [
    ("rcpt_to", sa.String(length=320)),
    ("day", sa.Date()),
    ("report_type", sa.String(length=100)),
    ("subject", sa.Text()),
    ("tlp", sa.String(length=16)),
    ("sha256", sa.String(length=64)),
    ("protection", sa.String(length=16)),
    ("hold_reason", sa.String(length=32)),
    ("smtp_phase", sa.String(length=16)),
    ("smtp_reply", sa.Text()),
]


def upgrade() -> None:
    """Add the delivery columns and an index by day."""
    with op.batch_alter_table("outbox") as b:
        for name, type_ in _COLUMNS:
            b.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_outbox_day", "outbox", ["day"], unique=False)


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_outbox_day", table_name="outbox")
    with op.batch_alter_table("outbox") as b:
        for name, _ in reversed(_COLUMNS):
            b.drop_column(name)

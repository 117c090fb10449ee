"""Envelope addresses of outbox messages, each with its own delivery state (issue 15).

Revision ID: c003
Revises: c002
Create Date: 2026-12-14

An RPSL ``abuse-mailbox`` may list several addresses (``a@x.example, b@y.example``); the message
to that mailbox goes to all of them, one ``RCPT TO`` each (RFC 5321 section 4.1.1.3), and each
address has its own result.  ``outbox_addresses`` holds one row per (message, address): ``state``
``queued`` / ``sent`` / ``failed`` / ``held`` (``hold_reason = 'bouncing'``), the reply that
decided it, and when.

Existing messages get their rows here: ``outbox.rcpt_to`` split at commas (the only separator the
importer wrote between addresses), in the message's state (``sent`` -> ``sent``, ``failed`` ->
``failed``, held for ``bouncing`` -> ``held``, anything else -> ``queued``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c003"
down_revision = "c002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _state(state: str, hold_reason: str | None) -> tuple[str, str | None]:
    """An address row's (state, hold_reason) for a message queued before this revision."""
    if state in ("sent", "failed"):
        return state, None
    if state == "held" and hold_reason == "bouncing":
        return "held", "bouncing"
    return "queued", None


def upgrade() -> None:
    """Create ``outbox_addresses`` and fill it from ``outbox.rcpt_to``."""
    op.create_table(
        "outbox_addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("hold_reason", sa.String(32), nullable=True),
        sa.Column("smtp_reply", sa.Text(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint("state IN ('queued', 'sent', 'failed', 'held')",
                           name=op.f("ck_outbox_addresses_state")),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], ondelete="CASCADE",
                                name=op.f("fk_outbox_addresses_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_addresses")),
        sa.UniqueConstraint("outbox_id", "address", name=op.f("uq_outbox_addresses_outbox_id_address")),
    )
    op.create_index(op.f("ix_outbox_addresses_outbox_id"), "outbox_addresses", ["outbox_id"])
    outbox = sa.table("outbox", sa.column("id", sa.Integer()), sa.column("rcpt_to", sa.String()),
                      sa.column("state", sa.String()), sa.column("hold_reason", sa.String()),
                      sa.column("smtp_reply", sa.Text()), sa.column("updated_at", _TS))
    addresses = sa.table("outbox_addresses", sa.column("outbox_id", sa.Integer()),
                         sa.column("address", sa.String()), sa.column("state", sa.String()),
                         sa.column("hold_reason", sa.String()), sa.column("smtp_reply", sa.Text()),
                         sa.column("updated_at", _TS))
    conn = op.get_bind()
    rows = []
    for oid, rcpt_to, state, hold_reason, reply, updated in conn.execute(
            sa.select(outbox.c.id, outbox.c.rcpt_to, outbox.c.state, outbox.c.hold_reason,
                      outbox.c.smtp_reply, outbox.c.updated_at)
            .where(outbox.c.rcpt_to.is_not(None)).order_by(outbox.c.id)):
        st, why = _state(state, hold_reason)
        seen: set[str] = set()
        for part in str(rcpt_to).split(","):
            address = part.strip()
            if address and address not in seen:
                seen.add(address)
                rows.append({"outbox_id": oid, "address": address, "state": st, "hold_reason": why,
                             "smtp_reply": reply, "updated_at": updated})
    if rows:
        conn.execute(sa.insert(addresses), rows)


def downgrade() -> None:
    """Drop ``outbox_addresses`` (``outbox.rcpt_to`` still names every address)."""
    op.drop_index(op.f("ix_outbox_addresses_outbox_id"), table_name="outbox_addresses")
    op.drop_table("outbox_addresses")

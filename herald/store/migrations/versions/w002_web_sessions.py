"""Portal sessions that end on the server, and TOTP codes that work once.

Revision ID: w002
Revises: d001
Create Date: 2026-12-07

``users.session_generation`` is part of every session's version (herald.accounts.users): logging out
increments it, so the old session cookie is refused afterwards even though it is still validly
signed.  ``users.totp_last_step`` is the RFC 6238 time step of the last accepted TOTP code; a code
of that step or an earlier one is refused (RFC 6238 §5.2: a code is accepted once).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "w002"
down_revision = "d001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``users.session_generation`` and ``users.totp_last_step``."""
    with op.batch_alter_table("users") as b:
        b.add_column(sa.Column("session_generation", sa.Integer(), nullable=False,
                               server_default="0"))
        b.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    with op.batch_alter_table("users") as b:
        b.drop_column("totp_last_step")
        b.drop_column("session_generation")

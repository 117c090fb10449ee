"""Reports API and portal: encrypted API secrets, rotation grace, replay protection, nonces.

Revision ID: w001
Revises: 0001
Create Date: 2026-11-30

``api_keys`` gains what HMAC verification needs: the secret itself, encrypted at rest with the
server key (``secret_enc``; the server key is never stored in the database or the TOML, see
docs/api.md), the previous secret during a rotation grace period, and the opt-in replay protection
flag.  ``api_nonces`` remembers the nonces of replay-protected keys.  ``users`` gains an encrypted
TOTP secret column (the 0001 ``totp_secret`` column is too short for an encrypted value and stays
unused).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "w001"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the API-key columns, the nonce table and the encrypted TOTP column."""
    with op.batch_alter_table("api_keys") as b:
        b.add_column(sa.Column("label", sa.String(200), nullable=True))
        b.add_column(sa.Column("secret_enc", sa.Text(), nullable=True))
        b.add_column(sa.Column("prev_secret_enc", sa.Text(), nullable=True))
        b.add_column(sa.Column("prev_secret_hash", sa.String(255), nullable=True))
        b.add_column(sa.Column("prev_valid_until", _TS, nullable=True))
        b.add_column(sa.Column("replay_protection", sa.Boolean(), nullable=False,
                               server_default=sa.false()))
        b.add_column(sa.Column("last_used_at", _TS, nullable=True))
    op.create_table(
        "api_nonces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("seen_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_nonces")),
        sa.UniqueConstraint("key_id", "nonce", name=op.f("uq_api_nonces_key_id_nonce")),
    )
    op.create_index(op.f("ix_api_nonces_seen_at"), "api_nonces", ["seen_at"])
    with op.batch_alter_table("users") as b:
        b.add_column(sa.Column("totp_secret_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    with op.batch_alter_table("users") as b:
        b.drop_column("totp_secret_enc")
    op.drop_index("ix_api_nonces_seen_at", table_name="api_nonces")
    op.drop_table("api_nonces")
    with op.batch_alter_table("api_keys") as b:
        for col in ("last_used_at", "replay_protection", "prev_valid_until", "prev_secret_hash",
                    "prev_secret_enc", "secret_enc", "label"):
            b.drop_column(col)

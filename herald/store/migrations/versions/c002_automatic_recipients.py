"""Automatic recipients (issue 15): recipient kind ``abuse_contact``.

Revision ID: c002
Revises: c001
Create Date: 2026-12-07

The daily run stores one ``recipients`` row (kind ``abuse_contact``, name and primary contact the
RPSL ``abuse-mailbox`` text, no filters) per automatic recipient it routes to, so that their
reports are recorded in the ledger and their messages queued in the outbox like any other's
(:mod:`herald.contacts.autorecipients`).  Only the ``kind`` check constraint changes; SQLite
needs the table copied (batch mode; :func:`herald.store.db.upgrade` runs migrations with foreign
keys off and checks them before committing).
"""

from __future__ import annotations

from alembic import op

revision = "c002"
down_revision = "c001"
branch_labels = None
depends_on = None

_OLD = "kind IN ('network_owner', 'national_cert', 'law_enforcement')"
_NEW = "kind IN ('network_owner', 'national_cert', 'law_enforcement', 'abuse_contact')"


def _replace(condition: str) -> None:
    with op.batch_alter_table("recipients") as b:
        b.drop_constraint(op.f("ck_recipients_kind"), type_="check")
        b.create_check_constraint(op.f("ck_recipients_kind"), condition)


def upgrade() -> None:
    """Allow recipient kind ``abuse_contact``."""
    _replace(_NEW)


def downgrade() -> None:
    """Back to the three configured kinds (fails while ``abuse_contact`` rows exist)."""
    _replace(_OLD)

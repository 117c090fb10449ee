"""Columns that hold an abuse-mailbox *list* become text (issue 15): ``contacts.email``,
``outbox.rcpt_to`` and ``contact_overrides.mailbox``.

Revision ID: c005
Revises: c004
Create Date: 2026-12-15

An RPSL ``abuse-mailbox`` may list several addresses (``a@x, b@y``); an automatic recipient's
contact, its queued message's envelope text and an override keep that list as one text.  At
``VARCHAR(320)`` (one RFC 5321 address) a list of eight or more addresses made PostgreSQL refuse
the automatic recipient and failed the run.  One address still fits 320 characters: the
per-address columns (``outbox_addresses.address``, bounces) keep their width.  SQLite copies the
tables (batch mode).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c005"
down_revision = "c004"
branch_labels = None
depends_on = None

COLUMNS = (("contacts", "email", False), ("outbox", "rcpt_to", True),
           ("contact_overrides", "mailbox", True))


def upgrade() -> None:
    """``VARCHAR(320)`` to ``TEXT``."""
    for table, column, nullable in COLUMNS:
        with op.batch_alter_table(table) as b:
            b.alter_column(column, type_=sa.Text(), existing_type=sa.String(320),
                           existing_nullable=nullable)


def downgrade() -> None:
    """Back to ``VARCHAR(320)`` (fails on PostgreSQL while a longer list is stored)."""
    for table, column, nullable in COLUMNS:
        with op.batch_alter_table(table) as b:
            b.alter_column(column, type_=sa.String(320), existing_type=sa.Text(),
                           existing_nullable=nullable)

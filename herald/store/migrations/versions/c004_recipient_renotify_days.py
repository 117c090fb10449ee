"""A recipient's own re-notification window (issue 15): ``recipients.renotify_days``.

Revision ID: c004
Revises: c003
Create Date: 2026-12-14

Until now only a ``[[recipients]]`` table of the configuration file could give a recipient a
window (``renotify_days``), so a recipient that lives only in the database (``herald recipients
add``, an earlier import) never had one.  The window is now stored with the recipient: days
(``NULL``: none of its own; ``0``: off), set by the configuration import and ``herald recipients
add|set --renotify-days``, read by the run from the recipients it loads.  SQLite copies the table
for the check constraint (batch mode; :func:`herald.store.db.upgrade` runs migrations with
foreign keys off and checks them before committing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c004"
down_revision = "c003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``recipients.renotify_days`` (nullable, at least 0)."""
    with op.batch_alter_table("recipients") as b:
        b.add_column(sa.Column("renotify_days", sa.Integer(), nullable=True))
        b.create_check_constraint(op.f("ck_recipients_renotify_days"),
                                  "renotify_days IS NULL OR renotify_days >= 0")


def downgrade() -> None:
    """Drop it again (the windows set are lost)."""
    with op.batch_alter_table("recipients") as b:
        b.drop_constraint(op.f("ck_recipients_renotify_days"), type_="check")
        b.drop_column("renotify_days")

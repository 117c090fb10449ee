"""Initial schema: recipients, filters, operations, ledger, reports, outbox, keys, users, audit.

Revision ID: 0001
Revises: none
Create Date: 2026-11-30

Migrations are frozen history: they use plain SQLAlchemy types, never Herald's model classes, so
later changes to ``herald/store/db.py`` cannot change what this revision creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

#: Audit rows younger than this cannot be deleted (herald.store.db.AUDIT_MIN_RETENTION_DAYS at
#: the time of this revision; a later change needs a new migration).
AUDIT_MIN_RETENTION_DAYS = 365

_APPEND_ONLY = "audit_log is append-only"

#: SQLite: RAISE(ABORT) rolls back the statement.  Timestamps are stored as naive UTC text
#: 'YYYY-MM-DD HH:MM:SS.ffffff', which compares correctly with datetime('now', ...).
_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: UPDATE refused'); END""",
    f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        WHEN OLD.at >= datetime('now', '-{AUDIT_MIN_RETENTION_DAYS} days')
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: DELETE of an entry younger than
        {AUDIT_MIN_RETENTION_DAYS} days refused'); END""",
]

#: PostgreSQL: one trigger function for UPDATE, DELETE (row level) and TRUNCATE (statement level).
_PG_FUNCTION = f"""
CREATE FUNCTION herald_audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.at < now() - interval '{AUDIT_MIN_RETENTION_DAYS} days' THEN
        RETURN OLD;  -- retention may remove entries past the floor
    END IF;
    RAISE EXCEPTION '{_APPEND_ONLY}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$"""
_PG_TRIGGERS = [
    """CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION herald_audit_log_guard()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
       FOR EACH STATEMENT EXECUTE FUNCTION herald_audit_log_guard()""",
]


def _create_audit_guards() -> None:
    """Make audit_log append-only in the database itself, whatever the client code does."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for sql in _SQLITE_TRIGGERS:
            op.execute(sql)
    elif dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        for sql in _PG_TRIGGERS:
            op.execute(sql)
    else:  # pragma: no cover - Herald supports SQLite and PostgreSQL only
        raise NotImplementedError(f"no audit_log guard for database {dialect!r}")


def _drop_audit_guards() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update_delete ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS herald_audit_log_guard()")


def upgrade() -> None:
    """Create every table, index and constraint, and the audit-log guards."""
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('object_type', sa.String(length=50), nullable=False),
    sa.Column('object_id', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', JSON_DOC, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index('ix_audit_log_action_at', 'audit_log', ['action', 'at'], unique=False)
    op.create_index('ix_audit_log_actor_at', 'audit_log', ['actor', 'at'], unique=False)
    op.create_index('ix_audit_log_at', 'audit_log', ['at'], unique=False)
    op.create_index('ix_audit_log_object_type_object_id', 'audit_log', ['object_type', 'object_id'], unique=False)

    op.create_table('operations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('families', JSON_DOC, nullable=False),
    sa.Column('tags', JSON_DOC, nullable=False),
    sa.Column('sinkholed_domains', JSON_DOC, nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('end_date IS NULL OR end_date >= start_date', name=op.f('ck_operations_dates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operations')),
    sa.UniqueConstraint('name', name=op.f('uq_operations_name'))
    )
    op.create_table('recipients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('slug', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('tlp', sa.String(length=16), nullable=True),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('network_owner', 'national_cert', 'law_enforcement')", name=op.f('ck_recipients_kind')),
    sa.CheckConstraint("tlp IS NULL OR tlp IN ('CLEAR', 'GREEN', 'AMBER', 'AMBER+STRICT', 'RED')", name=op.f('ck_recipients_tlp')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recipients')),
    sa.UniqueConstraint('name', name=op.f('uq_recipients_name')),
    sa.UniqueConstraint('slug', name=op.f('uq_recipients_slug'))
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('forced', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('counts', JSON_DOC, nullable=True),
    sa.Column('summary', JSON_DOC, nullable=True),
    sa.CheckConstraint("status = 'running' OR finished_at IS NOT NULL", name=op.f('ck_runs_finished')),
    sa.CheckConstraint("status IN ('running', 'done', 'failed')", name=op.f('ck_runs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    op.create_index('ix_runs_day', 'runs', ['day'], unique=False)
    op.create_index('uq_runs_running_day', 'runs', ['day'], unique=True, sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"))

    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'], name=op.f('fk_api_keys_recipient_id_recipients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_id', name=op.f('uq_api_keys_key_id'))
    )
    op.create_index(op.f('ix_api_keys_recipient_id'), 'api_keys', ['recipient_id'], unique=False)

    op.create_table('contacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('pgp_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('is_primary', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'], name=op.f('fk_contacts_recipient_id_recipients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('recipient_id', 'email', name=op.f('uq_contacts_recipient_id_email'))
    )
    op.create_index('uq_contacts_primary', 'contacts', ['recipient_id'], unique=True, sqlite_where=sa.text('is_primary'), postgresql_where=sa.text('is_primary'))

    op.create_table('filters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=200), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('asn', 'cidr', 'country', 'domain', 'report_type', 'min_severity')", name=op.f('ck_filters_kind')),
    sa.CheckConstraint("state = 'pending' OR (decided_by IS NOT NULL AND decided_at IS NOT NULL)", name=op.f('ck_filters_decided')),
    sa.CheckConstraint("state IN ('pending', 'verified', 'rejected')", name=op.f('ck_filters_state')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'], name=op.f('fk_filters_recipient_id_recipients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_filters')),
    sa.UniqueConstraint('recipient_id', 'kind', 'value', name=op.f('uq_filters_recipient_id_kind_value'))
    )
    op.create_index('ix_filters_kind_value', 'filters', ['kind', 'value'], unique=False)
    op.create_index('ix_filters_state', 'filters', ['state'], unique=False)
    op.create_index('uq_filters_min_severity', 'filters', ['recipient_id'], unique=True, sqlite_where=sa.text("kind = 'min_severity' AND state = 'verified'"), postgresql_where=sa.text("kind = 'min_severity' AND state = 'verified'"))

    op.create_table('operation_partners',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('operation_id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('countries', JSON_DOC, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operation_id'], ['operations.id'], name=op.f('fk_operation_partners_operation_id_operations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'], name=op.f('fk_operation_partners_recipient_id_recipients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operation_partners')),
    sa.UniqueConstraint('operation_id', 'recipient_id', name=op.f('uq_operation_partners_operation_id_recipient_id'))
    )
    op.create_index(op.f('ix_operation_partners_recipient_id'), 'operation_partners', ['recipient_id'], unique=False)

    op.create_table('reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('report_type', sa.String(length=100), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('scope', sa.String(length=200), server_default='', nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'], name=op.f('fk_reports_recipient_id_recipients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_reports_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    sa.UniqueConstraint('recipient_id', 'report_type', 'day', 'scope', name=op.f('uq_reports_recipient_id_report_type_day_scope'))
    )
    op.create_index('ix_reports_day', 'reports', ['day'], unique=False)
    op.create_index(op.f('ix_reports_run_id'), 'reports', ['run_id'], unique=False)

    op.create_table('run_inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_inputs_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_inputs')),
    sa.UniqueConstraint('run_id', 'path', name=op.f('uq_run_inputs_run_id_path'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('totp_secret', sa.String(length=128), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=True),
    sa.Column('failed_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role = 'admin' OR recipient_id IS NOT NULL", name=op.f('ck_users_recipient')),
    sa.CheckConstraint("role IN ('recipient', 'admin')", name=op.f('ck_users_role')),
    sa.CheckConstraint('failed_attempts >= 0', name=op.f('ck_users_failed_attempts')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'], name=op.f('fk_users_recipient_id_recipients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_index(op.f('ix_users_recipient_id'), 'users', ['recipient_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('report_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('envelope_sender', sa.String(length=320), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'sending', 'sent', 'failed', 'held')", name=op.f('ck_outbox_state')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbox_attempts')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'], name=op.f('fk_outbox_recipient_id_recipients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_outbox_report_id_reports'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('message_id', name=op.f('uq_outbox_message_id'))
    )
    op.create_index('ix_outbox_created_at', 'outbox', ['created_at'], unique=False)
    op.create_index(op.f('ix_outbox_recipient_id'), 'outbox', ['recipient_id'], unique=False)
    op.create_index(op.f('ix_outbox_report_id'), 'outbox', ['report_id'], unique=False)
    op.create_index('ix_outbox_state_next_attempt_at', 'outbox', ['state', 'next_attempt_at'], unique=False)

    _create_audit_guards()


def downgrade() -> None:
    """Drop everything revision 0001 created (dependent tables first)."""
    _drop_audit_guards()
    for table in ("outbox", "users", "run_inputs", "reports", "operation_partners", "filters",
                  "contacts", "api_keys", "runs", "recipients", "operations", "audit_log"):
        op.drop_table(table)

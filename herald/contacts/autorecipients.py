"""Database rows of the automatic recipients (RPSL abuse mailboxes the run routes to; issue 15).

The routing step (:mod:`herald.contacts.routing`) makes one :class:`~herald.constituency.recipients.
Recipient` of kind ``abuse_contact`` per distinct mailbox.  Before the run records its reports,
:func:`store_automatic_recipients` gives each one a ``recipients`` row (same name and slug, the
mailbox as primary contact, **no filters**), so that the ledger records their reports, the outbox
queues their messages and ``herald send``'s bounce hold applies to them like to anyone else.

These rows never route by themselves: :func:`herald.constituency.sync.routing_recipients` leaves
kind ``abuse_contact`` out, so a mailbox receives events only when the routing step picks it
again.  Rows are never deleted (the ledger refers to them).

Names: the routing step asks :class:`StoredNames` whether a mailbox's name and slug are free,
so that a mailbox never takes the slug of another recipient (a configured one, a disabled one, a
law-enforcement partner, or another mailbox stored on an earlier day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import sqlalchemy as sa

from herald.constituency.recipients import Recipient
from herald.store import audit
from herald.store.db import ContactRow, Database, RecipientRow, utcnow

#: ``Recipient.kind`` (and ``recipients.kind``) of the automatic recipients.
KIND = "abuse_contact"

#: Audit action of the one entry per run that created automatic recipients.
AUDIT_ACTION = "recipient.auto_create"


@dataclass(frozen=True)
class StoredNames:
    """Names and slugs already in the ``recipients`` table.

    Attributes:
        other: names and slugs of recipients of every other kind (enabled or not).
        automatic: slug -> name of the stored automatic recipients.
        disabled: mailboxes (primary contact) of the disabled automatic recipients: an operator
            disabled the recipient, so the routing step treats its mailbox as suppressed.
    """

    other: frozenset[str] = frozenset()
    automatic: dict[str, str] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()

    def free(self, name: str, slug: str) -> bool:
        """An automatic recipient may use ``name`` / ``slug``: no other recipient has either, and
        a stored automatic recipient with that slug is this one (same name)."""
        if name in self.other or slug in self.other:
            return False
        return self.automatic.get(slug, name) == name


def stored_names(db: Database) -> StoredNames:
    """The :class:`StoredNames` of ``db`` (two queries)."""
    other: set[str] = set()
    automatic: dict[str, str] = {}
    with db.session() as s:
        for name, slug, kind in s.execute(sa.select(RecipientRow.name, RecipientRow.slug,
                                                    RecipientRow.kind)):
            if kind == KIND:
                automatic[slug] = name
            else:
                other.update((name, slug))
        disabled = frozenset(s.scalars(
            sa.select(ContactRow.email).join(RecipientRow, RecipientRow.id == ContactRow.recipient_id)
            .where(RecipientRow.kind == KIND, RecipientRow.disabled == sa.true(),
                   ContactRow.is_primary == sa.true())))
    return StoredNames(frozenset(other), automatic, disabled)


def _insert(db: Database, table: sa.Table):
    """``INSERT ... ON CONFLICT DO NOTHING`` for the database's dialect."""
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


def store_automatic_recipients(db: Database, recipients: Iterable[Recipient], *,
                               actor: str = "pipeline", day: str | None = None,
                               run_id: int | None = None) -> list[str]:
    """Give each automatic recipient (kind ``abuse_contact``) of ``recipients`` its database id.

    Missing rows are created in bulk and idempotently: one ``INSERT ... ON CONFLICT DO NOTHING``
    of the recipients not yet stored, one of their primary contacts (the mailbox), one query of
    the ids; a run that met only known mailboxes writes nothing.  One audit entry per call
    (action :data:`AUDIT_ACTION`) lists the recipients created, when any were.  The ``id`` of
    each automatic :class:`Recipient` is set in place; other kinds are left alone.

    Args:
        db: the metadata database.
        recipients: the run's recipients (``Router.recipients``); only kind ``abuse_contact``
            is stored.
        actor: recorded in the audit entry.
        day, run_id: recorded in the audit entry's details.

    Returns:
        warnings: automatic recipients that could not be given an id (their name or slug was
        taken by another recipient meanwhile); their reports are written but not recorded or
        queued.
    """
    auto = [r for r in recipients if r.kind == KIND]
    if not auto:
        return []
    now = utcnow()
    with db.session() as s:
        before = set(s.scalars(sa.select(RecipientRow.name).where(RecipientRow.kind == KIND)))
        new = [r for r in auto if r.name not in before]
        if new:
            s.execute(_insert(db, RecipientRow.__table__), [
                {"name": r.name, "slug": r.slug, "kind": KIND, "tlp": None, "disabled": False,
                 "created_at": now, "updated_at": now} for r in new])
        ids = dict(s.execute(sa.select(RecipientRow.name, RecipientRow.id)
                             .where(RecipientRow.kind == KIND)).all())
        created = sorted(r.name for r in new if r.name in ids)
        if new:
            s.execute(_insert(db, ContactRow.__table__), [
                {"recipient_id": ids[r.name], "email": r.email, "is_primary": True,
                 "created_at": now} for r in new if r.name in ids])
        if created:
            audit.record(s, actor, AUDIT_ACTION, "recipient", None, details={
                "kind": KIND, "day": day, "run_id": run_id, "created": len(created),
                "names": created})
    warnings = []
    for r in auto:
        r.id = ids.get(r.name)
        if r.id is None:
            warnings.append(f"automatic recipient {r.name!r}: its name or slug is taken by another "
                            f"recipient; its reports are not recorded or queued")
    return warnings

"""The operator's view and actions on the outbox: list entries, release a held message, mark one
sent (``herald outbox``)."""

from __future__ import annotations

import logging
from datetime import date

import sqlalchemy as sa

from herald.config import Settings
from herald.deliver.outbox.results import OutboxEntry, OutboxError, SendResult
from herald.deliver.outbox.send import rebuild_held, update_state
from herald.deliver.settings import delivery_settings
from herald.store.db import Database, OutboxRow, RecipientRow, utcnow

#: The outbox modules log as one logger, ``herald.deliver.outbox``.
log = logging.getLogger("herald.deliver.outbox")


def list_outbox(db: Database, state: str | list[str] | None = None, day: str | None = None,
                ids: list[int] | None = None) -> list[OutboxEntry]:
    """Outbox rows (optionally by state(s), day or ids), oldest first."""
    stmt = (sa.select(OutboxRow, RecipientRow.name).join(RecipientRow,
                                                          RecipientRow.id == OutboxRow.recipient_id)
            .order_by(OutboxRow.id))
    if state:
        stmt = stmt.where(OutboxRow.state.in_([state] if isinstance(state, str) else state))
    if day:
        stmt = stmt.where(OutboxRow.day == date.fromisoformat(day))
    if ids:
        stmt = stmt.where(OutboxRow.id.in_(ids))
    with db.session() as s:
        return [OutboxEntry(
            id=o.id, message_id=o.message_id, state=o.state, recipient=name, rcpt_to=o.rcpt_to,
            day=o.day, report_type=o.report_type, subject=o.subject, tlp=o.tlp,
            protection=o.protection, attempts=o.attempts, next_attempt_at=o.next_attempt_at,
            hold_reason=o.hold_reason, last_error=o.last_error, smtp_reply=o.smtp_reply,
            envelope_sender=o.envelope_sender, sent_at=o.sent_at, path=o.path)
            for o, name in s.execute(stmt)]


def _get(db: Database, oid: int) -> OutboxEntry:
    found = list_outbox(db, ids=[oid])
    if not found:
        raise OutboxError(f"no outbox message {oid}")
    return found[0]


def release(db: Database, settings: Settings, oid: int, actor: str,
            reason: str | None = None) -> OutboxEntry:
    """Queue a ``held`` or ``failed`` message again (the operator's decision; audited).

    A message held for a key problem is rebuilt first and stays held if the key is still unusable.

    Raises:
        OutboxError: no such message, or it is not held/failed, or its key is still unusable.
    """
    from herald.store import audit

    ds = delivery_settings(settings)
    entry = _get(db, oid)
    if entry.state not in ("held", "failed"):
        raise OutboxError(f"outbox {oid} is {entry.state}; only held or failed messages can be released")
    if entry.state == "held" and entry.hold_reason in ("pgp_key", "pgp"):
        res = SendResult()
        rebuild_held(db, ds, res, only=oid)
        if oid not in res.released:
            raise OutboxError(f"outbox {oid} is still held: {_get(db, oid).last_error}")
    else:
        with db.session() as s:
            n = s.execute(sa.update(OutboxRow).where(
                OutboxRow.id == oid, OutboxRow.state == entry.state).values(
                state="queued", hold_reason=None, next_attempt_at=None, updated_at=utcnow(),
                last_error=f"released by {actor}" + (f": {reason}" if reason else ""))).rowcount
            if n != 1:
                raise OutboxError(f"outbox {oid} changed meanwhile; try again")
    audit.record(db, actor, "outbox.release", "outbox", oid, reason,
                 {"message_id": entry.message_id, "from_state": entry.state,
                  "hold_reason": entry.hold_reason})
    return _get(db, oid)


def mark_sent(db: Database, oid: int, actor: str, reason: str | None = None) -> OutboxEntry:
    """Record that a ``held`` message did arrive (e.g. the relay's log shows its Message-ID after
    an unknown outcome); audited.

    Raises:
        OutboxError: no such message, or it is not held.
    """
    from herald.store import audit

    entry = _get(db, oid)
    if entry.state != "held":
        raise OutboxError(f"outbox {oid} is {entry.state}; only held messages can be marked sent")
    if not update_state(db, oid, ("held",), state="sent", sent_at=utcnow(), hold_reason=None,
                   last_error=f"marked sent by {actor}" + (f": {reason}" if reason else "")):
        raise OutboxError(f"outbox {oid} changed meanwhile; try again")
    audit.record(db, actor, "outbox.mark_sent", "outbox", oid, reason,
                 {"message_id": entry.message_id, "hold_reason": entry.hold_reason})
    return _get(db, oid)


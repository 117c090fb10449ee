"""Sending: one sender at a time takes the due messages of the outbox to the SMTP relay, recording
before and after each message, and recovers what a dead sender left (see :mod:`herald.deliver.outbox`)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa

from herald.config import Settings
from herald.deliver.bounces import bounce_threshold, hold_bouncing
from herald.deliver.outbox.results import OutboxError, SendResult
from herald.deliver.outbox.spool import protect, signer_for, spool_paths
from herald.deliver.pgp import KeyUnusable, PgpError
from herald.deliver.settings import DeliverySettings, delivery_settings
from herald.deliver.smtp import Attempt, Outcome, Relay
from herald.reports.render import atomic_write
from herald.store.db import ContactRow, Database, OutboxRow, RecipientRow, utcnow

#: The outbox modules log as one logger, ``herald.deliver.outbox``.
log = logging.getLogger("herald.deliver.outbox")


#: PostgreSQL advisory-lock key of the sender ("herald-send" folded to 63 bits).
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"herald-send").digest()[:8], "big") >> 1


@contextmanager
def sender_lock(db: Database, spool: Path) -> Iterator[bool]:
    """Exclusive right to send: yields ``True`` when taken, ``False`` when another sender has it.

    ``flock`` on ``<spool>/send.lock`` (released by the kernel when the process dies) and, on
    PostgreSQL, a session advisory lock (released when the connection ends), so senders on several
    hosts sharing one database exclude each other too.
    """
    spool.mkdir(parents=True, exist_ok=True)
    fd = os.open(spool / "send.lock", os.O_RDWR | os.O_CREAT, 0o600)
    conn = None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        if db.dialect == "postgresql":
            conn = db.engine.connect()
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_LOCK_KEY}).scalar()
            conn.commit()
            if not got:
                yield False
                return
        yield True
    finally:
        if conn is not None:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
            finally:
                conn.close()
        os.close(fd)


def update_state(db: Database, outbox_id: int, expect: tuple[str, ...], **values) -> bool:
    """Conditional update of one row (only when its state is in ``expect``); True when done."""
    values.setdefault("updated_at", utcnow())
    with db.session() as s:
        res = s.execute(sa.update(OutboxRow).where(OutboxRow.id == outbox_id,
                                                   OutboxRow.state.in_(expect)).values(**values))
        return res.rowcount == 1


def recover(db: Database, ds: DeliverySettings, result: SendResult | None = None) -> None:
    """Resolve rows left ``sending`` by a sender that died (call only under :func:`sender_lock`).

    See the module docstring for the policy.
    """
    result = result if result is not None else SendResult()
    with db.session() as s:
        rows = s.execute(sa.select(OutboxRow.id, OutboxRow.smtp_phase, OutboxRow.message_id)
                         .where(OutboxRow.state == "sending")).all()
    for oid, phase, mid in rows:
        if phase != "eod":
            if update_state(db, oid, ("sending",), state="queued", smtp_phase=None, next_attempt_at=None,
                       last_error="a previous herald send stopped before the end of the message data "
                                  "was sent; the relay discarded that transaction (RFC 5321 "
                                  "section 3.8): queued again"):
                result.requeued.append(oid)
        elif ds.smtp.unknown_outcome == "resend":
            if update_state(db, oid, ("sending",), state="queued", smtp_phase=None, next_attempt_at=None,
                       last_error="a previous herald send stopped after the end of the message data; "
                                  "resending (unknown_outcome = \"resend\"): it may arrive twice"):
                result.requeued.append(oid)
        else:
            if update_state(db, oid, ("sending",), state="held", smtp_phase=None,
                       hold_reason="outcome_unknown", last_error=_unknown_reason(oid, mid)):
                result.held.append(oid)


def _unknown_reason(oid: int, message_id: str, detail: str | None = None) -> str:
    what = detail or ("a previous herald send stopped after sending the end of the message data "
                      "and before recording the relay's reply")
    return (f"outcome unknown: {what}; the relay may have accepted the message. Check the relay's "
            f"log for Message-ID {message_id}, then run 'herald outbox --mark-sent {oid}' if it "
            f"was delivered or 'herald outbox --release {oid}' to send it again")


def _backoff(ds: DeliverySettings, attempts: int) -> float:
    """Seconds before retry number ``attempts``: ``base * 2**(attempts-1)``, capped at
    ``retry_max``, with jitter (uniform in [50 %, 100 %]) so that many deferred messages do not
    retry in lock step."""
    delay = min(ds.smtp.retry_max, ds.smtp.retry_base * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.5, 1.0)


def _record(db: Database, ds: DeliverySettings, oid: int, mid: str, attempts: int, attempt: Attempt,
            now: datetime, result: SendResult) -> None:
    if attempt.outcome is Outcome.SENT:
        update_state(db, oid, ("sending",), state="sent", sent_at=utcnow(), smtp_phase=None,
                smtp_reply=attempt.reply, last_error=None, next_attempt_at=None, hold_reason=None)
        result.sent.append(oid)
    elif attempt.outcome is Outcome.FAILED:
        update_state(db, oid, ("sending",), state="failed", smtp_phase=None, smtp_reply=attempt.reply,
                last_error=attempt.describe(), next_attempt_at=None)
        result.failed.append(oid)
    elif attempt.outcome is Outcome.UNKNOWN and ds.smtp.unknown_outcome == "hold":
        update_state(db, oid, ("sending",), state="held", smtp_phase=None, smtp_reply=attempt.reply,
                hold_reason="outcome_unknown",
                last_error=_unknown_reason(oid, mid, f"the relay did not answer the end of the "
                                                     f"message data ({attempt.reply})"))
        result.held.append(oid)
    elif attempts >= ds.smtp.max_attempts:
        update_state(db, oid, ("sending",), state="failed", smtp_phase=None, smtp_reply=attempt.reply,
                last_error=f"gave up after {attempts} attempts; last: {attempt.describe()}",
                next_attempt_at=None)
        result.failed.append(oid)
    else:
        when = now + timedelta(seconds=_backoff(ds, attempts))
        update_state(db, oid, ("sending",), state="queued", smtp_phase=None, smtp_reply=attempt.reply,
                last_error=f"attempt {attempts}: {attempt.describe()}; next attempt "
                           f"{when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
                next_attempt_at=when)
        result.retried.append(oid)


def rebuild_held(db: Database, ds: DeliverySettings, result: SendResult,
                  only: int | None = None) -> None:
    """Try again to protect messages held for a key or signing problem (the operator may have
    imported the key or fixed the fingerprint since); those that now work are queued."""
    with db.session() as s:
        stmt = (sa.select(OutboxRow.id, OutboxRow.message_id, OutboxRow.day, OutboxRow.last_error,
                          ContactRow.pgp_fingerprint)
                .join(RecipientRow, RecipientRow.id == OutboxRow.recipient_id)
                .outerjoin(ContactRow, sa.and_(ContactRow.recipient_id == RecipientRow.id,
                                               ContactRow.is_primary == sa.true()))
                .where(OutboxRow.state == "held", OutboxRow.hold_reason.in_(("pgp_key", "pgp"))))
        if only is not None:
            stmt = stmt.where(OutboxRow.id == only)
        rows = s.execute(stmt).all()
    if not rows:
        return
    try:
        signer = signer_for(ds)
    except PgpError as exc:
        signer, err = None, str(exc)
    else:
        err = None
    for oid, mid, day, last_error, fpr in rows:
        hdr_path, entity_path, eml_path = spool_paths(ds, day.isoformat(), mid)
        try:
            if err:
                raise PgpError(err)
            protected, protection = protect(ds, signer, entity_path.read_bytes(), fpr)
        except KeyUnusable as exc:
            msg = f"held: {exc}"
            if msg != last_error:
                update_state(db, oid, ("held",), hold_reason="pgp_key", last_error=msg)
            continue
        except (PgpError, OSError) as exc:
            msg = f"held: {exc}"
            if msg != last_error:
                update_state(db, oid, ("held",), hold_reason="pgp", last_error=msg)
            continue
        sha = atomic_write(eml_path, hdr_path.read_bytes() + protected)
        if update_state(db, oid, ("held",), state="queued", hold_reason=None, last_error=None,
                   protection=protection, sha256=sha, path=str(eml_path), next_attempt_at=None):
            result.released.append(oid)


def send_due(db: Database, settings: Settings, now: datetime | None = None, *,
             limit: int | None = None) -> SendResult:
    """Deliver the queued messages that are due, through the ``[smtp]`` relay.

    Under the sender lock: rows a dead sender left ``sending`` are resolved (:func:`recover`),
    messages held for a key problem are rebuilt when the key is now usable, and each due
    ``queued`` message (``next_attempt_at`` empty or not after ``now``) is claimed and sent, one
    SMTP transaction each, at most ``[smtp] rate_per_second`` per second.  When the relay itself is
    unusable (refused connection, TLS or AUTH failure) the pass stops after recording that attempt;
    the other messages stay queued.

    Args:
        db: the metadata database.
        settings: the configuration.
        now: the time due-ness and backoff are computed from (default: now, UTC).
        limit: send at most this many messages.

    Returns:
        the :class:`SendResult`.

    Raises:
        ConfigError: invalid delivery configuration, or the SMTP password is not available.
    """
    ds = delivery_settings(settings)
    now = now or utcnow()
    result = SendResult()
    with sender_lock(db, ds.spool) as locked:
        if not locked:
            result.busy = True
            result.errors.append("another herald send holds the sender lock; nothing done")
            return result
        recover(db, ds, result)
        rebuild_held(db, ds, result)
        result.held.extend(hold_bouncing(db, bounce_threshold(settings)))
        if not ds.smtp.configured:
            result.errors.append("no [smtp] host configured: nothing sent")
            return result
        with db.session() as s:
            stmt = (sa.select(OutboxRow.id).where(
                OutboxRow.state == "queued",
                sa.or_(OutboxRow.next_attempt_at.is_(None), OutboxRow.next_attempt_at <= now))
                .order_by(OutboxRow.id))
            if limit:
                stmt = stmt.limit(limit)
            due = list(s.scalars(stmt))
        if not due:
            return result
        relay = Relay(ds.smtp, ds.smtp.password())
        try:
            for oid in due:
                if not update_state(db, oid, ("queued",), state="sending", smtp_phase="smtp",
                               attempts=OutboxRow.attempts + 1):
                    continue  # changed meanwhile (operator)
                with db.session() as s:
                    row = s.get(OutboxRow, oid)
                    mid, rcpt, mail_from, path, sha, attempts = (
                        row.message_id, row.rcpt_to, row.envelope_sender, row.path, row.sha256,
                        row.attempts)
                try:
                    data = Path(path).read_bytes()
                except (OSError, TypeError) as exc:
                    data, problem = None, f"message file {path} unreadable: {exc}"
                else:
                    problem = (None if hashlib.sha256(data).hexdigest() == sha
                               else f"message file {path} does not match its recorded SHA-256")
                if problem or not rcpt:
                    update_state(db, oid, ("sending",), state="held", smtp_phase=None,
                            hold_reason="operator", last_error=f"held: {problem or 'no envelope recipient'}")
                    result.held.append(oid)
                    continue

                def mark_eod(oid=oid) -> None:
                    if not update_state(db, oid, ("sending",), smtp_phase="eod"):
                        raise OutboxError(f"outbox {oid} is no longer 'sending'; not completing it")

                try:
                    attempt = relay.send(mail_from, rcpt, data, before_eod=mark_eod)
                except OutboxError as exc:  # an operator changed the row meanwhile
                    result.errors.append(str(exc))
                    continue
                _record(db, ds, oid, mid, attempts, attempt, now, result)
                log.info("outbox %s %s: %s", oid, attempt.outcome.value, attempt.reply)
                if attempt.relay_error:
                    result.errors.append(f"relay {ds.smtp.host}:{ds.smtp.port}: {attempt.reply}")
                    break
        finally:
            relay.close()
    return result


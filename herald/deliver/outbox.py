"""The outbox: report messages queued in the metadata database and delivered exactly once.

Life of a message (``outbox.state``)::

    enqueue_reports ──> queued ──claim──> sending ──250──> sent
                          ^  │               │ 4yz / lost connection before end of data
                          │  │               ├──────────────> queued (retry later, backoff)
                          │  │               │ 5yz / too many attempts
                          │  │               ├──────────────> failed
                          │  │               │ no reply after end of data (unknown outcome)
                          │  │               └──────────────> held (operator decides)
                          │  └─ key missing/expired ───────> held (retried by every send)
                          └──────────── herald outbox --release ──┘

Exactly once:

- **Enqueue is idempotent.**  The ``Message-ID`` is derived from the recipient, report type, day
  and the report's SHA-256 (:func:`herald.deliver.compose.message_id`) and is unique in the table;
  re-running the day finds the row and queues nothing.
- **One sender at a time.**  :func:`send_due` takes an exclusive lock (``flock`` on
  ``<data>/mail/send.lock``, and a PostgreSQL advisory lock on PostgreSQL); a second ``herald send``
  returns at once (``busy``).  A message is claimed with a conditional
  ``UPDATE ... WHERE state = 'queued'``.
- **Record before and after.**  The claim commits ``sending`` (phase ``smtp``) before connecting;
  after the message data and *before* its terminating ``.`` the phase ``eod`` is committed; the
  relay's reply is committed right after it arrives.
- **Crash policy.**  A row found in ``sending`` when the lock is taken belongs to a sender that
  died.  Phase ``smtp``: the terminator was never sent, the relay discarded the transaction
  (RFC 5321 section 3.8), so the message is queued again and will arrive once.  Phase ``eod``: the
  relay may or may not have accepted it; resending could deliver it twice (RFC 1047), so the
  message is ``held`` with ``hold_reason = 'outcome_unknown'`` and a reason that tells the
  operator to check the relay's log for the ``Message-ID`` and then ``herald outbox --mark-sent``
  or ``--release`` it (``[smtp] unknown_outcome = "resend"`` chooses at-least-once instead).  The
  same applies when the relay drops the connection after the terminator without replying.

Built messages are spooled under ``<data>/mail/<day>/``: ``<key>.hdr`` (top-level headers),
``<key>.entity`` (the unprotected MIME content) and ``<key>.eml`` (the exact bytes that are sent,
signed and possibly encrypted; its SHA-256 is in ``outbox.sha256`` and is checked before sending).
"""

from __future__ import annotations

import hashlib
import logging
import random
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

from herald.config import Settings
from herald.deliver import envelope
from herald.deliver.bounces import bounce_threshold, hold_bouncing
from herald.deliver.pgp import KeyUnusable, PgpError
from herald.deliver.settings import DeliverySettings, delivery_settings
from herald.deliver.smtp import Attempt, Outcome, Relay, with_recipients
from herald.deliver.enqueue import enqueue_reports  # noqa: F401 - part of the outbox API (re-exported)
from herald.deliver.spool import OutboxError, protect, signer_for, spool_paths
from herald.fsutil import FileLock, atomic_write
from herald.store.db import (
    ContactRow, Database, OutboxAddressRow, OutboxRow, RecipientRow, utcnow,
)

__all__ = ["AddressEntry", "OutboxEntry", "OutboxError", "SendResult", "enqueue_reports", "list_outbox", "mark_sent",
           "recover", "release", "send_due", "sender_lock"]

log = logging.getLogger(__name__)

#: PostgreSQL advisory-lock key of the sender ("herald-send" folded to 63 bits).
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"herald-send").digest()[:8], "big") >> 1

# --- results -------------------------------------------------------------------------------------

@dataclass
class SendResult:
    """What one :func:`send_due` pass did (outbox ids in each list).

    Attributes:
        sent: accepted by the relay (``250``).
        retried: temporary failure, queued again with a later ``next_attempt_at``.
        failed: permanent failure (``5yz``) or too many attempts.
        held: held in this pass (unknown outcome, key unusable).
        requeued: found ``sending`` from a dead sender before the end of data, queued again.
        released: held for a key problem, now built and queued.
        errors: problems not tied to one message (relay unreachable, lock busy).
        busy: another sender holds the lock; nothing was done.
        addresses_failed: ``(outbox id, address)`` of the envelope addresses that failed in this
            pass (refused permanently, or given up) while the message may have reached others.
        addresses_held: ``(outbox id, address)`` of the addresses left out of the envelope in this
            pass because they bounce (:func:`herald.deliver.bounces.hold_bouncing`).
    """

    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: bool = False
    addresses_failed: list[tuple[int, str]] = field(default_factory=list)
    addresses_held: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class AddressEntry:
    """One envelope address of an outbox message (``outbox_addresses``; :mod:`herald.deliver.envelope`).

    Attributes:
        address: as in ``To`` and ``RCPT TO``.
        state: ``queued``, ``sent``, ``failed`` or ``held``.
        hold_reason: ``bouncing`` for a held address, else ``None``.
        smtp_reply: the reply that decided it, or why it is held.
    """

    address: str
    state: str
    hold_reason: str | None
    smtp_reply: str | None


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row, as ``herald outbox`` shows it (times aware UTC); ``addresses``: its
    envelope addresses with their own states."""

    id: int
    message_id: str
    state: str
    recipient: str
    rcpt_to: str | None
    day: date | None
    report_type: str | None
    subject: str | None
    tlp: str | None
    protection: str | None
    attempts: int
    next_attempt_at: datetime | None
    hold_reason: str | None
    last_error: str | None
    smtp_reply: str | None
    envelope_sender: str
    sent_at: datetime | None
    path: str | None
    addresses: tuple[AddressEntry, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO text; ``addresses`` as a list of dicts)."""
        return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v)
                for k, v in asdict(self).items()}


# --- sending -------------------------------------------------------------------------------------

@contextmanager
def sender_lock(db: Database, spool: Path) -> Iterator[bool]:
    """Exclusive right to send: yields ``True`` when taken, ``False`` when another sender has it.

    ``flock`` on ``<spool>/send.lock`` (released by the kernel when the process dies) and, on
    PostgreSQL, a session advisory lock (released when the connection ends), so senders on several
    hosts sharing one database exclude each other too.
    """
    lock = FileLock(spool / "send.lock", mode=0o600)
    conn = None
    try:
        if not lock.acquire():
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
        lock.release()


def _update(db: Database, outbox_id: int, expect: tuple[str, ...], **values) -> bool:
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
            if _update(db, oid, ("sending",), state="queued", smtp_phase=None, next_attempt_at=None,
                       last_error="a previous herald send stopped before the end of the message data "
                                  "was sent; the relay discarded that transaction (RFC 5321 "
                                  "section 3.8): queued again"):
                result.requeued.append(oid)
        elif ds.smtp.unknown_outcome == "resend":
            if _update(db, oid, ("sending",), state="queued", smtp_phase=None, next_attempt_at=None,
                       last_error="a previous herald send stopped after the end of the message data; "
                                  "resending (unknown_outcome = \"resend\"): it may arrive twice"):
                result.requeued.append(oid)
        else:
            if _update(db, oid, ("sending",), state="held", smtp_phase=None,
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
    """Record an attempt: each address's result (:func:`herald.deliver.envelope.record`), then
    the message's state from its addresses, in one transaction (only while it is ``sending``)."""
    hold_unknown = attempt.outcome is Outcome.UNKNOWN and ds.smtp.unknown_outcome == "hold"
    give_up = attempts >= ds.smtp.max_attempts
    problem = envelope.problems(attempt.recipients) or attempt.describe()
    with db.session() as s:
        row = s.get(OutboxRow, oid, with_for_update=True)
        if row is None or row.state != "sending":
            return  # an operator changed it meanwhile
        counts, failed = envelope.record(s, oid, attempt, give_up=give_up, keep_unknown=hold_unknown,
                                         attempts=attempts, now=now)
        result.addresses_failed.extend((oid, a) for a in failed)
        values: dict[str, Any] = {"smtp_phase": None, "smtp_reply": attempt.reply, "updated_at": utcnow()}
        if hold_unknown:
            values.update(state="held", hold_reason="outcome_unknown", last_error=_unknown_reason(
                oid, mid, f"the relay did not answer the end of the message data ({attempt.reply})"))
            result.held.append(oid)
        elif counts["queued"] and envelope.problems(attempt.recipients) is None:
            # Delivered to every address tried; another was queued meanwhile (a bounce reset).
            values.update(state="queued", next_attempt_at=None, last_error=None)
            result.retried.append(oid)
        elif counts["queued"]:
            when = now + timedelta(seconds=_backoff(ds, attempts))
            values.update(state="queued", next_attempt_at=when,
                          last_error=f"attempt {attempts}: {problem}; next attempt "
                                     f"{when.strftime('%Y-%m-%d %H:%M:%S')} UTC")
            result.retried.append(oid)
        else:
            state, hold_reason = envelope.message_state(counts)
            bad = envelope.problems(attempt.recipients)
            if give_up and any(r.outcome in (Outcome.RETRY, Outcome.UNKNOWN) for r in attempt.recipients):
                bad = f"gave up after {attempts} attempts; last: {problem}"
            if bad and state == "sent":
                bad = f"not delivered to every address: {bad}"
            values.update(state=state, hold_reason=hold_reason, next_attempt_at=None, last_error=bad)
            if state == "sent":
                values["sent_at"] = utcnow()
                result.sent.append(oid)
            elif state == "held":
                result.held.append(oid)
            else:
                result.failed.append(oid)
        s.execute(sa.update(OutboxRow).where(OutboxRow.id == oid).values(**values))


def _rebuild_held(db: Database, ds: DeliverySettings, result: SendResult,
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
                _update(db, oid, ("held",), hold_reason="pgp_key", last_error=msg)
            continue
        except (PgpError, OSError) as exc:
            msg = f"held: {exc}"
            if msg != last_error:
                _update(db, oid, ("held",), hold_reason="pgp", last_error=msg)
            continue
        sha = atomic_write(eml_path, hdr_path.read_bytes() + protected)
        if _update(db, oid, ("held",), state="queued", hold_reason=None, last_error=None,
                   protection=protection, sha256=sha, path=str(eml_path), next_attempt_at=None):
            result.released.append(oid)


def send_due(db: Database, settings: Settings, now: datetime | None = None, *,
             limit: int | None = None) -> SendResult:
    """Deliver the queued messages that are due, through the ``[smtp]`` relay.

    Under the sender lock: rows a dead sender left ``sending`` are resolved (:func:`recover`),
    messages held for a key problem are rebuilt when the key is now usable, and each due
    ``queued`` message (``next_attempt_at`` empty or not after ``now``) is claimed and sent, one
    SMTP transaction each (one ``RCPT TO`` per queued address, :mod:`herald.deliver.envelope`),
    at most ``[smtp] rate_per_second`` per second.  Each address's result is recorded on its own;
    the message's state follows from them.  When the relay itself is
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
        _rebuild_held(db, ds, result)
        result.held.extend(hold_bouncing(db, bounce_threshold(settings), result.addresses_held))
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
                if not _update(db, oid, ("queued",), state="sending", smtp_phase="smtp",
                               attempts=OutboxRow.attempts + 1):
                    continue  # changed meanwhile (operator)
                with db.session() as s:
                    row = s.get(OutboxRow, oid)
                    mid, mail_from, path, sha, attempts = (
                        row.message_id, row.envelope_sender, row.path, row.sha256, row.attempts)
                    rcpt = envelope.queued(s, oid)  # one RCPT TO each
                try:
                    data = Path(path).read_bytes()
                except (OSError, TypeError) as exc:
                    data, problem = None, f"message file {path} unreadable: {exc}"
                else:
                    problem = (None if hashlib.sha256(data).hexdigest() == sha
                               else f"message file {path} does not match its recorded SHA-256")
                if problem or not rcpt:
                    _update(db, oid, ("sending",), state="held", smtp_phase=None,
                            hold_reason="operator", last_error=f"held: {problem or 'no envelope recipient'}")
                    result.held.append(oid)
                    continue

                def mark_eod(oid=oid) -> None:
                    if not _update(db, oid, ("sending",), smtp_phase="eod"):
                        raise OutboxError(f"outbox {oid} is no longer 'sending'; not completing it")

                try:
                    attempt = with_recipients(rcpt, relay.send(mail_from, rcpt, data, before_eod=mark_eod))
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


# --- operator view and actions --------------------------------------------------------------------

def list_outbox(db: Database, state: str | list[str] | None = None, day: str | None = None,
                ids: list[int] | None = None) -> list[OutboxEntry]:
    """Outbox rows (optionally by state(s), day or ids), oldest first, each with its envelope
    addresses (:class:`AddressEntry`, in the order of ``To``)."""
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
        rows = s.execute(stmt).all()
        addresses: dict[int, list[AddressEntry]] = {}
        chosen = stmt.with_only_columns(OutboxRow.id).order_by(None)
        for a in s.scalars(sa.select(OutboxAddressRow).where(OutboxAddressRow.outbox_id.in_(chosen))
                           .order_by(OutboxAddressRow.id)):
            addresses.setdefault(a.outbox_id, []).append(
                AddressEntry(a.address, a.state, a.hold_reason, a.smtp_reply))
        return [OutboxEntry(
            id=o.id, message_id=o.message_id, state=o.state, recipient=name, rcpt_to=o.rcpt_to,
            day=o.day, report_type=o.report_type, subject=o.subject, tlp=o.tlp,
            protection=o.protection, attempts=o.attempts, next_attempt_at=o.next_attempt_at,
            hold_reason=o.hold_reason, last_error=o.last_error, smtp_reply=o.smtp_reply,
            envelope_sender=o.envelope_sender, sent_at=o.sent_at, path=o.path,
            addresses=tuple(addresses.get(o.id, ())))
            for o, name in rows]


def _get(db: Database, oid: int) -> OutboxEntry:
    found = list_outbox(db, ids=[oid])
    if not found:
        raise OutboxError(f"no outbox message {oid}")
    return found[0]


def release(db: Database, settings: Settings, oid: int, actor: str,
            reason: str | None = None) -> OutboxEntry:
    """Queue a ``held`` or ``failed`` message again (the operator's decision; audited).

    A message held for a key problem is rebuilt first and stays held if the key is still unusable.
    Its ``failed`` and ``held`` addresses are queued again too (those already ``sent`` are not
    sent again); an address that still bounces is held again by the next ``herald send``.

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
        _rebuild_held(db, ds, res, only=oid)
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
            s.execute(sa.update(OutboxAddressRow).where(
                OutboxAddressRow.outbox_id == oid, OutboxAddressRow.state.in_(("failed", "held")))
                .values(state="queued", hold_reason=None, updated_at=utcnow()))
    audit.record(db, actor, "outbox.release", "outbox", oid, reason,
                 {"message_id": entry.message_id, "from_state": entry.state,
                  "hold_reason": entry.hold_reason})
    return _get(db, oid)


def mark_sent(db: Database, oid: int, actor: str, reason: str | None = None) -> OutboxEntry:
    """Record that a ``held`` message did arrive (e.g. the relay's log shows its Message-ID after
    an unknown outcome); audited.  Its ``queued`` and ``held`` addresses are recorded ``sent``.

    Raises:
        OutboxError: no such message, or it is not held.
    """
    from herald.store import audit

    entry = _get(db, oid)
    if entry.state != "held":
        raise OutboxError(f"outbox {oid} is {entry.state}; only held messages can be marked sent")
    note = f"marked sent by {actor}" + (f": {reason}" if reason else "")
    with db.session() as s:
        if not s.execute(sa.update(OutboxRow).where(OutboxRow.id == oid, OutboxRow.state == "held")
                         .values(state="sent", sent_at=utcnow(), hold_reason=None, last_error=note,
                                 updated_at=utcnow())).rowcount:
            raise OutboxError(f"outbox {oid} changed meanwhile; try again")
        s.execute(sa.update(OutboxAddressRow).where(
            OutboxAddressRow.outbox_id == oid, OutboxAddressRow.state.in_(("queued", "held")))
            .values(state="sent", hold_reason=None, smtp_reply=note, updated_at=utcnow()))
    audit.record(db, actor, "outbox.mark_sent", "outbox", oid, reason,
                 {"message_id": entry.message_id, "hold_reason": entry.hold_reason})
    return _get(db, oid)

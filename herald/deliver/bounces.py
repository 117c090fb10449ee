"""Bounces: read delivery status notifications, count permanent failures per contact, hold mail.

Format: RFC 3464 — a DSN is a ``multipart/report; report-type=delivery-status`` message whose
``message/delivery-status`` part holds one block of per-message fields and one block per
recipient (``Final-Recipient: rfc822; user@example.net``, ``Action: failed|delayed|delivered|
relayed|expanded``, ``Status: 5.1.1`` — RFC 3463 enhanced status codes, class 2 success, 4
persistent transient failure, 5 permanent failure — and optionally ``Diagnostic-Code``).

A recipient block counts as a bounce only when ``Action`` is ``failed`` *and* the status class is
5 (permanent).  Delayed notices (``Action: delayed``, ``4.x.x``) and other messages (auto-replies,
spam that reached the bounce mailbox) are read and ignored.  A DSN is identified by the SHA-256 of
its bytes, so reading the same Maildir again counts nothing twice.

Bounces are counted per address (``Final-Recipient``), not per contact: of a contact that lists
several addresses (an RPSL ``abuse-mailbox`` list), each address is counted on its own.

After ``[abuse_contacts] bounce_threshold`` bounces (default :data:`DEFAULT_THRESHOLD`) an address
is *bouncing*: :func:`hold_bouncing` (called by :func:`herald.deliver.outbox.send_due` before
each pass) drops it from the envelope of every queued message (its ``outbox_addresses`` row
becomes ``held``, ``hold_reason = 'bouncing'``); the other addresses of the contact are still
sent to.  A message whose addresses not yet done are all held is itself ``held`` with
``hold_reason = 'bouncing'`` (:mod:`herald.deliver.envelope`).  :func:`reset_bounces`
(``herald bounces --reset``) forgets an address's count and queues it again in the messages it
was held from (audited).
"""

from __future__ import annotations

import hashlib
import logging
import mailbox
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from herald.config import ABUSE_CONTACT_KEYS, Settings, check_section
from herald.errors import ConfigError, HeraldError
from herald.deliver import envelope
from herald.store.db import BounceReportRow, BounceRow, Database, OutboxAddressRow, OutboxRow, utcnow

log = logging.getLogger(__name__)

#: Bounces after which messages to an address are held.
DEFAULT_THRESHOLD = 3
#: ``hold_reason`` of addresses (and messages) held because they bounce.
HOLD_REASON = envelope.BOUNCING


class BounceError(HeraldError):
    """The Maildir cannot be read."""


@dataclass(frozen=True)
class DsnRecipient:
    """One per-recipient block of a DSN.

    Attributes:
        address: the ``Final-Recipient`` address (``rfc822`` type), lower-cased.
        action: ``failed``, ``delayed``, ``delivered``, ``relayed`` or ``expanded`` (lower-case).
        status: the RFC 3463 code (``5.1.1``), ``""`` when missing.
        diagnostic: ``Diagnostic-Code`` text, or ``None``.
    """

    address: str
    action: str
    status: str
    diagnostic: str | None

    @property
    def permanent_failure(self) -> bool:
        """``Action: failed`` with a class-5 status (RFC 3463 section 3.1)."""
        return self.action == "failed" and self.status.startswith("5.")


def parse_dsn(data: bytes) -> list[DsnRecipient] | None:
    """The recipient blocks of an RFC 3464 DSN, or ``None`` when ``data`` is not a DSN.

    Args:
        data: one RFC 5322 message, as bytes.
    """
    msg = message_from_bytes(data, policy=policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return None
    out: list[DsnRecipient] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # blocks[0]: per-message fields (Reporting-MTA, ...)
            rec = _recipient(block)
            if rec is not None:
                out.append(rec)
    return out


def _recipient(block: Message) -> DsnRecipient | None:
    final = block.get("Final-Recipient") or block.get("Original-Recipient")
    if not final:
        return None
    addr_type, _, addr = str(final).partition(";")
    if not addr:
        addr, addr_type = addr_type, "rfc822"
    if addr_type.strip().lower() != "rfc822":
        return None
    address = addr.strip().strip("<>").strip().lower()
    if "@" not in address:
        return None
    status = str(block.get("Status", "")).strip().split()[0] if block.get("Status") else ""
    diag = block.get("Diagnostic-Code")
    return DsnRecipient(address, str(block.get("Action", "")).strip().lower(), status,
                        " ".join(str(diag).split()) if diag else None)


@dataclass
class BounceSummary:
    """What :func:`record_bounces` did.

    Attributes:
        messages: messages read; dsns: of which DSNs; counted: permanent failures newly counted;
        repeated: failures already counted before (same DSN read again); ignored: recipient
        blocks that are not permanent failures (delayed, delivered, 4.x.x); not_dsn: messages
        that are not DSNs; bouncing: addresses at or above the threshold after this pass.
    """

    messages: int = 0
    dsns: int = 0
    counted: int = 0
    repeated: int = 0
    ignored: int = 0
    not_dsn: int = 0
    bouncing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def bounce_threshold(settings: Settings) -> int:
    """``[abuse_contacts] bounce_threshold`` (default :data:`DEFAULT_THRESHOLD`).

    Raises:
        ConfigError: not an integer >= 1; an unknown key in the section (the section's keys are
            :data:`herald.config.ABUSE_CONTACT_KEYS`).
    """
    section = check_section(settings, "abuse_contacts", ABUSE_CONTACT_KEYS)
    value = section.get("bounce_threshold", DEFAULT_THRESHOLD)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"[abuse_contacts] bounce_threshold must be an integer >= 1, not {value!r}")
    return value


def record_bounces(db: Database, maildir: str | Path, threshold: int = DEFAULT_THRESHOLD,
                   now: datetime | None = None) -> BounceSummary:
    """Read every message of a Maildir (``new/`` and ``cur/``) and count permanent failures.

    Messages are not moved or flagged (other tools may share the mailbox); counting is idempotent
    per (DSN SHA-256, address).

    Args:
        db: the metadata database.
        maildir: the Maildir directory (with ``cur``, ``new``, ``tmp``).
        threshold: bounces from which an address is listed as bouncing in the summary.
        now: the time recorded (UTC; default now).

    Returns:
        :class:`BounceSummary`.

    Raises:
        BounceError: ``maildir`` is not a Maildir.
    """
    path = Path(maildir)
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise BounceError(f"{path} is not a Maildir (no cur/ and new/)")
    now = now or utcnow()
    box = mailbox.Maildir(str(path), factory=None, create=False)
    summary = BounceSummary()
    for key in sorted(box.keys()):
        try:
            data = box.get_bytes(key)
        except (OSError, KeyError) as exc:  # removed meanwhile
            log.warning("bounce %s unreadable: %s", key, exc)
            continue
        summary.messages += 1
        recipients = parse_dsn(data)
        if recipients is None:
            summary.not_dsn += 1
            continue
        summary.dsns += 1
        digest = hashlib.sha256(data).hexdigest()
        mid = message_from_bytes(data, policy=policy.compat32).get("Message-ID")
        for rec in recipients:
            if not rec.permanent_failure:
                summary.ignored += 1
                continue
            if _count(db, digest, rec, None if mid is None else str(mid).strip(), now):
                summary.counted += 1
            else:
                summary.repeated += 1
    summary.bouncing = sorted(bouncing_addresses(db, threshold))
    return summary


def _count(db: Database, digest: str, rec: DsnRecipient, message_id: str | None, now: datetime) -> bool:
    try:
        with db.session() as s:
            s.add(BounceReportRow(dsn_sha256=digest, address=rec.address, status=rec.status,
                                  message_id=message_id, received_at=now))
            s.flush()
            row = s.scalars(sa.select(BounceRow).where(BounceRow.address == rec.address)).one_or_none()
            if row is None:
                row = BounceRow(address=rec.address, count=0, first_bounce_at=now)
                s.add(row)
            row.count += 1
            row.last_bounce_at = now
            row.last_status = rec.status
            row.last_diagnostic = rec.diagnostic
    except IntegrityError:
        return False  # this DSN's failure for this address was counted before
    return True


def bouncing_addresses(db: Database, threshold: int = DEFAULT_THRESHOLD) -> set[str]:
    """Lower-cased addresses with at least ``threshold`` counted bounces."""
    with db.session() as s:
        return set(s.scalars(sa.select(BounceRow.address).where(BounceRow.count >= threshold)))


def list_bounces(db: Database) -> list[dict[str, Any]]:
    """Every address with bounces: ``address``, ``count``, ``first_bounce_at``,
    ``last_bounce_at``, ``last_status``, ``last_diagnostic``; most bounces first."""
    with db.session() as s:
        rows = s.scalars(sa.select(BounceRow).order_by(BounceRow.count.desc(), BounceRow.address))
        return [{"address": r.address, "count": r.count, "first_bounce_at": r.first_bounce_at,
                 "last_bounce_at": r.last_bounce_at, "last_status": r.last_status,
                 "last_diagnostic": r.last_diagnostic} for r in rows]


def hold_bouncing(db: Database, threshold: int = DEFAULT_THRESHOLD,
                  dropped: list[tuple[int, str]] | None = None) -> list[int]:
    """Drop bouncing addresses from queued messages, and hold the messages left with none.

    Each ``queued`` address of a ``queued`` message that has at least ``threshold`` bounces
    becomes ``held`` (``hold_reason = 'bouncing'``, ``smtp_reply`` says why).  A message left with
    no ``queued`` address takes the state its addresses give (:func:`herald.deliver.envelope.
    message_state`): ``held`` (``bouncing``, ``last_error`` naming each held address) when none
    was delivered, ``sent`` when an earlier attempt delivered to another address.

    Args:
        db: the metadata database.
        threshold: bounces from which an address is held.
        dropped: when given, ``(outbox id, address)`` of each address held now is appended.

    Returns:
        The ids of the outbox rows held now.
    """
    now = utcnow()
    with db.session() as s:
        rows = s.execute(
            sa.select(OutboxAddressRow.id, OutboxAddressRow.outbox_id, OutboxAddressRow.address,
                      BounceRow.count, BounceRow.last_status, BounceRow.last_bounce_at)
            .join(OutboxRow, OutboxRow.id == OutboxAddressRow.outbox_id)
            .join(BounceRow, sa.func.lower(OutboxAddressRow.address) == BounceRow.address)
            .where(OutboxRow.state == "queued", OutboxAddressRow.state == "queued",
                   BounceRow.count >= threshold)
            .order_by(OutboxAddressRow.outbox_id, OutboxAddressRow.id)).all()
        touched: dict[int, list[str]] = {}
        for aid, oid, address, count, status, last in rows:
            why = (f"held: {address} bounced {count} times (last {status or '?'} at "
                   f"{last:%Y-%m-%dT%H:%M:%SZ}); 'herald bounces --reset {address.lower()}' after "
                   f"fixing it")
            s.execute(sa.update(OutboxAddressRow).where(OutboxAddressRow.id == aid).values(
                state="held", hold_reason=HOLD_REASON, smtp_reply=why, updated_at=now))
            touched.setdefault(oid, []).append(why)
            if dropped is not None:
                dropped.append((oid, address))
        held = []
        for oid, reasons in touched.items():
            state, hold_reason = envelope.message_state(envelope.states(s, oid))
            if state == "queued":
                continue  # other addresses are still sent to
            values = {"state": state, "hold_reason": hold_reason, "updated_at": now}
            if state == "held":
                values["last_error"] = "; ".join(reasons)
            elif state == "sent":
                values["sent_at"] = now
            res = s.execute(sa.update(OutboxRow).where(OutboxRow.id == oid, OutboxRow.state == "queued")
                            .values(**values))
            if res.rowcount and state == "held":
                held.append(oid)
    return held


def reset_bounces(db: Database, address: str, actor: str, reason: str | None = None) -> list[int]:
    """Forget an address's bounce count and queue it again where it was held (audited).

    Every ``held`` (``bouncing``) envelope address equal to ``address`` (case-insensitive) becomes
    ``queued`` again, and its message too when it is ``held`` for bouncing, ``sent`` (to the
    contact's other addresses) or ``failed``: the next ``herald send`` sends it to this address
    only (addresses already ``sent`` are not sent again).  The counted DSNs stay recorded (so the
    same notifications are not counted again).

    Returns:
        The ids of the outbox messages the address was queued again in.

    Raises:
        BounceError: the address has no bounces.
    """
    from herald.store import audit

    address = address.strip().lower()
    now = utcnow()
    with db.session() as s:
        row = s.scalars(sa.select(BounceRow).where(BounceRow.address == address)).one_or_none()
        if row is None:
            raise BounceError(f"{address} has no recorded bounces")
        before = {"count": row.count, "last_status": row.last_status}
        s.delete(row)
        held = sa.and_(OutboxAddressRow.state == "held", OutboxAddressRow.hold_reason == HOLD_REASON,
                       sa.func.lower(OutboxAddressRow.address) == address)
        ids = sorted(set(s.scalars(sa.select(OutboxAddressRow.outbox_id).where(held))))
        if ids:
            s.execute(sa.update(OutboxAddressRow).where(held).values(
                state="queued", hold_reason=None, smtp_reply=None, updated_at=now))
            s.execute(sa.update(OutboxRow).where(OutboxRow.id.in_(ids), sa.or_(
                OutboxRow.state.in_(("sent", "failed")),
                sa.and_(OutboxRow.state == "held", OutboxRow.hold_reason == HOLD_REASON)))
                .values(state="queued", hold_reason=None, last_error=None, next_attempt_at=None,
                        updated_at=now))
        audit.record(s, actor, "bounces.reset", "bounce", address, reason,
                     details={**before, "requeued": ids})
    return ids

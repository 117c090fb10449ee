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
from sqlalchemy.exc import IntegrityError

from herald.config import Settings
from herald.constituency.recipients import Recipient, recipients_from_specs
from herald.deliver import compose as _compose
from herald.deliver.pgp import KeyUnusable, PgpError, Signer
from herald.deliver.settings import DeliverySettings, delivery_settings
from herald.deliver.smtp import Attempt, Outcome, Relay
from herald.deliver.report_message import compose_message, report_part
from herald.deliver.xarf import XarfError
from herald.errors import HeraldError
from herald.fsutil import FileLock, atomic_write, link_or_write
from herald.schema.registry import default_registry
from herald.store.db import (
    ContactRow, Database, OutboxRow, RecipientRow, ReportRow, utcnow,
)

log = logging.getLogger(__name__)

#: PostgreSQL advisory-lock key of the sender ("herald-send" folded to 63 bits).
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"herald-send").digest()[:8], "big") >> 1

TLP_ORDER = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")


class OutboxError(HeraldError):
    """An outbox operation is not possible (unknown id, wrong state)."""


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
    """

    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row, as ``herald outbox`` shows it (times aware UTC)."""

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO text)."""
        return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v)
                for k, v in asdict(self).items()}


# --- enqueue -------------------------------------------------------------------------------------

def _spool_key(message_id: str) -> str:
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


def _recipients(db: Database, settings: Settings, names: set[str]) -> dict[str, Recipient]:
    """Recipients by name, from the database (ids, verified filters, key on file); recipients
    only in the configuration file are imported first (idempotent)."""
    from herald.constituency import repository

    found = {r.name: r for r in repository.load_recipients(db)}
    if names - found.keys():
        toml_names = {r.name for r in recipients_from_specs(settings.recipients_spec)}
        if (names - found.keys()) & toml_names:
            repository.import_recipients(db, settings.recipients_spec, actor="config")
            found = {r.name: r for r in repository.load_recipients(db)}
    return found


def _merge_toml(r: Recipient, ds: DeliverySettings) -> Recipient:
    """Fill what the database does not keep (the law-enforcement operation) from the TOML table."""
    spec = ds.recipient_options.get(r.name)
    if spec and r.operation is None and spec.get("operation"):
        r.operation = str(spec["operation"])
    return r


def _most_restrictive(labels: list[str]) -> str:
    return max(labels, key=lambda t: TLP_ORDER.index(t) if t in TLP_ORDER else len(TLP_ORDER))


@dataclass
class _Built:
    composed: _compose.Composed
    report_type: str
    tlp: str
    summary_dicts: list[dict]


def _signer(ds: DeliverySettings) -> Signer | None:
    return Signer(ds.pgp) if ds.pgp.enabled else None


def _protect(ds: DeliverySettings, signer: Signer | None, entity: bytes,
             fingerprint: str | None) -> tuple[bytes, str]:
    """``(protected entity, protection)``.

    Raises:
        KeyUnusable: the recipient has a key on file that cannot be used (or PGP is off).
        PgpError: signing failed.
    """
    if fingerprint:
        if signer is None:
            raise KeyUnusable(f"the recipient has OpenPGP key {fingerprint} on file but [pgp] is not "
                              f"configured: not sending unencrypted", fingerprint)
        return signer.sign_encrypt(entity, fingerprint), "encrypted"
    if signer is not None:
        return signer.sign(entity), "signed"
    return entity, "none"


def _build_one(ds: DeliverySettings, r: Recipient, rep: dict,
               day: str) -> tuple[list[_compose.Attachment], _compose.ReportPart]:
    """Attachments and template part of one report of the run summary, read from its file.

    Raises:
        OutboxError: the report file is missing or changed since the run.
        XarfError: an X-ARF document did not validate.
    """
    path = Path(rep["path"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OutboxError(f"report file {path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if rep.get("sha256") and digest != rep["sha256"]:
        raise OutboxError(f"report file {path} changed since the run (SHA-256 {digest} != {rep['sha256']})")
    rtype = default_registry().get(rep["type"])
    return report_part(ds, r, rtype, day, filename=path.name, data=data, sha256=digest,
                       rows=int(rep.get("rows", 0)))


def _compose_for(ds: DeliverySettings, templates: _compose.Templates, r: Recipient,
                 reps: list[dict], day: str, digest: bool) -> _Built:
    tlp = _most_restrictive([str(x.get("tlp") or ds.mail.default_tlp).upper().removeprefix("TLP:")
                             for x in reps])
    parts, atts = [], []
    for rep in sorted(reps, key=lambda x: x["type"]):
        a, p = _build_one(ds, r, rep, day)
        atts += a
        parts.append(p)
    composed = compose_message(ds, templates, r, day, tlp, parts, atts, digest=digest)
    return _Built(composed, "digest" if digest else parts[0].type, tlp, reps)


def _composed_by_run(rep: dict) -> _compose.Composed | None:
    """The message the daily run composed for this report (its outbox ``.eml``: top-level
    headers, then the MIME entity), or ``None`` when the entry names none or the file is gone."""
    if not rep.get("message") or rep.get("message_header_bytes") is None:
        return None
    try:
        data = Path(rep["message"]).read_bytes()
    except OSError:
        return None
    n = int(rep["message_header_bytes"])
    return _compose.Composed(headers=data[:n], entity=data[n:], message_id=rep["message_id"],
                             subject=rep["subject"], rcpt_to=rep["email"],
                             tlp=str(rep["tlp"]).upper().removeprefix("TLP:"))


def _message_id_for(ds: DeliverySettings, r: Recipient, reps: list[dict], day: str, digest: bool) -> str:
    """The ``Message-ID`` a message will get, computed without building it (idempotency check)."""
    domain = _compose.domain_of(ds.mail.sender)
    if digest:
        digests = [f"{x['type']}:{x['sha256']}" for x in sorted(reps, key=lambda x: x["type"])]
        return _compose.message_id(r.slug, "digest", day, hashlib.sha256("|".join(digests).encode()).hexdigest(), domain)
    return _compose.message_id(r.slug, reps[0]["type"], day, reps[0]["sha256"], domain)


def _spool_paths(ds: DeliverySettings, day: str, message_id: str) -> tuple[Path, Path, Path]:
    base = ds.spool / day / _spool_key(message_id)
    return base.with_suffix(".hdr"), base.with_suffix(".entity"), base.with_suffix(".eml")


def _annotate(reps: list[dict], outbox_id: int | None, state: str, reason: str | None) -> None:
    for rep in reps:
        rep["outbox_id"] = outbox_id
        rep["delivery"] = state
        if reason:
            rep["delivery_reason"] = reason
        else:
            rep.pop("delivery_reason", None)


def enqueue_reports(db: Database, settings: Settings, summary_reports: list[dict],
                    day: str, *, recipients: dict[str, Recipient] | None = None) -> list[int]:
    """Queue the messages of a run's reports (``RunSummary.reports``); idempotent.

    One message per report, or one per recipient with ``digest`` (``[mail] digest`` or the
    recipient's ``digest = true``).  Each message is composed (templates, ZIP above
    ``[mail] zip_above``, no attachment above ``[mail] attach_max``, X-ARF for recipients with
    ``xarf = true``), signed with the ``[pgp]`` key
    and encrypted to the recipient's key when one is on file (RFC 3156), spooled, and inserted as
    ``queued`` — or ``held`` when the recipient's key is missing/expired or signing fails.  A
    message whose ``Message-ID`` is already in the outbox is not built again.

    A report whose entry names the message the daily run composed for it (``message``, the outbox
    ``.eml``, with ``message_id``, ``subject`` and ``message_header_bytes``) is queued as those
    bytes: it is not read, hashed or composed again.  Without OpenPGP protection the spooled
    ``.eml`` is a hard link to the outbox ``.eml`` (one artifact).  Only digests and entries
    without a composed message are composed here, with the same builder
    (:mod:`herald.deliver.report_message`).

    Each summary dict gains ``outbox_id``, ``delivery`` (the row's state, or ``error``) and, for held
    messages and errors, ``delivery_reason`` — so the run summary says what happened.

    Args:
        db: the metadata database.
        settings: the configuration (``[smtp]``, ``[pgp]``, ``[mail]``, recipients).
        summary_reports: ``[{recipient, kind, type, rows, path, sha256, message, tlp}]``.
        day: ``YYYY-MM-DD``.
        recipients: the run's recipients by name (loaded once per run); default: load those
            named from the database.

    Returns:
        outbox ids, one per message (new or already queued), in order of first report.

    Raises:
        ConfigError: invalid delivery configuration.
    """
    ds = delivery_settings(settings)
    templates = _compose.Templates(ds.mail.templates)
    names = {r["recipient"] for r in summary_reports}
    by_name = dict(recipients or {})
    if any(by_name.get(n) is None or by_name[n].id is None for n in names):
        by_name = {**_recipients(db, settings, names),
                   **{k: v for k, v in by_name.items() if v.id is not None}}
    groups: dict[tuple[str, str], list[dict]] = {}
    for rep in summary_reports:
        r = by_name.get(rep["recipient"])
        if r is None:
            _annotate([rep], None, "error", "recipient is not in the database (disabled or unknown)")
            continue
        digest = bool(ds.option(r.name, "digest", ds.mail.digest))
        key = (r.name, "digest" if digest else f"{rep['type']}|{rep['path']}")
        groups.setdefault(key, []).append(rep)

    ids: list[int] = []
    signer: Signer | None = None
    signer_error: str | None = None
    if ds.pgp.enabled:
        try:
            signer = _signer(ds)
        except PgpError as exc:
            signer_error = str(exc)
    for (name, gkey), reps in groups.items():
        r = _merge_toml(by_name[name], ds)
        digest = gkey == "digest"
        mid = _message_id_for(ds, r, reps, day, digest)
        existing = _find(db, mid)
        if existing is not None:
            ids.append(existing.id)
            _annotate(reps, existing.id, existing.state,
                      existing.last_error if existing.state == "held" else None)
            continue
        ready = None if digest else _composed_by_run(reps[0])
        try:
            if ready is not None and ready.message_id == mid:
                built = _Built(ready, reps[0]["type"], ready.tlp, reps)
            else:
                built = _compose_for(ds, templates, r, reps, day, digest)
        except (OutboxError, XarfError) as exc:
            _annotate(reps, None, "error", str(exc))
            log.error("cannot build the message for %s: %s", name, exc)
            continue
        c = built.composed
        assert c.message_id == mid, (c.message_id, mid)
        hdr_path, entity_path, eml_path = _spool_paths(ds, day, mid)
        atomic_write(hdr_path, c.headers)
        atomic_write(entity_path, c.entity)
        state, hold_reason, error, protection, sha, path = "queued", None, None, None, None, None
        try:
            if signer_error:
                raise PgpError(signer_error)
            protected, protection = _protect(ds, signer, c.entity, r.pgp_fingerprint)
            if protection == "none" and ready is not None and built.composed is ready:
                # The spooled message is the outbox .eml itself (one artifact, two names).
                sha = link_or_write(Path(reps[0]["message"]), eml_path, c.headers + protected)
            else:
                sha = atomic_write(eml_path, c.headers + protected)
            path = str(eml_path)
        except KeyUnusable as exc:
            state, hold_reason, error, path = "held", "pgp_key", f"held: {exc}", str(entity_path)
        except PgpError as exc:
            state, hold_reason, error, path = "held", "pgp", f"held: {exc}", str(entity_path)
        row = OutboxRow(
            message_id=mid, recipient_id=r.id, state=state, attempts=0,
            envelope_sender=ds.smtp.envelope_sender, path=path, rcpt_to=c.rcpt_to,
            day=date.fromisoformat(day), report_type=built.report_type, subject=c.subject,
            tlp=built.tlp, sha256=sha, protection=protection, hold_reason=hold_reason,
            last_error=error, report_id=_report_id(db, r.id, reps, day, digest))
        try:
            with db.session() as s:
                s.add(row)
                s.flush()
                new_id = row.id
        except IntegrityError:  # a concurrent enqueue of the same message won
            existing = _find(db, mid)
            if existing is None:
                raise
            new_id, state = existing.id, existing.state
        ids.append(new_id)
        _annotate(reps, new_id, state, error)
    return ids


def _find(db: Database, message_id: str) -> OutboxRow | None:
    with db.session() as s:
        return s.scalars(sa.select(OutboxRow).where(OutboxRow.message_id == message_id)).one_or_none()


def _report_id(db: Database, recipient_id: int, reps: list[dict], day: str, digest: bool) -> int | None:
    """The ledger's ``reports`` row of a single-report message, when the run recorded one."""
    if digest or len(reps) != 1:
        return None
    with db.session() as s:
        return s.scalars(sa.select(ReportRow.id).where(
            ReportRow.recipient_id == recipient_id, ReportRow.report_type == reps[0]["type"],
            ReportRow.day == date.fromisoformat(day), ReportRow.sha256 == reps[0]["sha256"])).first()


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
    if attempt.outcome is Outcome.SENT:
        _update(db, oid, ("sending",), state="sent", sent_at=utcnow(), smtp_phase=None,
                smtp_reply=attempt.reply, last_error=None, next_attempt_at=None, hold_reason=None)
        result.sent.append(oid)
    elif attempt.outcome is Outcome.FAILED:
        _update(db, oid, ("sending",), state="failed", smtp_phase=None, smtp_reply=attempt.reply,
                last_error=attempt.describe(), next_attempt_at=None)
        result.failed.append(oid)
    elif attempt.outcome is Outcome.UNKNOWN and ds.smtp.unknown_outcome == "hold":
        _update(db, oid, ("sending",), state="held", smtp_phase=None, smtp_reply=attempt.reply,
                hold_reason="outcome_unknown",
                last_error=_unknown_reason(oid, mid, f"the relay did not answer the end of the "
                                                     f"message data ({attempt.reply})"))
        result.held.append(oid)
    elif attempts >= ds.smtp.max_attempts:
        _update(db, oid, ("sending",), state="failed", smtp_phase=None, smtp_reply=attempt.reply,
                last_error=f"gave up after {attempts} attempts; last: {attempt.describe()}",
                next_attempt_at=None)
        result.failed.append(oid)
    else:
        when = now + timedelta(seconds=_backoff(ds, attempts))
        _update(db, oid, ("sending",), state="queued", smtp_phase=None, smtp_reply=attempt.reply,
                last_error=f"attempt {attempts}: {attempt.describe()}; next attempt "
                           f"{when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
                next_attempt_at=when)
        result.retried.append(oid)


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
        signer = _signer(ds)
    except PgpError as exc:
        signer, err = None, str(exc)
    else:
        err = None
    for oid, mid, day, last_error, fpr in rows:
        hdr_path, entity_path, eml_path = _spool_paths(ds, day.isoformat(), mid)
        try:
            if err:
                raise PgpError(err)
            protected, protection = _protect(ds, signer, entity_path.read_bytes(), fpr)
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
        _rebuild_held(db, ds, result)
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
                    _update(db, oid, ("sending",), state="held", smtp_phase=None,
                            hold_reason="operator", last_error=f"held: {problem or 'no envelope recipient'}")
                    result.held.append(oid)
                    continue

                def mark_eod(oid=oid) -> None:
                    if not _update(db, oid, ("sending",), smtp_phase="eod"):
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


# --- operator view and actions --------------------------------------------------------------------

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
    if not _update(db, oid, ("held",), state="sent", sent_at=utcnow(), hold_reason=None,
                   last_error=f"marked sent by {actor}" + (f": {reason}" if reason else "")):
        raise OutboxError(f"outbox {oid} changed meanwhile; try again")
    audit.record(db, actor, "outbox.mark_sent", "outbox", oid, reason,
                 {"message_id": entry.message_id, "hold_reason": entry.hold_reason})
    return _get(db, oid)

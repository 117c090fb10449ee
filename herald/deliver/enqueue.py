"""Queueing a run's messages in the outbox (``enqueue_reports``); idempotent on ``Message-ID``.

See :mod:`herald.deliver.outbox` for the life of a message and docs/delivery.md ("One message
path"): messages the daily run composed are queued as they are; digests, and reports handed over
without a composed message, are composed here with :mod:`herald.deliver.report_message`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from herald.config import Settings
from herald.constituency.recipients import Recipient, recipients_from_specs
from herald.deliver import compose as _compose
from herald.deliver import envelope
from herald.deliver.pgp import KeyUnusable, PgpError, Signer
from herald.deliver.report_message import compose_message, report_part
from herald.deliver.settings import DeliverySettings, delivery_settings
from herald.deliver.spool import OutboxError, protect, signer_for, spool_paths
from herald.deliver.xarf import XarfError
from herald.fsutil import atomic_write, link_or_write
from herald.schema.registry import default_registry
from herald.store.db import Database, OutboxRow, ReportRow, utcnow

log = logging.getLogger(__name__)

TLP_ORDER = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")


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
    ``queued`` — or ``held`` when the recipient's key is missing/expired or signing fails — with
    one ``outbox_addresses`` row per address of its ``To`` (:mod:`herald.deliver.envelope`: an
    abuse-mailbox list gets one message and several envelope addresses).  A message whose
    ``Message-ID`` is already in the outbox is not built again.

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
            signer = signer_for(ds)
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
        hdr_path, entity_path, eml_path = spool_paths(ds, day, mid)
        atomic_write(hdr_path, c.headers)
        atomic_write(entity_path, c.entity)
        state, hold_reason, error, protection, sha, path = "queued", None, None, None, None, None
        try:
            if signer_error:
                raise PgpError(signer_error)
            protected, protection = protect(ds, signer, c.entity, r.pgp_fingerprint)
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
                # One row per envelope address (an abuse-mailbox list has several).
                s.add_all(envelope.new_rows(row.id, c.rcpt_to, utcnow()))
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

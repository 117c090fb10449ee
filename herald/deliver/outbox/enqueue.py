"""Enqueue: one outbox row (and spooled message) per report or digest of a run, idempotent by
``Message-ID`` (see :mod:`herald.deliver.outbox`)."""

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
from herald.deliver.outbox.results import OutboxError
from herald.deliver.outbox.spool import protect, signer_for, spool_paths
from herald.deliver.pgp import KeyUnusable, PgpError, Signer
from herald.deliver.settings import DeliverySettings, delivery_settings
from herald.deliver.xarf import XarfError, reports_for_csv, to_jsonl
from herald.reports.render import atomic_write
from herald.schema.registry import default_registry
from herald.store.db import Database, OutboxRow, ReportRow

#: The outbox modules log as one logger, ``herald.deliver.outbox``.
log = logging.getLogger("herald.deliver.outbox")


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


def _build_one(ds: DeliverySettings, templates: _compose.Templates, r: Recipient, rep: dict,
               day: str) -> tuple[list[_compose.Attachment], _compose.ReportPart, bytes]:
    """Attachments and template part of one report of the run summary.

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
    # Above [mail] attach_max the report is named in the body, not attached (nor its X-ARF
    # version, which is larger still).
    att, zipped = _compose.report_attachment(path.name, data, day, ds.mail.zip_above,
                                             ds.mail.attach_max)
    atts = [att] if att else []
    xname, xcount = None, 0
    if att is not None and ds.option(r.name, "xarf", False):
        docs = reports_for_csv(rtype, data, recipient_slug=r.slug, reporter_org=ds.mail.reporter_org,
                               contact=ds.mail.sender, day=day)
        stem = path.name.removesuffix(".csv")
        xatt, _ = _compose.report_attachment(f"{stem}.xarf.jsonl", to_jsonl(docs), day,
                                             ds.mail.zip_above, ds.mail.attach_max,
                                             "application", "x-ndjson")
        if xatt is not None:
            atts.append(xatt)
            xname, xcount = xatt.filename, len(docs)
    part = _compose.ReportPart(type=rtype.name, title=_compose.report_title(rtype.title),
                               rows=int(rep.get("rows", 0)),
                               filename=att.filename if att else path.name, zipped=zipped,
                               url=rtype.url, sha256=digest, xarf=xname, xarf_count=xcount,
                               attached=att is not None, size=len(data))
    return atts, part, data


def _compose_for(ds: DeliverySettings, templates: _compose.Templates, r: Recipient,
                 reps: list[dict], day: str, digest: bool) -> _Built:
    language = str(ds.option(r.name, "language", ds.mail.language))
    tlp = _most_restrictive([str(x.get("tlp") or ds.mail.default_tlp).upper().removeprefix("TLP:")
                             for x in reps])
    parts, atts, digests = [], [], []
    for rep in sorted(reps, key=lambda x: x["type"]):
        a, p, _ = _build_one(ds, templates, r, rep, day)
        atts += a
        parts.append(p)
        digests.append(f"{p.type}:{p.sha256}")
    if digest:
        key, content = "digest", hashlib.sha256("|".join(digests).encode()).hexdigest()
        template, rtype_name = "digest", "digest"
    else:
        key, content, template, rtype_name = parts[0].type, parts[0].sha256, "report", parts[0].type
    spec = _compose.MessageSpec(
        recipient=r, day=day, tlp=tlp, sender=ds.mail.sender, template=template, key=key,
        content_sha256=content, reports=parts, attachments=atts, language=language,
        unsubscribe_url=ds.mail.unsubscribe_url, unsubscribe_mailto=ds.mail.unsubscribe_mailto)
    return _Built(_compose.compose(spec, templates), rtype_name, tlp, reps)


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
                    day: str) -> list[int]:
    """Queue the messages of a run's reports (``RunSummary.reports``); idempotent.

    One message per report, or one per recipient with ``digest`` (``[mail] digest`` or the
    recipient's ``digest = true``).  Each message is composed (templates, ZIP above
    ``[mail] zip_above``, no attachment above ``[mail] attach_max``, X-ARF for recipients with
    ``xarf = true``), signed with the ``[pgp]`` key
    and encrypted to the recipient's key when one is on file (RFC 3156), spooled, and inserted as
    ``queued`` — or ``held`` when the recipient's key is missing/expired or signing fails.  A
    message whose ``Message-ID`` is already in the outbox is not built again.

    Each summary dict gains ``outbox_id``, ``delivery`` (the row's state, or ``error``) and, for held
    messages and errors, ``delivery_reason`` — so the run summary says what happened.

    Args:
        db: the metadata database.
        settings: the configuration (``[smtp]``, ``[pgp]``, ``[mail]``, recipients).
        summary_reports: ``[{recipient, kind, type, rows, path, sha256, message, tlp}]``.
        day: ``YYYY-MM-DD``.

    Returns:
        outbox ids, one per message (new or already queued), in order of first report.

    Raises:
        ConfigError: invalid delivery configuration.
    """
    ds = delivery_settings(settings)
    templates = _compose.Templates(ds.mail.templates)
    by_name = _recipients(db, settings, {r["recipient"] for r in summary_reports})
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
        try:
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
            data = c.headers + protected
            sha = atomic_write(eml_path, data)
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


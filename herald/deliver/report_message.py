"""The message of reports: the one builder of what a recipient is sent.

:func:`report_part` turns one report (CSV bytes, or only its size and SHA-256 when it is too large
to attach) into its attachments and its :class:`~herald.deliver.compose.ReportPart`;
:func:`compose_message` composes a message of one or more parts (one report, or a recipient's daily
digest).  The daily run's message workers compose each report's message with
:func:`compose_report_message` exactly once; the outbox (:func:`herald.deliver.outbox.enqueue_reports`)
queues those composed bytes, and composes with the same functions only what the run did not
(digests, and reports handed to it without a composed message).
"""

from __future__ import annotations

import hashlib

from herald.constituency.recipients import Recipient
from herald.deliver import compose as _compose
from herald.deliver.settings import DeliverySettings
from herald.deliver.xarf import reports_for_csv, to_jsonl
from herald.schema.registry import ReportType


def report_part(ds: DeliverySettings, recipient: Recipient, rtype: ReportType, day: str, *,
                filename: str, data: bytes, sha256: str, rows: int, size: int | None = None
                ) -> tuple[list[_compose.Attachment], _compose.ReportPart]:
    """Attachments and template part of one report.

    The CSV is attached (zipped above ``[mail] zip_above``) unless it is larger than
    ``[mail] attach_max`` bytes or the recipient is not sent attachments (``attach = false``,
    :meth:`DeliverySettings.attaches`): then the body names it (size, SHA-256) and ``data`` may
    be ``b""`` (the caller passes ``size``).  Recipients with ``xarf = true`` also get the X-ARF
    version of an attached report.

    Args:
        filename: the CSV's file name.
        data: its bytes (``b""`` allowed above ``attach_max`` when ``size`` is given).
        sha256: hex SHA-256 of the CSV.
        rows: events in it.
        size: its size in bytes (default ``len(data)``).

    Raises:
        herald.deliver.xarf.XarfError: an X-ARF document did not validate.
    """
    size = len(data) if size is None else size
    if not ds.attaches(recipient, size):
        att, zipped = None, False
    else:
        att, zipped = _compose.report_attachment(filename, data, day, ds.mail.zip_above,
                                                 ds.mail.attach_max)
    atts = [att] if att else []
    xname, xcount = None, 0
    if att is not None and ds.option(recipient.name, "xarf", False):
        docs = reports_for_csv(rtype, data, recipient_slug=recipient.slug,
                               reporter_org=ds.mail.reporter_org, contact=ds.mail.sender, day=day)
        stem = filename.removesuffix(".csv")
        xatt, _ = _compose.report_attachment(f"{stem}.xarf.jsonl", to_jsonl(docs), day,
                                             ds.mail.zip_above, ds.mail.attach_max,
                                             "application", "x-ndjson")
        if xatt is not None:
            atts.append(xatt)
            xname, xcount = xatt.filename, len(docs)
    part = _compose.ReportPart(type=rtype.name, title=_compose.report_title(rtype.title), rows=rows,
                               filename=att.filename if att else filename, zipped=zipped,
                               url=rtype.url, sha256=sha256, xarf=xname, xarf_count=xcount,
                               attached=att is not None, size=size,
                               too_large=size > ds.mail.attach_max)
    return atts, part


def compose_message(ds: DeliverySettings, templates: _compose.Templates, recipient: Recipient,
                    day: str, tlp: str, parts: list[_compose.ReportPart],
                    attachments: list[_compose.Attachment], *, digest: bool = False
                    ) -> _compose.Composed:
    """The composed, unprotected message of ``parts`` for ``recipient``.

    One report (``digest=False``): template ``report``, ``Message-ID`` from the type and the
    report's SHA-256.  A digest: template ``digest``, ``Message-ID`` from the SHA-256 of the parts'
    ``type:sha256`` list.  Language: the recipient's ``language`` option, else ``[mail] language``.
    """
    if digest:
        digests = "|".join(f"{p.type}:{p.sha256}" for p in parts)
        key, content, template = "digest", hashlib.sha256(digests.encode()).hexdigest(), "digest"
    else:
        key, content, template = parts[0].type, parts[0].sha256, "report"
    spec = _compose.MessageSpec(
        recipient=recipient, day=day, tlp=tlp, sender=ds.mail.sender, template=template, key=key,
        content_sha256=content, reports=parts, attachments=attachments,
        language=str(ds.option(recipient.name, "language", ds.mail.language)),
        unsubscribe_url=ds.mail.unsubscribe_url, unsubscribe_mailto=ds.mail.unsubscribe_mailto)
    return _compose.compose(spec, templates)


def compose_report_message(ds: DeliverySettings, templates: _compose.Templates,
                           recipient: Recipient, rtype: ReportType, day: str, tlp: str, *,
                           filename: str, data: bytes, sha256: str, rows: int,
                           size: int | None = None) -> _compose.Composed:
    """The message of one report (:func:`report_part` then :func:`compose_message`).

    Raises:
        herald.deliver.xarf.XarfError: an X-ARF document did not validate.
    """
    atts, part = report_part(ds, recipient, rtype, day, filename=filename, data=data,
                             sha256=sha256, rows=rows, size=size)
    return compose_message(ds, templates, recipient, day, tlp, [part], atts)

"""Ready-to-send report messages (``.eml``, RFC 5322 with a MIME attachment, RFC 2045/2183).

The daily run writes one message per report into the outbox folder, for inspection and for sites
without an SMTP relay::

    <outbox>/YYYY-MM-DD/<recipient slug>/<report file name>.eml

A report larger than ``attach_max`` bytes (``[mail] attach_max``, default 10 MiB) is not attached:
the body names the file, its size and SHA-256 and points to the Reports API and the portal.

The daily run composes them with :mod:`herald.deliver.report_message` (see
:mod:`herald.deliver.messages`), and they are the very messages :mod:`herald.deliver.outbox`
queues for SMTP (before OpenPGP protection).  :func:`compose_report` and :func:`build_message`
here compose one report's message from explicit options (tools, tests, benchmarks).  They are deterministic (``Date`` is the report day, the
``Message-ID`` is derived from the report's identity and content), so a re-run writes
byte-identical files.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from herald.constituency.recipients import Recipient
from herald.deliver import compose as _compose
from herald.schema.registry import ReportType

#: Attachments above this many bytes are zipped by default (``[mail] zip_above``).
DEFAULT_ZIP_ABOVE = 1 << 20
#: Reports above this many bytes (CSV) are not attached by default (``[mail] attach_max``).
DEFAULT_ATTACH_MAX = 10 << 20


def subject(rtype: ReportType, day: str, tlp: str, recipient: Recipient | None = None) -> str:
    """``[Herald] <Area> <Report Name> Report <date> [TLP:<label>]`` (Shadowserver's subject shape;
    the area is the recipient's filter area, e.g. ``AS64496``)."""
    area = _compose.area(recipient) if recipient is not None else ""
    return _compose.subject(area, _compose.report_title(rtype.title), day, tlp).replace("  ", " ")


def message_id(recipient: Recipient, rtype: ReportType, day: str, sha256: str, domain: str) -> str:
    """Deterministic ``Message-ID`` (RFC 5322 section 3.6.4) of one report message."""
    return _compose.message_id(recipient.slug, rtype.name, day, sha256, domain)


def compose_report(recipient: Recipient, rtype: ReportType, day: str, rows: int, filename: str,
                   data: bytes, sha256: str, sender: str, tlp: str, *,
                   zip_above: int = DEFAULT_ZIP_ABOVE, attach_max: int = DEFAULT_ATTACH_MAX,
                   templates: _compose.Templates | None = None,
                   language: str = "en", extra: list[_compose.Attachment] | None = None,
                   xarf_name: str | None = None, xarf_count: int = 0,
                   unsubscribe_url: str | None = None,
                   unsubscribe_mailto: str | None = None,
                   size: int | None = None) -> _compose.Composed:
    """The composed (unprotected) message of one report; see :func:`build_message`.

    ``zip_above`` and ``attach_max`` are bytes of the CSV ``data``: above ``zip_above`` it is
    attached as a ZIP archive, above ``attach_max`` it is not attached at all and the body says
    where to download it (``extra`` attachments are attached as given).  ``size`` is the CSV's
    size in bytes when the caller knows it: a report above ``attach_max`` then needs no ``data``
    (pass ``b""``), the daily run does not read large reports back for their messages.
    """
    if size is not None and size > attach_max:
        att, zipped = None, False
    else:
        att, zipped = _compose.report_attachment(filename, data, day, zip_above, attach_max)
    part = _compose.ReportPart(type=rtype.name, title=_compose.report_title(rtype.title), rows=rows,
                               filename=att.filename if att else filename, zipped=zipped,
                               url=rtype.url, sha256=sha256, xarf=xarf_name, xarf_count=xarf_count,
                               attached=att is not None, size=len(data) if size is None else size)
    spec = _compose.MessageSpec(
        recipient=recipient, day=day, tlp=tlp, sender=sender, template="report", key=rtype.name,
        content_sha256=sha256, reports=[part], attachments=([att] if att else []) + list(extra or []),
        language=language, unsubscribe_url=unsubscribe_url, unsubscribe_mailto=unsubscribe_mailto)
    return _compose.compose(spec, templates or _default_templates())


_TEMPLATES: _compose.Templates | None = None


def _default_templates() -> _compose.Templates:
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _compose.Templates()
    return _TEMPLATES


def build_message(recipient: Recipient, rtype: ReportType, day: str, rows: int, filename: str,
                  data: bytes, sha256: str, sender: str, tlp: str, *,
                  zip_above: int = DEFAULT_ZIP_ABOVE, attach_max: int = DEFAULT_ATTACH_MAX,
                  templates_dir: Path | None = None) -> EmailMessage:
    """The message for one report (unsigned; the outbox signs/encrypts its own copy).

    Args:
        recipient: who receives it.
        rtype: the report type.
        day: ``YYYY-MM-DD``.
        rows: number of events in the report.
        filename: the attachment's file name.
        data: the report bytes (CSV).
        sha256: hex digest of ``data``.
        sender: ``From`` address.
        tlp: TLP 2.0 label without the ``TLP:`` prefix.
        zip_above: attach as ZIP when ``data`` is larger (bytes).
        attach_max: do not attach ``data`` when it is larger (bytes); the body then names the
            file, its size and SHA-256, and says to download it from the Reports API or portal.
        templates_dir: the operator's template directory, if any.

    Returns:
        an :class:`email.message.EmailMessage` whose ``as_bytes()`` round-trips the composed bytes.
    """
    templates = _compose.Templates(templates_dir) if templates_dir else None
    composed = compose_report(recipient, rtype, day, rows, filename, data, sha256, sender, tlp,
                              zip_above=zip_above, attach_max=attach_max, templates=templates)
    return BytesParser(policy=policy.default).parsebytes(composed.as_bytes())

"""Ready-to-send report messages (``.eml``, RFC 5322 with a MIME attachment, RFC 2045/2183).

The daily run writes one message per report into the outbox folder, for inspection and for sites
without an SMTP relay::

    <outbox>/YYYY-MM-DD/<recipient slug>/<report file name>.eml

A report larger than ``attach_max`` bytes (``[mail] attach_max``, default 10 MiB) is not attached:
the body names the file, its size and SHA-256 and points to the Reports API and the portal.

There is one message builder, :mod:`herald.deliver.report_message`: the daily run composes each
report's message with it (see :mod:`herald.deliver.messages`), and those are the very messages
:mod:`herald.deliver.outbox` queues for SMTP (before OpenPGP protection).  :func:`compose_report`
here is a convenience for tools, tests and benchmarks: the same builder, with explicit options
instead of a configuration.  Messages are deterministic (``Date`` is the report day, the
``Message-ID`` is derived from the report's identity and content), so a re-run writes
byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

from herald.constituency.recipients import Recipient
from herald.deliver import compose as _compose
from herald.deliver.report_message import compose_message, report_part
from herald.deliver.settings import DeliverySettings, MailSettings, PgpSettings, SmtpSettings
from herald.schema.registry import ReportType

#: Attachments above this many bytes are zipped by default (``[mail] zip_above``).
DEFAULT_ZIP_ABOVE = MailSettings.zip_above
#: Reports above this many bytes (CSV) are not attached by default (``[mail] attach_max``).
DEFAULT_ATTACH_MAX = MailSettings.attach_max


def compose_report(recipient: Recipient, rtype: ReportType, day: str, rows: int, filename: str,
                   data: bytes, sha256: str, sender: str, tlp: str, *,
                   zip_above: int = DEFAULT_ZIP_ABOVE, attach_max: int = DEFAULT_ATTACH_MAX,
                   templates: _compose.Templates | None = None,
                   language: str = "en", extra: list[_compose.Attachment] | None = None,
                   unsubscribe_url: str | None = None,
                   unsubscribe_mailto: str | None = None,
                   size: int | None = None) -> _compose.Composed:
    """The composed (unprotected) message of one report, built by
    :func:`herald.deliver.report_message.report_part` and
    :func:`~herald.deliver.report_message.compose_message` from these options.

    ``zip_above`` and ``attach_max`` are bytes of the CSV ``data``: above ``zip_above`` it is
    attached as a ZIP archive, above ``attach_max`` it is not attached at all and the body says
    where to download it (``extra`` attachments are attached as given, after the report).
    ``size`` is the CSV's size in bytes when the caller knows it: a report above ``attach_max``
    then needs no ``data`` (pass ``b""``).  No X-ARF attachment (that is a per-recipient option
    of the configuration).
    """
    mail = MailSettings(sender=sender, zip_above=zip_above, attach_max=attach_max,
                        language=language, unsubscribe_url=unsubscribe_url,
                        unsubscribe_mailto=unsubscribe_mailto)
    ds = DeliverySettings(smtp=SmtpSettings(), pgp=PgpSettings(), mail=mail, spool=Path())
    atts, part = report_part(ds, recipient, rtype, day, filename=filename, data=data,
                             sha256=sha256, rows=rows, size=size)
    return compose_message(ds, templates or _default_templates(), recipient, day, tlp, [part],
                           atts + list(extra or []))


_TEMPLATES: _compose.Templates | None = None


def _default_templates() -> _compose.Templates:
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _compose.Templates()
    return _TEMPLATES

"""Ready-to-send report messages (``.eml``, RFC 5322 with a MIME attachment, RFC 2045/2183).

With no SMTP relay configured, the daily run writes one message per report into the outbox folder::

    <outbox>/YYYY-MM-DD/<recipient slug>/<report file name>.eml

Each message carries the report as an attachment and a plain-text body saying what the report is,
how many events it holds, the date and the TLP label.  Messages are deterministic (the
``Message-ID`` is derived from the report's identity and content, ``Date`` is the report day), so a
re-run writes byte-identical files and a later sender can use the ``Message-ID`` as its idempotency
key.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone

from herald.constituency.recipients import Recipient
from herald.schema.registry import ReportType

_BODY = """\
Dear {name},

attached is Herald's {title} report for {day} (report type "{rtype}").
It lists {rows} event(s) observed on networks you are responsible for
(your filters: {filters}).

Report type documentation: {url}

TLP:{tlp}. The attached data concerns infected or exposed machines and contains
IP addresses, which are personal data. Use it only to remedy the problems it
describes, and share it only as TLP:{tlp} permits (FIRST TLP 2.0).

-- 
Herald
This message was generated automatically.
"""


def subject(rtype: ReportType, day: str, tlp: str) -> str:
    """``[Herald] <Report Name> Report <date> [TLP:<label>]`` (Shadowserver's subject shape)."""
    return f"[Herald] {rtype.title} Report {day} [TLP:{tlp}]"


def message_id(recipient: Recipient, rtype: ReportType, day: str, sha256: str, domain: str) -> str:
    """Deterministic ``Message-ID`` (RFC 5322 section 3.6.4) of one report message."""
    h = hashlib.sha256(f"{recipient.slug}|{rtype.name}|{day}|{sha256}".encode()).hexdigest()[:32]
    return f"<{day}.{rtype.name}.{h}@{domain}>"


def build_message(recipient: Recipient, rtype: ReportType, day: str, rows: int, filename: str,
                  data: bytes, sha256: str, sender: str, tlp: str) -> EmailMessage:
    """The message for one report.

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
    """
    filters = ", ".join(
        part for part in (
            "ASNs " + " ".join(f"AS{a}" for a in recipient.asns) if recipient.asns else "",
            "networks " + " ".join(str(c) for c in recipient.cidrs) if recipient.cidrs else "",
            "countries " + " ".join(recipient.countries) if recipient.countries else "",
        ) if part
    ) or "none"
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient.email
    msg["Subject"] = subject(rtype, day, tlp)
    msg["Date"] = format_datetime(datetime.fromisoformat(day).replace(tzinfo=timezone.utc))
    msg["Message-ID"] = message_id(recipient, rtype, day, sha256, sender.rpartition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Herald-Report-Type"] = rtype.name
    msg["X-Herald-TLP"] = f"TLP:{tlp}"
    msg.set_content(_BODY.format(name=recipient.name, title=rtype.title, day=day, rtype=rtype.name,
                                 rows=rows, filters=filters, url=rtype.url or "n/a", tlp=tlp))
    msg.add_attachment(data, maintype="text", subtype="csv", filename=filename)
    return msg

"""Compose report messages: headers (RFC 5322), MIME body (RFC 2045/2046/2183), templates.

A message is kept as two byte strings so that OpenPGP (RFC 3156) can protect the body without
re-serialising anything:

- ``headers``: the top-level header block (``From`` ... ``MIME-Version``), CRLF line endings, without
  the empty line that ends it;
- ``entity``: the MIME entity that is the message content, *with* its own ``Content-*`` headers, in
  canonical form (CRLF line endings, 7-bit: quoted-printable text, base64 attachments), exactly the
  bytes a PGP/MIME signature covers.

``headers + entity`` is a complete message.  Everything is deterministic: the same report, recipient
and settings give the same bytes (``Date`` is the report day, ``Message-ID`` is derived from the
report's identity and content, ZIP entries carry a fixed time), so a re-run of a day produces the
same messages and the ``Message-ID`` works as the outbox's idempotency key.

Bodies come from Jinja2 templates (:func:`render_body`): an operator's template directory
(``[mail] templates``) is searched before the built-in ``herald/templates/mail``; in each, the
most specific of ``<lang>/<kind>/<name>.txt.j2``, ``<lang>/<name>.txt.j2``, ``en/<kind>/...``,
``en/<name>.txt.j2`` wins.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.message import MIMEPart
from email.generator import BytesGenerator
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

import jinja2

from herald.constituency.recipients import Recipient

#: The built-in templates (English).
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "mail"

_POLICY = policy.SMTP  # CRLF line endings, RFC 2047 encoded words for non-ASCII headers


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message."""

    filename: str
    data: bytes
    maintype: str = "text"
    subtype: str = "csv"


@dataclass
class ReportPart:
    """One report of a message, as the templates see it.

    Attributes:
        type: report-type name (``scan_http``).
        title: human title (``Accessible HTTP``).
        rows: number of events.
        filename: attachment file name (``.zip`` when zipped).
        zipped: the CSV was compressed (larger than ``[mail] zip_above``).
        url: documentation of the report type, or ``None``.
        sha256: hex SHA-256 of the CSV.
        xarf: file name of the X-ARF attachment, or ``None``.
        xarf_count: number of X-ARF reports in it.
    """

    type: str
    title: str
    rows: int
    filename: str
    zipped: bool = False
    url: str | None = None
    sha256: str = ""
    xarf: str | None = None
    xarf_count: int = 0


@dataclass(frozen=True)
class Composed:
    """A composed, unprotected message (see the module docstring)."""

    headers: bytes
    entity: bytes
    message_id: str
    subject: str
    rcpt_to: str
    tlp: str

    def as_bytes(self) -> bytes:
        """The complete message (RFC 5322), CRLF line endings."""
        return self.headers + self.entity


def report_title(title: str) -> str:
    """Shadowserver's titles with spaces for hyphens: ``Sinkhole-Events IPv4`` -> ``Sinkhole Events IPv4``."""
    return title.replace("-", " ")


def area(recipient: Recipient) -> str:
    """The recipient's filter area for the subject: ``AS64496``, ``AT``, ``192.0.2.0/24``.

    Several values are joined with ``,``; more than three are shortened to the first three and
    ``+N``.  A recipient without network filters is named by its slug.
    """
    values = ([f"AS{a}" for a in recipient.asns] + [str(c) for c in recipient.cidrs]
              + list(recipient.countries))
    if not values:
        return recipient.slug
    if len(values) > 3:
        return ",".join(values[:3]) + f",+{len(values) - 3}"
    return ",".join(values)


def subject(area_: str, name: str, day: str, tlp: str) -> str:
    """``[Herald] <Area> <Report Name> Report <date> [TLP:<label>]`` (Shadowserver's shape, plus
    the TLP label, FIRST TLP 2.0)."""
    return f"[Herald] {area_} {name} Report {day} [TLP:{tlp}]"


def message_id(recipient_slug: str, key: str, day: str, sha256: str, domain: str) -> str:
    """Deterministic ``Message-ID`` (RFC 5322 section 3.6.4) of one report message.

    ``key`` is the report type (or ``digest``), ``sha256`` the content digest; the same report to the
    same recipient always gets the same identifier.
    """
    h = hashlib.sha256(f"{recipient_slug}|{key}|{day}|{sha256}".encode()).hexdigest()[:32]
    return f"<{day}.{key}.{h}@{domain}>"


def domain_of(address: str) -> str:
    """The domain of an e-mail address, ``localhost`` when it has none."""
    return address.rpartition("@")[2] or "localhost"


def deterministic_zip(filename: str, data: bytes, day: str) -> bytes:
    """A ZIP archive holding ``data`` as ``filename``, byte-identical for the same input (the entry
    time is the report day, 00:00)."""
    buf = io.BytesIO()
    y, m, d = (int(x) for x in day.split("-"))
    info = zipfile.ZipInfo(filename, date_time=(y, m, d, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


def maybe_zip(filename: str, data: bytes, day: str, zip_above: int,
              maintype: str = "text", subtype: str = "csv") -> tuple[Attachment, bool]:
    """``(attachment, zipped)``: ``data`` as is, or as ``<filename>.zip`` when larger than
    ``zip_above`` bytes."""
    if len(data) > zip_above:
        return Attachment(filename + ".zip", deterministic_zip(filename, data, day),
                          "application", "zip"), True
    return Attachment(filename, data, maintype, subtype), False


class Templates:
    """Body templates: the operator's directory first, then the built-in ones.

    Args:
        override: the operator's template directory (``[mail] templates``), or ``None``.
    """

    def __init__(self, override: Path | None = None) -> None:
        loaders: dict[str, jinja2.BaseLoader] = {"builtin": jinja2.FileSystemLoader(str(TEMPLATE_DIR))}
        self.prefixes = ["builtin"]
        if override is not None:
            loaders["site"] = jinja2.FileSystemLoader(str(override))
            self.prefixes = ["site", "builtin"]
        self.env = jinja2.Environment(
            loader=jinja2.PrefixLoader(loaders), autoescape=False, keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def candidates(self, name: str, kind: str, language: str) -> list[str]:
        """Template names tried, most specific first."""
        names = []
        for lang in dict.fromkeys([language, "en"]):
            names += [f"{lang}/{kind}/{name}.txt.j2", f"{lang}/{name}.txt.j2"]
        return [f"{p}/{n}" for p in self.prefixes for n in names]

    def render(self, template: str, kind: str, language: str, /, **context) -> str:
        """Render ``template`` (``report`` or ``digest``) for a recipient kind and language.

        Raises:
            jinja2.TemplateNotFound: no candidate exists.
            jinja2.UndefinedError: a template uses a variable that is not provided.
        """
        return self.env.select_template(self.candidates(template, kind, language)).render(**context)


def _filters_text(r: Recipient) -> str:
    return ", ".join(part for part in (
        "ASNs " + " ".join(f"AS{a}" for a in r.asns) if r.asns else "",
        "networks " + " ".join(str(c) for c in r.cidrs) if r.cidrs else "",
        "countries " + " ".join(r.countries) if r.countries else "",
    ) if part) or "none"


@dataclass
class MessageSpec:
    """What a message says: recipient, day, TLP, reports and attachments.

    Attributes:
        template: ``report`` (one report) or ``digest`` (all of a recipient's reports of a day).
        key: report type, or ``digest`` — part of the ``Message-ID``.
        content_sha256: the content digest the ``Message-ID`` is derived from.
    """

    recipient: Recipient
    day: str
    tlp: str
    sender: str
    template: str
    key: str
    content_sha256: str
    reports: list[ReportPart] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    language: str = "en"
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None


def unsubscribe_targets(spec: MessageSpec) -> tuple[str, str | None]:
    """``(List-Unsubscribe header value, https URL or None)`` (RFC 2369, RFC 8058).

    The mailto target is ``[mail] unsubscribe_mailto`` or the sender, with the recipient's slug in
    the subject; the https URL (``[mail] unsubscribe_url``, ``{slug}`` replaced) is listed first.
    """
    slug = spec.recipient.slug
    mailto = spec.unsubscribe_mailto or spec.sender
    targets = [f"<mailto:{mailto}?subject={quote('unsubscribe ' + slug)}>"]
    url = spec.unsubscribe_url.replace("{slug}", quote(slug)) if spec.unsubscribe_url else None
    if url:
        targets.insert(0, f"<{url}>")
    return ", ".join(targets), url


def compose(spec: MessageSpec, templates: Templates) -> Composed:
    """Build the message of ``spec``: headers and canonical MIME entity.

    Headers: ``From``, ``To``, ``Subject`` (with the TLP label), ``Date`` (the report day),
    ``Message-ID``, ``Auto-Submitted: auto-generated`` (RFC 3834), ``List-Id`` (RFC 2919),
    ``List-Unsubscribe`` (RFC 2369) and, with an https target, ``List-Unsubscribe-Post`` (RFC 8058),
    ``X-Herald-*`` and ``MIME-Version``.
    """
    r = spec.recipient
    area_ = area(r)
    if spec.template == "digest":
        subj = subject(area_, "Daily Digest", spec.day, spec.tlp)
    else:
        subj = subject(area_, spec.reports[0].title, spec.day, spec.tlp)
    unsub_header, unsub_url = unsubscribe_targets(spec)
    mid = message_id(r.slug, spec.key, spec.day, spec.content_sha256, domain_of(spec.sender))
    body = templates.render(
        spec.template, r.kind, spec.language,
        recipient=r, name=r.name, kind=r.kind, area=area_, day=spec.day, tlp=spec.tlp,
        reports=spec.reports, report=spec.reports[0] if spec.reports else None,
        filters=_filters_text(r), operation=r.operation, sender=spec.sender,
        unsubscribe_url=unsub_url or f"mailto:{spec.unsubscribe_mailto or spec.sender}",
        message_id=mid, subject=subj)
    entity = MIMEPart(policy=_POLICY)
    entity.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    for att in spec.attachments:
        entity.add_attachment(att.data, maintype=att.maintype, subtype=att.subtype,
                              filename=att.filename, cte="base64")
    if entity.is_multipart():
        # Python picks a random boundary; a content-derived one keeps messages byte-identical.
        h = hashlib.sha256(body.encode())
        for att in spec.attachments:
            h.update(att.filename.encode() + b"\0" + att.data)
        entity.set_boundary(f"=_herald-mixed-{h.hexdigest()[:24]}")
    entity_bytes = _generate(entity)

    day_dt = datetime.fromisoformat(spec.day).replace(tzinfo=timezone.utc)
    hdrs = [
        ("From", spec.sender),
        ("To", r.email),
        ("Subject", subj),
        ("Date", format_datetime(day_dt)),
        ("Message-ID", mid),
        ("Auto-Submitted", "auto-generated"),
        ("List-Id", f"Herald reports for {r.slug} <{r.slug}.reports.{domain_of(spec.sender)}>"),
        ("List-Unsubscribe", unsub_header),
    ]
    if unsub_url:
        hdrs.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    hdrs += [
        ("X-Herald-Report-Type", ", ".join(p.type for p in spec.reports)),
        ("X-Herald-TLP", f"TLP:{spec.tlp}"),
        ("MIME-Version", "1.0"),
    ]
    return Composed(headers=fold_headers(hdrs), entity=entity_bytes, message_id=mid, subject=subj,
                    rcpt_to=r.email, tlp=spec.tlp)


def fold_headers(headers: list[tuple[str, str]]) -> bytes:
    """Header fields folded and encoded for SMTP (RFC 5322 section 2.2.3, RFC 2047), CRLF endings."""
    # Folding at 78 characters would move long values (List-Unsubscribe, Message-ID) to a
    # continuation line; RFC 5322 section 2.1.1 allows up to 998, which keeps them on one line.
    pol = _POLICY.clone(max_line_length=998)
    return b"".join(pol.fold_binary(name, value) for name, value in headers)


def _generate(part: MIMEPart) -> bytes:
    buf = io.BytesIO()
    BytesGenerator(buf, policy=_POLICY, mangle_from_=False).flatten(part)
    return buf.getvalue()


def generate_entity(part: MIMEPart) -> bytes:
    """A MIME part serialised in canonical form (CRLF, as :data:`email.policy.SMTP`)."""
    return _generate(part)

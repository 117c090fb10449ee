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

The entity is written directly as bytes (:func:`build_entity`, in :mod:`herald.deliver.mime`, whose
names are re-exported here), not through the email package's generator; the email package is
still used for the rare header values the fast path does not cover (non-ASCII or over-long
values, RFC 2047 and RFC 5322 section 2.2.3).  Header fields that are the same for all of a
recipient's messages are formatted once per recipient (:func:`compose`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

import jinja2

from herald.constituency.recipients import Recipient
from herald.deliver.mime import (  # noqa: F401  (re-exported: the entity is part of composing)
    B64_LINE, MAX_LINE, QP_LINE, Attachment, attachment_headers, build_entity, encode_base64_lines,
    encode_text_body, mixed_boundary)

#: The built-in templates (English).
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "mail"

_POLICY = policy.SMTP  # CRLF line endings, RFC 2047 encoded words for non-ASCII headers


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
        attached: ``False`` when the CSV is not attached: larger than ``[mail] attach_max``, or
            the recipient's ``attach`` option is false (the body then names the file, its size
            and SHA-256 and where to download it).
        size: size of the CSV in bytes.
        too_large: not attached because it is larger than ``[mail] attach_max``.
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
    attached: bool = True
    size: int = 0
    too_large: bool = False


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
    ``+N``.  A recipient without network filters is named by its slug.  Only the first values are
    formatted, so a recipient with thousands of networks costs no more than one with three.
    """
    n = len(recipient.asns) + len(recipient.cidrs) + len(recipient.countries)
    if not n:
        return recipient.slug
    first = list(itertools.islice(itertools.chain(
        (f"AS{a}" for a in recipient.asns), (str(c) for c in recipient.cidrs),
        recipient.countries), 3))
    if n > 3:
        return ",".join(first) + f",+{n - 3}"
    return ",".join(first)


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


#: DEFLATE level of zipped attachments (0-9).
ZIP_LEVEL = 1


def deterministic_zip(filename: str, data: bytes, day: str) -> bytes:
    """A ZIP archive holding ``data`` as ``filename``, byte-identical for the same input (the entry
    time is the report day, 00:00)."""
    buf = io.BytesIO()
    y, m, d = (int(x) for x in day.split("-"))
    info = zipfile.ZipInfo(filename, date_time=(y, m, d, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(buf, "w") as zf:
        # Level 1: on a 4 MB report 173 MB/s and 4.6:1, against 44 MB/s and 6.9:1 at zlib's default
        # 6 (bench/README.md); attachments are at most [mail] attach_max before zipping.
        zf.writestr(info, data, compresslevel=ZIP_LEVEL)
    return buf.getvalue()


def report_attachment(filename: str, data: bytes, day: str, zip_above: int, attach_max: int,
                      maintype: str = "text", subtype: str = "csv") -> tuple[Attachment | None, bool]:
    """``(attachment, zipped)`` of a report file, or ``(None, False)`` when ``data`` is larger
    than ``attach_max`` bytes (``[mail] attach_max``: mail relays refuse messages above 10-25 MB,
    and base64 adds a third); otherwise as :func:`maybe_zip`."""
    if len(data) > attach_max:
        return None, False
    return maybe_zip(filename, data, day, zip_above, maintype, subtype)


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
        # auto_reload off: templates do not change while messages are composed, and checking
        # every candidate file's modification time per message cost more than rendering.
        self.env = jinja2.Environment(
            loader=jinja2.PrefixLoader(loaders), autoescape=False, keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            auto_reload=False)
        #: (template, kind, language) -> (the template, its globals as one dict)
        self._selected: dict[tuple[str, str, str], tuple[jinja2.Template, dict]] = {}

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
        key = (template, kind, language)
        hit = self._selected.get(key)
        if hit is None:
            tpl = self.env.select_template(self.candidates(template, kind, language))
            hit = self._selected[key] = (tpl, dict(tpl.globals))
        tpl, globals_ = hit
        # tpl.render(**context), without merging the template's globals into a new dict on every
        # call (jinja2's documented new_context(shared=True) takes the variables as they are):
        # 6 us instead of 12 us for the built-in report template, the same text.
        ctx = tpl.new_context({**globals_, **context}, shared=True)
        try:
            return self.env.concat(tpl.root_render_func(ctx))
        except Exception:
            self.env.handle_exception()
            raise  # not reached: handle_exception re-raises with the template's traceback


#: The body names at most this many ASNs and networks, then "and N more" (issue 7: a network
#: owner with 20,000 CIDRs got all of them, hundreds of KB, in every message).
FILTER_LIST_MAX = 10


def _summary(label: str, values, total: int) -> str:
    text = f"{label} " + " ".join(itertools.islice(values, FILTER_LIST_MAX))
    if total > FILTER_LIST_MAX:
        text += f" and {total - FILTER_LIST_MAX} more"
    return text


def filters_text(r: Recipient) -> str:
    """The recipient's filters for the body: ``ASNs AS64496, networks 192.0.2.0/24, countries AT``.

    ASNs and networks are listed up to :data:`FILTER_LIST_MAX`, then ``and N more``; countries
    (at most the ~250 ISO 3166-1 codes) are listed in full.  ``none`` without network filters.
    """
    return ", ".join(part for part in (
        _summary("ASNs", (f"AS{a}" for a in r.asns), len(r.asns)) if r.asns else "",
        _summary("networks", (str(c) for c in r.cidrs), len(r.cidrs)) if r.cidrs else "",
        "countries " + " ".join(r.countries) if r.countries else "",
    ) if part) or "none"


#: id(recipient) -> (recipient, filter sizes, area, filters text); see :func:`recipient_texts`.
_TEXTS: dict[int, tuple[Recipient, tuple[int, int, int], str, str]] = {}
#: The cache is emptied when it holds this many recipients.
_TEXTS_MAX = 1 << 16


def recipient_texts(r: Recipient) -> tuple[str, str]:
    """``(area(r), filters text)``, computed once per recipient object.

    The cache is keyed by the object's identity (recipients are mutable dataclasses, not
    hashable) and keeps a reference to it, so an id is never reused while cached; the numbers of
    ASNs, networks and countries are checked on every hit.  A recipient changed in place with the
    same numbers of values keeps its old text: build a new :class:`Recipient` instead.
    """
    sizes = (len(r.asns), len(r.cidrs), len(r.countries))
    hit = _TEXTS.get(id(r))
    if hit is not None and hit[0] is r and hit[1] == sizes:
        return hit[2], hit[3]
    if len(_TEXTS) >= _TEXTS_MAX:
        _TEXTS.clear()
    texts = (area(r), filters_text(r))
    _TEXTS[id(r)] = (r, sizes, *texts)
    return texts


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
    area_, filters = recipient_texts(r)
    slug, unsub_url, unsub_text, from_to, lists = _recipient_headers(spec)
    if spec.template == "digest":
        subj = subject(area_, "Daily Digest", spec.day, spec.tlp)
    else:
        subj = subject(area_, spec.reports[0].title, spec.day, spec.tlp)
    mid = message_id(slug, spec.key, spec.day, spec.content_sha256, domain_of(spec.sender))
    body = templates.render(
        spec.template, r.kind, spec.language,
        recipient=r, name=r.name, kind=r.kind, area=area_, day=spec.day, tlp=spec.tlp,
        reports=spec.reports, report=spec.reports[0] if spec.reports else None,
        filters=filters, operation=r.operation, sender=spec.sender,
        unsubscribe_url=unsub_text, message_id=mid, subject=subj)
    entity_bytes = build_entity(body, spec.attachments)
    # format_headers() formats each field on its own, so the fields that are the same for all of
    # a recipient's messages are formatted once (_recipient_headers, _trailing_headers).
    headers = b"".join((
        from_to,
        format_headers([("Subject", subj), ("Date", _date_header(spec.day)), ("Message-ID", mid)]),
        lists,
        _trailing_headers(", ".join(p.type for p in spec.reports), spec.tlp)))
    return Composed(headers=headers, entity=entity_bytes, message_id=mid, subject=subj,
                    rcpt_to=r.email, tlp=spec.tlp)


def message_headers(spec: MessageSpec, subj: str, mid: str) -> list[tuple[str, str]]:
    """The top-level header fields of a message, in order: ``From``, ``To``, ``Subject`` (with
    the TLP label), ``Date`` (the report day), ``Message-ID``, ``Auto-Submitted:
    auto-generated`` (RFC 3834), ``List-Id`` (RFC 2919), ``List-Unsubscribe`` (RFC 2369) and, with
    an https target, ``List-Unsubscribe-Post`` (RFC 8058), ``X-Herald-*`` and ``MIME-Version``.
    :func:`compose` writes these fields (as :func:`format_headers` does), in three cached pieces.
    """
    r = spec.recipient
    unsub_header, unsub_url = unsubscribe_targets(spec)
    hdrs = [
        ("From", spec.sender),
        ("To", r.email),
        ("Subject", subj),
        ("Date", _date_header(spec.day)),
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
    return hdrs


#: (id(recipient), sender, unsubscribe url, unsubscribe mailto) -> (recipient, name, email,
#: :func:`_recipient_headers` result).
_HEADERS: dict[tuple, tuple] = {}


def _recipient_headers(spec: MessageSpec) -> tuple[str, str | None, str, bytes, bytes]:
    """``(slug, https unsubscribe URL or None, unsubscribe text of the templates, From and To
    fields, Auto-Submitted to List-Unsubscribe-Post fields)`` of the recipient of ``spec``,
    formatted by :func:`format_headers` once per recipient object, sender and unsubscribe
    settings (checked against the recipient's name and e-mail address on every hit): per message
    they cost about 40 us of the ~450 us a message took on the 1M-event bench day."""
    r = spec.recipient
    key = (id(r), spec.sender, spec.unsubscribe_url, spec.unsubscribe_mailto)
    hit = _HEADERS.get(key)
    if hit is not None and hit[0] is r and hit[1] == r.name and hit[2] == r.email:
        return hit[3]
    if len(_HEADERS) >= _TEXTS_MAX:
        _HEADERS.clear()
    hdrs = message_headers(spec, "", "")
    slug = r.slug
    unsub_url = unsubscribe_targets(spec)[1]
    unsub_text = unsub_url or f"mailto:{spec.unsubscribe_mailto or spec.sender}"
    names = [name for name, _ in hdrs]
    lists = hdrs[names.index("Auto-Submitted"):names.index("X-Herald-Report-Type")]
    value = (slug, unsub_url, unsub_text, format_headers(hdrs[:2]), format_headers(lists))
    _HEADERS[key] = (r, r.name, r.email, value)
    return value


@functools.lru_cache(maxsize=256)
def _trailing_headers(types: str, tlp: str) -> bytes:
    """The ``X-Herald-Report-Type``, ``X-Herald-TLP`` and ``MIME-Version`` fields, formatted."""
    return format_headers([("X-Herald-Report-Type", types), ("X-Herald-TLP", f"TLP:{tlp}"),
                           ("MIME-Version", "1.0")])


@functools.lru_cache(maxsize=64)
def _date_header(day: str) -> str:
    """The ``Date`` value (RFC 5322 section 3.3) of a report day: 00:00 UTC."""
    return format_datetime(datetime.fromisoformat(day).replace(tzinfo=timezone.utc))


def fold_headers(headers: list[tuple[str, str]]) -> bytes:
    """Header fields folded and encoded for SMTP (RFC 5322 section 2.2.3, RFC 2047), CRLF endings."""
    # Folding at 78 characters would move long values (List-Unsubscribe, Message-ID) to a
    # continuation line; RFC 5322 section 2.1.1 allows up to 998, which keeps them on one line.
    return b"".join(_fold_one(name, value) for name, value in headers)


def _fold_one(name: str, value: str) -> bytes:
    if value.isascii():
        return _FOLD_POLICY.fold_binary(name, value)
    # policy.fold_binary() returns a value that fits on a line unchanged, and a non-ASCII one
    # then fails to encode; through the header parser it becomes RFC 2047 encoded words.
    return _FOLD_POLICY.header_factory(name, value).fold(policy=_FOLD_POLICY).encode("ascii")


_FOLD_POLICY = _POLICY.clone(max_line_length=998)


def format_headers(headers: list[tuple[str, str]]) -> bytes:
    """Header fields as :func:`fold_headers` gives them, CRLF endings, without its cost.

    A value of printable US-ASCII (no control characters, no leading or trailing space) whose
    ``Name: value`` line fits in :data:`MAX_LINE` characters is written as is: that is what the
    email package's folding with a 998-character limit produces for it.  Anything else (non-ASCII,
    which needs RFC 2047 encoded words; a line that needs folding) goes through
    :func:`fold_headers`.
    """
    out = []
    for name, value in headers:
        if (value.isascii() and value.isprintable() and len(name) + len(value) + 2 <= MAX_LINE
                and value == value.strip() and "  " not in value):
            out.append(f"{name}: {value}\r\n".encode("ascii"))
        else:
            out.append(fold_headers([(name, value)]))
    return b"".join(out)

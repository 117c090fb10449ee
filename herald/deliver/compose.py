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

The entity is written directly as bytes (:func:`build_entity`), not through
:class:`email.message.MIMEPart` and :class:`email.generator.BytesGenerator`: its structure is fixed
(a ``text/plain`` body, or ``multipart/mixed`` with that body and base64 attachments), and the
C codecs of :mod:`binascii` plus a numpy reshape for the 76-character base64 lines make a message
cost tens of microseconds instead of milliseconds (issue 7).  The email package is still used for
the rare values the fast path does not cover (non-ASCII file names, RFC 2231; non-ASCII or
over-long header values, RFC 2047 and RFC 5322 section 2.2.3).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import io
import itertools
import re
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
import numpy as np

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
        attached: ``False`` when the CSV is larger than ``[mail] attach_max`` and is not attached
            (the body then names the file, its size and SHA-256 and where to download it).
        size: size of the CSV in bytes.
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
        self._selected: dict[tuple[str, str, str], jinja2.Template] = {}

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
        tpl = self._selected.get(key)
        if tpl is None:
            tpl = self._selected[key] = self.env.select_template(
                self.candidates(template, kind, language))
        return tpl.render(**context)


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
        filters=filters, operation=r.operation, sender=spec.sender,
        unsubscribe_url=unsub_url or f"mailto:{spec.unsubscribe_mailto or spec.sender}",
        message_id=mid, subject=subj)
    entity_bytes = build_entity(body, spec.attachments)

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
    return Composed(headers=format_headers(hdrs), entity=entity_bytes, message_id=mid, subject=subj,
                    rcpt_to=r.email, tlp=spec.tlp)


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

#: RFC 5322 section 2.1.1: a line is at most 998 characters, excluding CRLF.
MAX_LINE = 998


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


# --- the MIME entity (RFC 2045, 2046, 2183) ------------------------------------------------------

_CRLF = b"\r\n"
#: Headers of the text part, in the form the email package wrote them.
_TEXT_HEADERS = (b'Content-Type: text/plain; charset="utf-8"\r\n'
                 b"Content-Transfer-Encoding: quoted-printable\r\n")
#: Base64 line length (RFC 2045 section 6.8: at most 76 characters).
B64_LINE = 76
#: Attachments up to this many base64 lines are cut in Python; larger ones with numpy.
_NUMPY_LINES = 16


def encode_text_body(text: str) -> bytes:
    """``text`` as UTF-8 quoted-printable (RFC 2045 section 6.7), canonical CRLF line endings.

    Lines are normalised (``\\n``, ``\\r`` and ``\\r\\n`` end a line) and the result always ends
    with CRLF.  Soft line breaks keep encoded lines at 76 characters; whitespace at the end of a
    line is encoded (``=20``), as are ``=``, control and non-ASCII bytes, so the bytes survive
    any transport unchanged (RFC 3156 section 3).  A line starting with ``From `` is written
    ``=46rom `` so that no mbox-style agent rewrites it and breaks a signature.
    """
    data = _CRLF.join(text.encode("utf-8").splitlines()) + _CRLF
    # binascii.b2a_qp keeps CRLF line breaks (and writes its soft breaks as "=\r\n") when the
    # first line break of its input is CRLF, which it always is here.
    qp = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if len(qp) > QP_LINE and max(map(len, qp.split(_CRLF))) > QP_LINE:
        qp = _CRLF.join(_rebreak(line) for line in qp.split(_CRLF))
    if b"From " in qp:
        if qp.startswith(b"From "):
            qp = b"=46rom " + qp[5:]
        qp = qp.replace(b"\r\nFrom ", b"\r\n=46rom ")
    return qp


#: Quoted-printable line length (RFC 2045 section 6.7, rule 5: at most 76 characters).
QP_LINE = 76
_QP_TOKEN = re.compile(rb"=[0-9A-F]{2}|.", re.S)


def _rebreak(line: bytes) -> bytes:
    """An encoded quoted-printable line longer than 76 characters, cut with soft line breaks.

    :func:`binascii.b2a_qp` breaks a line before it encodes the whitespace at its end, so a
    line of 74-75 characters plus a space comes out as 77-78 characters with ``=20``; this is
    rare and only those lines are cut again, never inside an ``=XX`` escape.
    """
    if len(line) <= QP_LINE:
        return line
    out, cur = [], b""
    for tok in _QP_TOKEN.findall(line):
        if len(cur) + len(tok) > QP_LINE - 1:
            out.append(cur + b"=")
            cur = b""
        cur += tok
    out.append(cur)
    return _CRLF.join(out)


def encode_base64_lines(data: bytes) -> bytes | bytearray:
    """``data`` in base64 (RFC 2045 section 6.8) in lines of 76 characters, each ending in CRLF.

    The encoding is :func:`binascii.b2a_base64`; the lines are cut by viewing the encoded bytes
    as a ``(lines, 76)`` array and writing it with a CRLF column appended, with no Python loop
    per line.  Empty ``data`` gives empty output.
    """
    b64 = binascii.b2a_base64(data, newline=False)
    full, rest = divmod(len(b64), B64_LINE)
    if full <= _NUMPY_LINES:
        lines = [b64[i:i + B64_LINE] for i in range(0, full * B64_LINE, B64_LINE)]
        if rest:
            lines.append(b64[full * B64_LINE:])
        return b"".join(line + _CRLF for line in lines)
    width = B64_LINE + 2
    out = bytearray(full * width + (rest + 2 if rest else 0))
    grid = np.frombuffer(out, dtype=np.uint8, count=full * width).reshape(full, width)
    grid[:, :B64_LINE] = np.frombuffer(b64, dtype=np.uint8, count=full * B64_LINE).reshape(full, B64_LINE)
    grid[:, B64_LINE] = 13
    grid[:, B64_LINE + 1] = 10
    if rest:
        out[full * width:] = b64[full * B64_LINE:] + _CRLF
    return out


#: Characters written as they are in a quoted ``filename`` parameter (RFC 2045 quoted-string,
#: RFC 2183): printable US-ASCII without ``"`` and ``\\``.
_PLAIN_FILENAME = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}
#: RFC 5322 section 2.1.1 recommends lines of at most 78 characters.
_SHORT_LINE = 78


def attachment_headers(att: Attachment) -> bytes:
    """The MIME headers of an attachment part (RFC 2045, RFC 2183), CRLF endings.

    ``Content-Type: <maintype>/<subtype>`` (``; charset=utf-8`` for ``text/*``: report CSVs are
    UTF-8, and RFC 2046 section 4.1.2 makes US-ASCII the default otherwise; RFC 7111 section 5.1
    for ``text/csv``), ``Content-Transfer-Encoding: base64`` and
    ``Content-Disposition: attachment; filename="<name>"``, the disposition folded before
    ``filename`` when the line would exceed 78 characters (the parameter line then holds up to
    998, RFC 5322 section 2.1.1).  File names that are not printable US-ASCII without ``"`` and
    ``\\``, or too long even for that, are encoded by the email package (RFC 2231
    ``filename*=utf-8''...``, with continuations).
    """
    name = att.filename
    charset = "; charset=utf-8" if att.maintype == "text" else ""
    head = f"Content-Type: {att.maintype}/{att.subtype}{charset}\r\nContent-Transfer-Encoding: base64\r\n"
    if name and _PLAIN_FILENAME.issuperset(name):
        param = f'filename="{name}"'
        if len("Content-Disposition: attachment; ") + len(param) <= _SHORT_LINE:
            return (head + f"Content-Disposition: attachment; {param}\r\n").encode("ascii")
        if 1 + len(param) <= MAX_LINE:
            # The email package would split a name longer than 78 characters into RFC 2231
            # continuations (filename*0*=...); one quoted parameter on a line of at most 998
            # characters (RFC 5322 section 2.1.1) is valid and read by every client.
            return (head + f"Content-Disposition: attachment;\r\n {param}\r\n").encode("ascii")
    part = MIMEPart(policy=_POLICY)
    part.set_content(b"", maintype=att.maintype, subtype=att.subtype, filename=name,
                     cte="base64", disposition="attachment",
                     params={"charset": "utf-8"} if att.maintype == "text" else None)
    return _generate(part).split(b"\r\n\r\n", 1)[0] + _CRLF


def mixed_boundary(body: str, attachments: list[Attachment]) -> str:
    """The deterministic ``multipart/mixed`` boundary of a message: a digest of the body and the
    attachments, behind ``=_`` (a sequence neither quoted-printable nor base64 can contain, so
    the boundary never occurs in the parts, RFC 2046 section 5.1.1)."""
    h = hashlib.sha256(body.encode())
    for att in attachments:
        h.update(att.filename.encode() + b"\0")
        h.update(att.data)
    return f"=_herald-mixed-{h.hexdigest()[:24]}"


def build_entity(body: str, attachments: list[Attachment]) -> bytes:
    """The MIME entity of a message in canonical form (CRLF line endings, 7-bit).

    Without attachments: a ``text/plain; charset="utf-8"`` part, quoted-printable.  With
    attachments: ``multipart/mixed`` (RFC 2046 section 5.1.3) of that part and one base64 part
    per attachment (``Content-Disposition: attachment``, RFC 2183), with the boundary of
    :func:`mixed_boundary`.  The same input always gives the same bytes.
    """
    text = _TEXT_HEADERS + _CRLF + encode_text_body(body)
    if not attachments:
        return text
    delim = f"--{mixed_boundary(body, attachments)}".encode("ascii")
    parts: list[bytes | bytearray] = [
        b'Content-Type: multipart/mixed;\r\n boundary="', delim[2:], b'"\r\n\r\n',
        delim, _CRLF, text]
    for att in attachments:
        parts += [_CRLF, delim, _CRLF, attachment_headers(att), _CRLF, encode_base64_lines(att.data)]
    parts += [_CRLF, delim, b"--\r\n"]
    return b"".join(parts)


def _generate(part: MIMEPart) -> bytes:
    buf = io.BytesIO()
    BytesGenerator(buf, policy=_POLICY, mangle_from_=False).flatten(part)
    return buf.getvalue()

"""The MIME entity of a report message (RFC 2045, 2046, 2183), written directly as bytes.

The entity's structure is fixed (a ``text/plain`` body, or ``multipart/mixed`` with that body and
base64 attachments), so it is written by :func:`build_entity` instead of through
:class:`email.message.MIMEPart` and :class:`email.generator.BytesGenerator`: the C codecs of
:mod:`binascii` (base64 by pybase64's SIMD code) plus a numpy reshape for the 76-character
base64 lines make a message cost tens of microseconds instead of milliseconds (issue 7).  The email package is still used for file names
the fast path does not cover (non-ASCII, RFC 2231).  :mod:`herald.deliver.compose` re-exports
these names.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import re
from dataclasses import dataclass
from email import policy
from email.generator import BytesGenerator
from email.message import MIMEPart

import numpy as np

try:
    from pybase64 import b64encode as _b64encode
except ImportError:  # pragma: no cover - pybase64 is a dependency; binascii gives the same bytes
    def _b64encode(data: bytes) -> bytes:
        return binascii.b2a_base64(data, newline=False)

_POLICY = policy.SMTP  # CRLF line endings, RFC 2047 encoded words for non-ASCII headers

#: RFC 5322 section 2.1.1: a line is at most 998 characters, excluding CRLF.
MAX_LINE = 998


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message."""

    filename: str
    data: bytes
    maintype: str = "text"
    subtype: str = "csv"


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

    The encoding is :func:`pybase64.b64encode` (SIMD; the same bytes as
    :func:`binascii.b2a_base64`, which is used when pybase64 is missing): on the bench machine
    1 MiB took 30 us instead of 1.6 ms, 0.2 s CPU of the 1M-event bench day's messages.  The
    lines are cut by viewing the encoded bytes as a ``(lines, 76)`` array and writing it with a
    CRLF column appended, with no Python loop per line.  Empty ``data`` gives empty output.
    """
    b64 = _b64encode(data)
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

"""Base64 attachment lines (RFC 2045 section 6.8): pybase64 and the binascii fallback give the
bytes of the email package's base64 encoder, in CRLF lines of at most 76 characters."""

from __future__ import annotations

import base64
import binascii
from email import encoders
from email.mime.base import MIMEBase

from hypothesis import given, settings, strategies as st

from herald.deliver import mime


def _email_package(data: bytes) -> bytes:
    """The email package's base64 body of ``data`` (LF lines), with CRLF line endings."""
    part = MIMEBase("application", "octet-stream")
    part.set_payload(data)
    encoders.encode_base64(part)
    return part.get_payload().encode("ascii").replace(b"\n", b"\r\n")


def _check(data: bytes) -> None:
    out = bytes(mime.encode_base64_lines(data))
    assert out == _email_package(data)
    assert all(len(line) <= 76 for line in out.split(b"\r\n"))
    assert base64.b64decode(out) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000) | st.integers(0, 40_000).map(lambda n: bytes(range(256)) * (n // 256)))
def test_base64_lines_equal_the_email_package_encoder(data):
    _check(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_binascii_fallback_gives_the_same_bytes(data):
    assert mime._b64encode(data) == binascii.b2a_base64(data, newline=False)


def test_fallback_encoder_is_used_without_pybase64(monkeypatch):
    monkeypatch.setattr(mime, "_b64encode", lambda d: binascii.b2a_base64(d, newline=False))
    for n in (0, 1, 57, 57 * 16, 57 * 17 + 5, 100_003):
        _check(bytes(i % 251 for i in range(n)))

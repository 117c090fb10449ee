"""Composing report messages (issue 7): the MIME entity written directly as bytes must parse back
to exactly what went in (body text, attachment bytes, file names), stay canonical (CRLF, 7-bit,
lines within RFC 2045/5322 limits) and deterministic; the body summarises long filter lists; a
report above ``[mail] attach_max`` is named, not attached."""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import random
import zipfile
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from herald.config import settings_from_dict
from herald.constituency.recipients import Recipient
from herald.deliver import compose as c
from herald.deliver.eml import DEFAULT_ATTACH_MAX, compose_report
from herald.deliver.outbox import enqueue_reports, list_outbox
from herald.deliver.settings import delivery_settings
from herald.errors import ConfigError
from herald.schema.registry import default_registry
from herald.store.db import open_db
from tests.deliver_support import DAY, make_report, make_settings

PARSER = BytesParser(policy=policy.default)
RTYPE = default_registry().get("scan_http")
SHA = "ab" * 32


def _parse(raw: bytes):
    msg = PARSER.parsebytes(raw)
    for part in msg.walk():
        assert not part.defects, part.defects
    return msg


def _canonical(raw: bytes) -> None:
    """CRLF line endings only, 7-bit, no line over 998 characters (RFC 5322 section 2.1.1)."""
    assert max(raw) < 0x80
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def _recipient(**kw) -> Recipient:
    base = dict(name="Example Cable ISP", email="abuse@cable-isp.example", asns=[7922])
    return Recipient(**{**base, **kw})


def _report(data: bytes, rcpt: Recipient | None = None, **kw) -> bytes:
    return compose_report(rcpt or _recipient(), RTYPE, DAY, 3, f"{DAY}-scan_http-x-asn.csv", data,
                          hashlib.sha256(data).hexdigest(), "reports@herald.example", "AMBER",
                          **kw).as_bytes()


# --- base64 attachments ------------------------------------------------------------------------

SIZES = [0, 1, 2, 3, 55, 56, 57, 58, 59, 75, 76, 77, 113, 114, 115, 57 * 16 - 1, 57 * 16,
         57 * 16 + 1, 57 * 17 - 1, 57 * 17, 57 * 17 + 1, 57 * 17 + 2, 100_003]


@pytest.mark.parametrize("size", SIZES)
def test_base64_lines_match_the_standard_encoder(size):
    data = random.Random(size).randbytes(size)
    out = bytes(c.encode_base64_lines(data))
    # base64.encodebytes writes 76-character lines (RFC 2045 section 6.8) with LF.
    assert out == base64.encodebytes(data).replace(b"\n", b"\r\n")
    assert base64.b64decode(out) == data


@pytest.mark.parametrize("size", SIZES)
def test_attachment_bytes_round_trip_exactly(size):
    data = random.Random(size).randbytes(size)
    extra = [c.Attachment("second.bin", data[::-1], "application", "octet-stream")]
    raw = _report(data, zip_above=1 << 30, extra=extra)
    _canonical(raw)
    msg = _parse(raw)
    assert msg.get_content_type() == "multipart/mixed"
    atts = list(msg.iter_attachments())
    assert [a.get_filename() for a in atts] == [f"{DAY}-scan_http-x-asn.csv", "second.bin"]
    assert [a.get_content_type() for a in atts] == ["text/csv", "application/octet-stream"]
    assert atts[0].get_payload(decode=True) == data
    assert atts[1].get_payload(decode=True) == data[::-1]
    body_lines = raw.split(b"Content-Transfer-Encoding: base64\r\n")[1].split(b"\r\n\r\n", 2)[1]
    assert all(len(line) <= 76 for line in body_lines.split(b"\r\n"))


def test_zip_above_and_zip_round_trip():
    data = b'"timestamp","ip"\n' + b"".join(b'"2026-11-30 01:02:03","192.0.2.%d"\n' % i
                                             for i in range(256)) * 20
    msg = _parse(_report(data, zip_above=len(data) - 1))
    att = next(msg.iter_attachments())
    assert att.get_filename() == f"{DAY}-scan_http-x-asn.csv.zip"
    assert att.get_content_type() == "application/zip"
    with zipfile.ZipFile(io.BytesIO(att.get_payload(decode=True))) as zf:
        assert zf.read(f"{DAY}-scan_http-x-asn.csv") == data
    assert "(ZIP archive of the CSV file)" in msg.get_body(("plain",)).get_content()
    assert next(_parse(_report(data, zip_above=len(data))).iter_attachments()).get_filename() \
        == f"{DAY}-scan_http-x-asn.csv"


# --- file names (RFC 2183, RFC 2231) --------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "a.csv",
    "2026-11-30-event4_sinkhole_http-example_cable_isp-asn_cidr.csv.zip",  # folded: > 78
    "x" * 300 + ".csv",
    "Übersicht März.csv",            # RFC 2231, through the email package
    'with "quotes" and \\ backslash.csv',
    "semi;colon = equals (1).csv",
])
def test_filenames_round_trip(name):
    raw = _report(b"a,b\n1,2\n", extra=[c.Attachment(name, b"x\n")])
    _canonical(raw)
    atts = list(_parse(raw).iter_attachments())
    assert atts[1].get_filename() == name
    assert atts[1].get_payload(decode=True) == b"x\n"


# --- quoted-printable body ----------------------------------------------------------------------

BODIES = [
    "",
    "one line without newline",
    "a" * 74 + " \nnext",           # binascii.b2a_qp would give a 77-character line
    "b" * 75 + " \n" + "c" * 73 + "\t\n",
    "From the start\nFrom here too\n>From not\n",
    ".\nline with . only above\n",
    "équipe – €100 = 3×33 ünd " * 20 + "\n",
    "mixed\r\nline\rendings\n\n\nblank lines\n",
    "trailing spaces   \n\ttab start\n",
]


@pytest.mark.parametrize("text", BODIES)
def test_quoted_printable_body_round_trips(text):
    qp = c.encode_text_body(text)
    assert all(len(line) <= 76 for line in qp.split(b"\r\n"))
    entity = c.build_entity(text, [])
    _canonical(entity)
    msg = _parse(b"MIME-Version: 1.0\r\n" + entity)
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    normalised = "".join(line + "\n" for line in text.splitlines()) or "\n"  # always ends a line
    assert msg.get_content().replace("\r\n", "\n") == normalised
    # no line may start with "From " (mbox rewriting would break a PGP/MIME signature)
    assert not any(line.startswith(b"From ") for line in qp.split(b"\r\n"))


def test_random_bodies_and_attachments_parse_back():
    rnd = random.Random(7)
    alphabet = "abc xyz=.\t-ä€\n  From AT\r"
    for _ in range(300):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(400)))
        atts = [c.Attachment(f"f{i}.csv", rnd.randbytes(rnd.randrange(3000)))
                for i in range(rnd.randrange(3))]
        entity = c.build_entity(text, atts)
        assert entity == c.build_entity(text, atts)
        _canonical(entity)
        msg = _parse(b"MIME-Version: 1.0\r\n" + entity)
        got = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert got == ("".join(line + "\n" for line in text.splitlines()) or "\n")
        assert [a.get_payload(decode=True) for a in msg.iter_attachments()] == [a.data for a in atts]


def test_boundary_is_content_derived():
    atts = [c.Attachment("a.csv", b"1\n")]
    e1 = c.build_entity("body\n", atts)
    assert e1 == c.build_entity("body\n", [c.Attachment("a.csv", b"1\n")])
    assert c.mixed_boundary("body\n", atts).encode() in e1
    assert c.mixed_boundary("body\n", atts) != c.mixed_boundary("body\n", [c.Attachment("a.csv", b"2\n")])
    assert e1.endswith(b"--" + c.mixed_boundary("body\n", atts).encode() + b"--\r\n")


# --- headers --------------------------------------------------------------------------------------

def test_plain_headers_are_what_the_email_package_folds():
    hdrs = [("From", "reports@herald.example"), ("To", "abuse@cable-isp.example"),
            ("Subject", "[Herald] AS7922 Accessible HTTP Report 2026-11-30 [TLP:AMBER]"),
            ("Message-ID", "<2026-11-30.scan_http.0123456789abcdef@herald.example>"),
            ("List-Unsubscribe", "<https://portal.example/u/x?a=b%20c>, <mailto:u@x.example?subject=unsubscribe%20x>"),
            ("X-Long", "word " * 150 + "end"), ("MIME-Version", "1.0")]
    assert c.format_headers(hdrs) == c.fold_headers(hdrs)


def test_non_ascii_and_overlong_headers_are_encoded():
    hdrs = [("Subject", "Bericht für Müller"), ("X-Long", "w" * 1200)]
    raw = c.format_headers(hdrs)
    assert raw == c.fold_headers(hdrs)
    assert max(raw) < 0x80 and b"=?utf-8?" in raw
    msg = _parse(raw + b"\r\nbody\r\n")
    assert msg["Subject"] == "Bericht für Müller"


def test_message_headers_and_determinism():
    raw = _report(b"a,b\n1,2\n")
    assert raw == _report(b"a,b\n1,2\n")
    msg = _parse(raw)
    assert msg["Subject"] == f"[Herald] AS7922 Accessible HTTP Report {DAY} [TLP:AMBER]"
    assert msg["Date"] == "Mon, 30 Nov 2026 00:00:00 +0000"
    assert msg["To"] == "abuse@cable-isp.example" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["MIME-Version"] == "1.0"


# --- filters summary ------------------------------------------------------------------------------

def test_long_filter_lists_are_summarised():
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    nets = [ipaddress.IPv4Network((base + 256 * i, 24)) for i in range(20_000)]
    rcpt = _recipient(asns=list(range(64496, 64521)), cidrs=nets, countries=["AT", "DE"])
    raw = _report(b"a,b\n", rcpt)
    assert len(raw) < 5000
    msg = _parse(raw)
    body = msg.get_body(("plain",)).get_content()
    flat = " ".join(body.split())
    assert "ASNs " + " ".join(f"AS{a}" for a in range(64496, 64506)) + " and 15 more" in flat
    assert "networks " + " ".join(str(n) for n in nets[:10]) + " and 19990 more" in flat
    assert str(nets[10]) not in flat and "AS64506" not in flat
    assert "countries AT DE" in flat
    assert msg["Subject"].startswith("[Herald] AS64496,AS64497,AS64498,+20024 Accessible HTTP")


def test_short_filter_lists_are_listed_in_full():
    rcpt = _recipient(asns=[1, 2], cidrs=["192.0.2.0/24"])
    assert c.filters_text(rcpt) == "ASNs AS1 AS2, networks 192.0.2.0/24"
    assert c.filters_text(_recipient(asns=[])) == "none"


def test_recipient_texts_follow_a_changed_recipient():
    rcpt = _recipient(asns=[1])
    assert c.recipient_texts(rcpt) == ("AS1", "ASNs AS1")
    rcpt.asns.append(2)
    assert c.recipient_texts(rcpt) == ("AS1,AS2", "ASNs AS1 AS2")
    other = _recipient(asns=[3])
    assert c.recipient_texts(other) == ("AS3", "ASNs AS3")


# --- attachment cap -------------------------------------------------------------------------------

def test_report_above_attach_max_is_named_not_attached():
    data = b"x,y\n" + b"1,2\n" * 1000
    digest = hashlib.sha256(data).hexdigest()
    raw = _report(data, attach_max=len(data) - 1)
    _canonical(raw)
    msg = _parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert list(msg.iter_attachments()) == []
    flat = " ".join(msg.get_body(("plain",)).get_content().split())
    assert "too large to be sent by e-mail" in flat
    assert f"File: {DAY}-scan_http-x-asn.csv" in flat
    assert f"Size: {len(data)} bytes" in flat and f"SHA-256: {digest}" in flat
    assert "Reports API" in flat and "portal" in flat
    assert "attached is" not in flat
    # at the cap it is still attached
    at_cap = _parse(_report(data, attach_max=len(data)))
    assert next(at_cap.iter_attachments()).get_payload(decode=True) == data


def test_default_attach_max_is_ten_mebibytes():
    assert DEFAULT_ATTACH_MAX == 10 * 1024 * 1024
    assert c.report_attachment("a.csv", b"x" * 11, DAY, 100, 10) == (None, False)


def test_attach_max_setting(tmp_path):
    settings, _ = make_settings(tmp_path, "sqlite://", mail={"attach_max": 5000})
    assert delivery_settings(settings).mail.attach_max == 5000
    settings, _ = make_settings(tmp_path, "sqlite://")
    assert delivery_settings(settings).mail.attach_max == 10 << 20
    for bad in (-1, "big", True):
        settings, _ = make_settings(tmp_path, "sqlite://", mail={"attach_max": bad})
        with pytest.raises(ConfigError, match="attach_max"):
            delivery_settings(settings)


def test_outbox_honours_attach_max(tmp_path):
    recips = [dict(r) for r in (
        {"name": "CERT.at", "email": "reports@cert.at.example", "kind": "national_cert",
         "countries": ["AT"], "digest": True, "xarf": True},
        {"name": "Example Cable ISP", "email": "abuse@cable-isp.example", "asns": [7922],
         "xarf": True})]
    settings, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", smtp={"port": 25},
                                mail={"attach_max": 1000}, recipients=recips)
    db = open_db(settings.database_url)
    small = make_report(tmp_path, "CERT.at", "scan_rdp", rows=0)
    big = make_report(tmp_path, "CERT.at", "scan_http", rows=20)
    big2 = make_report(tmp_path, "Example Cable ISP", "scan_http", rows=20)
    assert Path(small["path"]).stat().st_size <= 1000 < Path(big["path"]).stat().st_size
    enqueue_reports(db, settings, [small, big, big2], DAY)
    by = {e.recipient: _parse(Path(e.path).read_bytes()) for e in list_outbox(db)}
    digest = by["CERT.at"]
    small_name = Path(small["path"]).name
    assert [a.get_filename() for a in digest.iter_attachments()] == [
        small_name, small_name.removesuffix(".csv") + ".xarf.jsonl"]
    flat = " ".join(digest.get_body(("plain",)).get_content().split())
    assert f"{Path(big['path']).name}: too large to be sent by e-mail" in flat
    assert big["sha256"] in flat
    single = by["Example Cable ISP"]
    assert single.get_content_type() == "text/plain"
    assert Path(big2["path"]).name in single.get_content() and "X-ARF" not in single.get_content()
    db.dispose()


def test_attach_max_from_a_toml_number(tmp_path):
    raw = {"paths": {"data": "d"}, "mail": {"attach_max": 1.5e7}}
    assert delivery_settings(settings_from_dict(raw, base=tmp_path)).mail.attach_max == 15_000_000


@pytest.mark.parametrize("name", ["short.csv", "n" * 90 + ".csv", "größe.csv"])
def test_csv_attachment_declares_utf8_charset(name):
    # RFC 2046 section 4.1.2: a text part without a charset is US-ASCII; report CSVs are UTF-8.
    data = "ip,user_agent\n192.0.2.1,Straße\n".encode()
    head = c.attachment_headers(c.Attachment(name, data))
    msg = PARSER.parsebytes(head + b"\r\n" + bytes(c.encode_base64_lines(data)))
    assert msg.get_content_type() == "text/csv"
    assert msg.get_param("charset") == "utf-8"
    assert msg.get_filename() == name
    assert msg.get_content() == data.decode()
    # the fast path writes exactly the documented header
    if name == "short.csv":
        assert head.startswith(b"Content-Type: text/csv; charset=utf-8\r\n")
    # non-text attachments carry no charset
    zhead = c.attachment_headers(c.Attachment("a.zip", b"PK", "application", "zip"))
    assert b"charset" not in zhead


def test_report_message_attachment_is_utf8_csv():
    data = "ip\n192.0.2.1\n".encode()
    atts = list(_parse(_report(data, zip_above=1 << 30)).iter_attachments())
    assert atts[0].get_content_type() == "text/csv" and atts[0].get_param("charset") == "utf-8"

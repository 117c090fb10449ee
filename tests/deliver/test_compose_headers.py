"""The top-level header block of composed messages: formatted in pieces cached per recipient
(compose._recipient_headers), it must equal format_headers() of all fields at once, and follow a
recipient changed in place."""

from __future__ import annotations

import pytest

from herald.constituency.recipients import Recipient
from herald.deliver import compose as c

TEMPLATES = c.Templates()


def _spec(r, **kw):
    part = c.ReportPart(type="scan_http", title="Accessible HTTP", rows=3, filename="a.csv",
                        sha256="ab" * 32, size=10)
    args = dict(recipient=r, day="2026-11-30", tlp="AMBER", sender="reports@cert.example",
                template="report", key="scan_http", content_sha256="ab" * 32, reports=[part],
                attachments=[c.Attachment("a.csv", b"x,y\n")])
    args.update(kw)
    return c.MessageSpec(**args)


def _expected(spec, composed):
    return c.format_headers(c.message_headers(spec, composed.subject, composed.message_id))


@pytest.mark.parametrize("kw", [
    {},
    {"unsubscribe_url": "https://portal.example/unsub/{slug}"},
    {"unsubscribe_mailto": "lists@cert.example", "tlp": "RED"},
    {"template": "digest", "key": "digest"},
])
@pytest.mark.parametrize("rcpt", [
    Recipient(name="CERT Example", email="cert@example.at", kind="national_cert", countries=["AT"]),
    Recipient(name="Netzbetreiber Österreich " + "x" * 90, email="abuse@xn--tst-qla.example",
              asns=[64496]),
])
def test_cached_header_pieces_equal_all_fields_formatted_at_once(rcpt, kw):
    spec = _spec(rcpt, **kw)
    first = c.compose(spec, TEMPLATES)
    assert first.headers == _expected(spec, first)
    again = c.compose(spec, TEMPLATES)  # from the cache
    assert again.headers == first.headers


def test_header_cache_follows_a_recipient_changed_in_place():
    r = Recipient(name="CERT One", email="one@example.at", kind="national_cert", countries=["AT"])
    before = c.compose(_spec(r), TEMPLATES)
    r.name, r.email = "CERT Two", "two@example.at"
    spec = _spec(r)
    after = c.compose(spec, TEMPLATES)
    assert after.headers == _expected(spec, after)
    assert b"To: two@example.at\r\n" in after.headers and b"cert_two" in after.headers
    assert before.headers != after.headers
    other_sender = _spec(r, sender="noc@cert.example")
    composed = c.compose(other_sender, TEMPLATES)
    assert composed.headers == _expected(other_sender, composed)
    assert composed.headers.startswith(b"From: noc@cert.example\r\n")


def test_template_render_matches_jinja_and_raises_its_errors(tmp_path):
    import jinja2
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "report.txt.j2").write_text(
        "{{ name }} {{ range(2) | list }} {% if report.rows > 1 %}many{% endif %}\n{{ missing }}\n")
    (tmp_path / "en" / "digest.txt.j2").write_text("{{ name | upper }} {{ namespace(a=1).a }}\n")
    t = c.Templates(tmp_path)
    part = c.ReportPart(type="t", title="T", rows=2, filename="f")
    with pytest.raises(jinja2.UndefinedError, match="missing"):
        t.render("report", "national_cert", "en", name="x", report=part)
    out = t.render("report", "national_cert", "en", name="x", report=part, missing="m")
    direct = t.env.get_template("site/en/report.txt.j2").render(name="x", report=part, missing="m")
    assert out == direct == "x [0, 1] manym\n"  # trim_blocks
    assert t.render("digest", "national_cert", "en", name="x") == "X 1\n"

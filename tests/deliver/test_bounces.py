"""Bounces: RFC 3464 DSNs in a Maildir are counted per address; after the threshold the outbox
holds messages to that address, and a real SMTP delivery (aiosmtpd) shows they are not sent."""

from __future__ import annotations

import mailbox
from datetime import datetime, timezone
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from herald.cli import main
from herald.config import settings_from_dict
from herald.deliver.bounces import (
    BounceError, bounce_threshold, bouncing_addresses, hold_bouncing, list_bounces, parse_dsn,
    record_bounces, reset_bounces,
)
from herald.deliver.outbox import enqueue_reports, list_outbox, send_due
from herald.errors import ConfigError
from herald.store.db import AuditRow, OutboxRow, open_db
from tests.deliver_support import DAY, SmtpServer, make_report, make_settings

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
ISP = "abuse@cable-isp.example"


def dsn(recipients: list[tuple[str, str, str]], n: int = 0) -> bytes:
    """An RFC 3464 DSN (as Postfix writes them) for ``(address, action, status)`` blocks; ``n``
    varies its bytes."""
    blocks = ["Reporting-MTA: dns; relay.example\r\nArrival-Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"]
    for addr, action, code in recipients:
        blocks.append(f"Final-Recipient: rfc822; {addr}\r\nOriginal-Recipient: rfc822;{addr}\r\n"
                      f"Action: {action}\r\nStatus: {code}\r\n"
                      f"Diagnostic-Code: smtp; 550 {code} mailbox\r\n  unavailable\r\n")
    text = (
        "From: MAILER-DAEMON@relay.example\r\nTo: reports@herald.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn{n}@relay.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
        f"--B1\r\nContent-Type: text/plain\r\n\r\nDelivery failed ({n}).\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\n" + "\r\n".join(blocks) +
        "\r\n--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "Message-ID: <report@herald.example>\r\nSubject: Herald report\r\n"
        "--B1--\r\n")
    return text.encode()


def not_a_dsn() -> bytes:
    m = EmailMessage()
    m["From"] = "abuse@cable-isp.example"
    m["Subject"] = "Auto-reply: we received your report"
    m.set_content("Thank you, Final-Recipient: rfc822; abuse@cable-isp.example\nAction: failed\nStatus: 5.1.1\n")
    return m.as_bytes()


@pytest.fixture
def maildir(tmp_path):
    path = tmp_path / "bounces"
    box = mailbox.Maildir(str(path), create=True)
    for i in range(3):
        box.add(dsn([(ISP, "failed", "5.1.1")], i))
    box.add(dsn([(ISP.upper(), "delayed", "4.4.1")], 10))  # transient: never counted
    box.add(dsn([("reports@cert.at.example", "failed", "5.2.2"), ("ok@example.net", "delivered", "2.0.0")], 11))
    box.add(not_a_dsn())
    return path


def test_parse_dsn():
    recs = parse_dsn(dsn([(ISP, "failed", "5.1.1"), ("X@Example.net", "delayed", "4.4.1")]))
    assert [(r.address, r.action, r.status, r.permanent_failure) for r in recs] == [
        (ISP, "failed", "5.1.1", True), ("x@example.net", "delayed", "4.4.1", False)]
    assert recs[0].diagnostic == "smtp; 550 5.1.1 mailbox unavailable"
    assert parse_dsn(not_a_dsn()) is None
    # a failed action with a transient status is not a permanent failure (RFC 3463 class 4)
    assert not parse_dsn(dsn([(ISP, "failed", "4.2.2")]))[0].permanent_failure


def test_record_bounces_counts_permanent_failures_once(db, maildir):
    s = record_bounces(db, maildir, threshold=3, now=NOW)
    assert (s.messages, s.dsns, s.not_dsn, s.counted, s.repeated, s.ignored) == (6, 5, 1, 4, 0, 2)
    assert s.bouncing == [ISP]
    rows = {r["address"]: r for r in list_bounces(db)}
    assert rows[ISP]["count"] == 3 and rows[ISP]["last_status"] == "5.1.1"
    assert rows[ISP]["last_bounce_at"] == NOW
    assert rows["reports@cert.at.example"]["count"] == 1
    assert "ok@example.net" not in rows
    again = record_bounces(db, maildir, threshold=3, now=NOW)
    assert (again.counted, again.repeated) == (0, 4)
    assert list_bounces(db)[0]["count"] == 3
    assert bouncing_addresses(db, 1) == {ISP, "reports@cert.at.example"}


def test_not_a_maildir(db, tmp_path):
    with pytest.raises(BounceError, match="not a Maildir"):
        record_bounces(db, tmp_path)


def test_threshold_setting(tmp_path):
    s = settings_from_dict({"abuse_contacts": {"bounce_threshold": 5}}, base=tmp_path)
    assert bounce_threshold(s) == 5
    assert bounce_threshold(settings_from_dict({}, base=tmp_path)) == 3
    with pytest.raises(ConfigError, match="bounce_threshold"):
        bounce_threshold(settings_from_dict({"abuse_contacts": {"bounce_threshold": 0}}, base=tmp_path))


def test_held_message_is_not_sent_through_a_real_relay(db_url, tmp_path, maildir):
    with SmtpServer() as srv:
        _, raw = make_settings(tmp_path, db_url, smtp={"port": srv.port})
        raw["abuse_contacts"] = {"bounce_threshold": 3}
        settings = settings_from_dict(raw, base=tmp_path)
        db = open_db(db_url, upgrade=True)
        isp, cert = enqueue_reports(db, settings, [make_report(tmp_path, "Example Cable ISP", "scan_http"),
                                                   make_report(tmp_path, "CERT.at", "scan_rdp")], DAY)
        record_bounces(db, maildir, bounce_threshold(settings), now=NOW)  # ISP 3 bounces, CERT.at 1
        res = send_due(db, settings)
        assert res.held == [isp] and res.sent == [cert]
        assert [env.rcpt_tos for env in srv.handler.received] == [["reports@cert.at.example"]]
        held = list_outbox(db, state="held")
        assert [(e.id, e.hold_reason) for e in held] == [(isp, "bouncing")]
        assert f"{ISP} bounced 3 times (last 5.1.1" in held[0].last_error
        assert send_due(db, settings).sent == []  # still held
        assert len(srv.handler.received) == 1
        # The operator fixed the address: reset re-queues, the next pass delivers.
        assert reset_bounces(db, ISP, "cli:test", "new mailbox confirmed") == [isp]
        assert send_due(db, settings).sent == [isp]
        assert len(srv.handler.received) == 2
        with db.session() as s:
            audit = s.scalars(sa.select(AuditRow).where(AuditRow.action == "bounces.reset")).one()
            assert audit.object_id == ISP and audit.details["requeued"] == [isp]
            assert s.get(OutboxRow, isp).state == "sent"
        with pytest.raises(BounceError):
            reset_bounces(db, ISP, "cli:test")
        db.dispose()


def test_hold_bouncing_leaves_other_states(db_url, tmp_path, maildir):
    settings, _ = make_settings(tmp_path, db_url, smtp={"port": 25})
    db = open_db(db_url, upgrade=True)
    (a,) = enqueue_reports(db, settings, [make_report(tmp_path, "Example Cable ISP", "scan_http")], DAY)
    with db.session() as s:
        s.execute(sa.update(OutboxRow).where(OutboxRow.id == a).values(state="sent"))
    record_bounces(db, maildir, now=NOW)
    assert hold_bouncing(db, 3) == []
    db.dispose()


def test_cli(db_url, tmp_path, maildir, capsys):
    cfg = tmp_path / "herald.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[abuse_contacts]\nbounce_threshold = 2\n')
    open_db(db_url, upgrade=True).dispose()  # PostgreSQL is migrated by 'herald db upgrade' only
    assert main(["bounces", "--config", str(cfg), str(maildir)]) == 0
    out = capsys.readouterr().out
    assert "6 message(s): 5 DSN(s), 1 other; 4 permanent failure(s) counted" in out
    assert f"bouncing (>= 2): {ISP}" in out
    assert main(["bounces", "--config", str(cfg), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{ISP}\t3\t5.1.1\t") and lines[0].endswith("BOUNCING")
    assert not lines[1].endswith("BOUNCING")
    assert main(["bounces", "--config", str(cfg), "--reset", ISP, "--actor", "cli:t"]) == 0
    assert "bounces forgotten; 0 held message(s)" in capsys.readouterr().out
    assert main(["bounces", "--config", str(cfg), "--reset", ISP]) == 1
    assert main(["bounces", "--config", str(cfg)]) == 2

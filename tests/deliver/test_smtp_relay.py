"""SMTP delivery against a real server (aiosmtpd on 127.0.0.1): plain, STARTTLS with a
self-signed certificate, implicit TLS, AUTH, 4xx then 2xx, 5xx, refused recipients, a server that
drops the connection after DATA, and the rate limit.  Outbox rows on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
import tomli_w

from herald.cli import main
from herald.deliver.outbox import enqueue_reports, list_outbox, send_due
from herald.deliver.settings import delivery_settings
from herald.errors import ConfigError
from herald.store.db import open_db, utcnow
from tests.deliver_support import (
    DAY, Handler, SmtpServer, authenticator, free_port, make_report, make_settings,
    self_signed, server_tls_context,
)


def _setup(tmp_path, db_url, port, n=1, **kw):
    settings, raw = make_settings(tmp_path, db_url, smtp={"port": port, **kw.pop("smtp", {})}, **kw)
    db = open_db(db_url, upgrade=True)
    reps = [make_report(tmp_path, "Example Cable ISP", t) for t in
            ("scan_http", "scan_rdp", "scan_dns", "scan_mongodb")[:n]]
    ids = enqueue_reports(db, settings, reps, DAY)
    return settings, raw, db, reps, ids


def test_delivers_each_report_once_with_the_required_headers(db_url, tmp_path):
    with SmtpServer() as srv:
        settings, _, db, reps, ids = _setup(tmp_path, db_url, srv.port, n=2,
                                            smtp={"envelope_sender": "bounces@herald.example"})
        res = send_due(db, settings)
        assert sorted(res.sent) == sorted(ids) and not res.errors
        assert len(srv.handler.received) == 2
        for rec, rep in zip(sorted(srv.handler.received, key=lambda r: r.message_id),
                            sorted(reps, key=lambda r: r["outbox_id"])):
            assert rec.mail_from == "bounces@herald.example"  # envelope sender recorded and used
            assert rec.rcpt_tos == ["abuse@cable-isp.example"]
            msg = message_from_bytes(rec.data, policy=policy.default)
            assert msg["Subject"].startswith("[Herald] AS7922 ") and msg["Subject"].endswith(
                f"Report {DAY} [TLP:AMBER]")
            assert msg["Auto-Submitted"] == "auto-generated"
            assert msg["List-Unsubscribe"].startswith("<mailto:")
            assert msg["Message-ID"].startswith(f"<{DAY}.")
            body = msg.get_body(("plain",)).get_content()
            assert "TLP:AMBER" in body
            att = next(p for p in msg.iter_attachments())
            assert att.get_payload(decode=True) == open(rep["path"], "rb").read()
        rows = list_outbox(db)
        assert {r.state for r in rows} == {"sent"}
        assert all(r.smtp_reply.startswith("250") and r.envelope_sender == "bounces@herald.example"
                   for r in rows)
        # Re-running the enqueue and the sender sends nothing again.
        assert enqueue_reports(db, settings, reps, DAY) == ids
        again = send_due(db, settings)
        assert again.sent == [] and len(srv.handler.received) == 2
    db.dispose()


def test_starttls_with_self_signed_certificate_and_auth(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("TEST_SMTP_PW", "s3cret")
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    with SmtpServer(tls_context=server_tls_context(cert, key), require_starttls=True,
                    auth_required=True, authenticator=authenticator({"herald": "s3cret"})) as srv:
        settings, _, db, _, ids = _setup(tmp_path, db_url, srv.port, smtp={
            "security": "starttls", "tls_ca_file": str(cert), "username": "herald",
            "password_env": "TEST_SMTP_PW"})
        res = send_due(db, settings)
        assert res.sent == ids
        rec = srv.handler.received[0]
        assert rec.tls and rec.login == "herald"
    db.dispose()


def test_starttls_refuses_an_untrusted_certificate_and_keeps_the_message(tmp_path):
    cert, key = self_signed(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    with SmtpServer(tls_context=server_tls_context(cert, key), require_starttls=True) as srv:
        settings, _, db, _, ids = _setup(tmp_path, db_url, srv.port, smtp={"security": "starttls"})
        res = send_due(db, settings)
        assert res.sent == [] and res.retried == ids
        assert "certificate verify failed" in res.errors[0]
        assert srv.handler.received == []
        row = list_outbox(db)[0]
        assert row.state == "queued" and "TLS failed" in row.last_error
    db.dispose()


def test_implicit_tls(tmp_path):
    cert, key = self_signed(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    with SmtpServer(ssl_context=server_tls_context(cert, key)) as srv:
        settings, _, db, _, ids = _setup(tmp_path, db_url, srv.port,
                                         smtp={"security": "tls", "tls_ca_file": str(cert)})
        assert send_due(db, settings).sent == ids
        assert srv.handler.received[0].tls
    db.dispose()


def test_wrong_password_keeps_messages_queued_with_the_reason(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("TEST_SMTP_PW", "wrong")
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    with SmtpServer(tls_context=server_tls_context(cert, key), require_starttls=True,
                    auth_required=True, authenticator=authenticator({"herald": "s3cret"})) as srv:
        settings, _, db, _, ids = _setup(tmp_path, db_url, srv.port, n=2, smtp={
            "security": "starttls", "tls_ca_file": str(cert), "username": "herald",
            "password_env": "TEST_SMTP_PW"})
        res = send_due(db, settings)
        assert res.sent == [] and len(res.retried) == 1  # the pass stops at the relay error
        assert "authentication failed: 535" in res.errors[0]
        states = {r.id: (r.state, r.attempts) for r in list_outbox(db)}
        assert states == {ids[0]: ("queued", 1), ids[1]: ("queued", 0)}
    db.dispose()


def test_password_is_never_read_from_the_toml_file(tmp_path):
    settings, _ = make_settings(tmp_path, "sqlite://", smtp={"password": "oops"})
    with pytest.raises(ConfigError, match="must not be written in the configuration file"):
        delivery_settings(settings)
    settings, _ = make_settings(tmp_path, "sqlite://", smtp={"password_env": "NOPE_NOT_SET_X"})
    with pytest.raises(ConfigError, match="NOPE_NOT_SET_X is not set"):
        delivery_settings(settings).smtp.password()
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    settings, _ = make_settings(tmp_path, "sqlite://", smtp={"password_file": str(pw)})
    assert delivery_settings(settings).smtp.password() == "from-file"


def test_temporary_failure_is_retried_with_backoff_then_sent(db_url, tmp_path, capsys):
    handler = Handler(data_replies=["451 4.3.0 mailbox busy, try later"])
    with SmtpServer(handler) as srv:
        settings, raw, db, _, ids = _setup(tmp_path, db_url, srv.port, smtp={"retry_base": 60})
        now = utcnow()
        res = send_due(db, settings, now=now)
        assert res.retried == ids and res.sent == []
        row = list_outbox(db)[0]
        assert row.state == "queued" and row.attempts == 1
        assert "451 4.3.0 mailbox busy" in row.last_error and "temporary" in row.last_error
        # exponential backoff with jitter: base 60 s, first retry after 30..60 s
        assert now + timedelta(seconds=29) <= row.next_attempt_at <= now + timedelta(seconds=61)
        cfg = tmp_path / "herald.toml"
        cfg.write_text(tomli_w.dumps(raw))
        assert main(["outbox", "--config", str(cfg), "--state", "queued"]) == 0
        assert "message refused (temporary): 451 4.3.0 mailbox busy" in capsys.readouterr().out
        assert send_due(db, settings, now=now).sent == []  # not due yet
        res = send_due(db, settings, now=now + timedelta(minutes=2))
        assert res.sent == ids
        assert srv.handler.counts() == {list_outbox(db)[0].message_id: 1}
    db.dispose()


def test_backoff_grows_exponentially_and_gives_up(tmp_path):
    handler = Handler(data_replies=["421 4.7.0 busy"] * 10)
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    with SmtpServer(handler) as srv:
        settings, _, db, _, ids = _setup(tmp_path, db_url, srv.port,
                                         smtp={"retry_base": 10, "max_attempts": 3})
        now = utcnow()
        delays = []
        for i in range(2):
            send_due(db, settings, now=now)
            row = list_outbox(db)[0]
            delays.append((row.next_attempt_at - now).total_seconds())
            now = row.next_attempt_at
        assert 5 <= delays[0] <= 10.5 and 10 <= delays[1] <= 20.5
        res = send_due(db, settings, now=now)
        assert res.failed == ids
        row = list_outbox(db)[0]
        assert row.state == "failed" and row.last_error.startswith("gave up after 3 attempts")
    db.dispose()


def test_permanent_failure_and_refused_recipient_are_failed_with_the_reply(db_url, tmp_path, capsys):
    handler = Handler(data_replies=["554 5.7.1 message rejected as spam"],
                      rcpt_replies={"reports@cert.at.example": "550 5.1.1 no such user"})
    with SmtpServer(handler) as srv:
        settings, raw, db, _, ids = _setup(tmp_path, db_url, srv.port)
        more = enqueue_reports(db, settings, [make_report(tmp_path, "CERT.at", "scan_rdp")], DAY)
        res = send_due(db, settings)
        assert sorted(res.failed) == sorted(ids + more) and srv.handler.received == []
        rows = {r.id: r for r in list_outbox(db)}
        assert rows[ids[0]].last_error == "message refused (permanent): 554 5.7.1 message rejected as spam"
        assert rows[more[0]].last_error == "recipient refused (permanent): 550 5.1.1 no such user"
        assert send_due(db, settings).sent == []  # failed messages are not retried
        cfg = tmp_path / "herald.toml"
        cfg.write_text(tomli_w.dumps(raw))
        assert main(["outbox", "--config", str(cfg), "--state", "failed"]) == 0
        out = capsys.readouterr().out
        assert "550 5.1.1 no such user" in out and "554 5.7.1 message rejected as spam" in out
        assert "2 message(s): 2 failed" in out
    db.dispose()


def test_connection_refused_is_temporary(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    settings, _, db, _, ids = _setup(tmp_path, db_url, free_port())
    res = send_due(db, settings)
    assert res.retried == ids and "cannot connect" in res.errors[0]
    row = list_outbox(db)[0]
    assert row.state == "queued" and "relay unavailable (temporary)" in row.last_error
    db.dispose()


def test_connection_dropped_after_data_is_held_and_never_resent_blindly(db_url, tmp_path, capsys):
    handler = Handler(drop_after_data=True)
    with SmtpServer(handler) as srv:
        settings, raw, db, _, ids = _setup(tmp_path, db_url, srv.port)
        res = send_due(db, settings)
        assert res.held == ids and res.sent == []
        row = list_outbox(db)[0]
        assert row.state == "held" and row.hold_reason == "outcome_unknown"
        assert "did not answer the end of the message data" in row.last_error
        assert f"--release {ids[0]}" in row.last_error and row.message_id in row.last_error
        assert send_due(db, settings).sent == []  # held: not resent by the next pass
        # The operator checked the relay's log: it was not delivered; release it.
        handler.drop_after_data = False
        cfg = tmp_path / "herald.toml"
        cfg.write_text(tomli_w.dumps(raw))
        assert main(["outbox", "--config", str(cfg), "--release", str(ids[0]),
                     "--reason", "not in relay log", "--actor", "cli:test"]) == 0
        assert send_due(db, settings).sent == ids
        assert srv.handler.counts() == {row.message_id: 1}
        from herald.store import audit
        entries = audit.query(db, action="outbox.release")
        assert [(e.actor, e.reason) for e in entries] == [("cli:test", "not in relay log")]
    db.dispose()


def test_rate_limit_per_relay(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    with SmtpServer() as srv:
        settings, _, db, _, ids = _setup(tmp_path, db_url, srv.port, n=4,
                                         smtp={"rate_per_second": 10})
        t = time.monotonic()
        assert len(send_due(db, settings).sent) == 4
        assert time.monotonic() - t >= 0.3  # 4 messages at 10/s: 3 intervals of 0.1 s
    db.dispose()


def test_auth_over_plain_text_is_refused_for_a_remote_relay(monkeypatch):
    from herald.deliver.settings import SmtpSettings
    from herald.deliver.smtp import Outcome, Relay

    with SmtpServer(host="127.0.0.2") as srv:  # loopback, but not the literal the guard exempts
        relay = Relay(SmtpSettings(host="127.0.0.2", port=srv.port, security="none",
                                   username="herald", rate_per_second=0, timeout=5), "pw")
        attempt = relay.send("a@herald.example", "b@isp.example", b"Subject: x\r\n\r\nx\r\n")
        assert attempt.outcome is Outcome.RETRY and attempt.relay_error
        assert "without TLS" in attempt.reply and srv.handler.commands == []


def test_several_addresses_are_one_rcpt_each_and_a_refusal_loses_no_other():
    """An abuse-mailbox list is one transaction with one ``RCPT TO`` per address (RFC 5321
    4.1.1.3); a quoted local part stays quoted; a 5yz for one address keeps its reply while the
    others get the message and the end-of-data reply; all refused: nothing is sent."""
    from herald.deliver.settings import SmtpSettings
    from herald.deliver.smtp import Outcome, Relay

    listed = ["abuse@customer.example.net", '"abuse desk"@c.example.net', "noc@customer.example.net"]
    handler = Handler(rcpt_replies={"noc@customer.example.net": "550 5.1.1 no such user"})
    with SmtpServer(handler) as srv:
        relay = Relay(SmtpSettings(host="127.0.0.1", port=srv.port, security="none",
                                   rate_per_second=0, timeout=5))
        try:
            attempt = relay.send("bounces@herald.example", listed, b"Subject: x\r\n\r\nx\r\n")
            assert [c for c in handler.commands if c.startswith("RCPT")] == [f"RCPT {a}" for a in listed]
            assert [r.rcpt_tos for r in handler.received] == [listed[:2]]
            assert attempt.outcome is Outcome.SENT and attempt.reply.startswith("250")
            got = [(r.address, r.outcome, r.stage, r.reply) for r in attempt.recipients]
            assert got == [(listed[0], Outcome.SENT, "end of data", attempt.reply),
                           (listed[1], Outcome.SENT, "end of data", attempt.reply),
                           (listed[2], Outcome.FAILED, "RCPT", "550 5.1.1 no such user")]
            # Every address refused (one temporarily): nothing sent, retry decides.
            handler.rcpt_replies.update({listed[0]: "550 5.1.1 gone", listed[1]: "451 4.3.0 later"})
            attempt = relay.send("bounces@herald.example", listed, b"Subject: y\r\n\r\ny\r\n")
            assert attempt.outcome is Outcome.RETRY and attempt.stage == "RCPT"
            assert [r.outcome for r in attempt.recipients] == [Outcome.FAILED, Outcome.RETRY, Outcome.FAILED]
            assert attempt.reply.startswith(f"{listed[0]}: 550 5.1.1 gone; {listed[1]}: 451")
            assert len(handler.received) == 1 and handler.commands.count("DATA") == 1
            # The connection stays usable for the next transaction (RSET after the refusal).
            handler.rcpt_replies.clear()
            assert relay.send("bounces@herald.example", listed[0], b"Subject: z\r\n\r\nz\r\n").outcome \
                is Outcome.SENT
        finally:
            relay.close()

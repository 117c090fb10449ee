"""The outbox: idempotent enqueue, digest mode, templates per kind and language, ZIP above a size,
the crash-recovery policy, the sender lock — and the daily job on examples/ delivered into a real
SMTP server, every report exactly once, signed, and encrypted where a key is on file."""

from __future__ import annotations

import io
import shutil
import tomllib
import zipfile
from email import message_from_bytes, policy
from pathlib import Path

import gnupg
import sqlalchemy as sa

from herald.config import settings_from_dict
from herald.deliver.outbox import (
    enqueue_reports, list_outbox, mark_sent, send_due, sender_lock,
)
from herald.deliver.settings import delivery_settings
from herald.pipeline import run_day
from herald.store.db import OutboxRow, open_db
from tests.deliver_support import DAY, RECIPIENTS, SmtpServer, make_report, make_settings, split_signed


def _msg(path: str):
    return message_from_bytes(Path(path).read_bytes(), policy=policy.default)


def test_enqueue_is_idempotent_and_annotates_the_summary(db_url, tmp_path):
    settings, _ = make_settings(tmp_path, db_url, smtp={"port": 25})
    db = open_db(db_url, upgrade=True)
    reps = [make_report(tmp_path, "Example Cable ISP", "scan_http"),
            make_report(tmp_path, "CERT.at", "scan_rdp")]
    ids = enqueue_reports(db, settings, reps, DAY)
    assert len(ids) == 2 and [r["outbox_id"] for r in reps] == ids
    assert [r["delivery"] for r in reps] == ["queued", "queued"]
    again = [dict(r) for r in reps]
    assert enqueue_reports(db, settings, again, DAY) == ids
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(OutboxRow)) == 2
    # a changed report is a different message (new content, new Message-ID)
    changed = make_report(tmp_path, "CERT.at", "scan_rdp", salt="x")
    assert enqueue_reports(db, settings, [changed], DAY)[0] not in ids
    # a report file changed after the run is not sent
    bad = make_report(tmp_path, "Example Cable ISP", "scan_dns")
    Path(bad["path"]).write_text("tampered\n")
    assert enqueue_reports(db, settings, [bad], DAY) == []
    assert bad["delivery"] == "error" and "changed since the run" in bad["delivery_reason"]
    db.dispose()


def test_digest_mode_one_message_per_recipient_per_day(tmp_path):
    recips = [dict(r) for r in RECIPIENTS]
    recips[1]["digest"] = True
    settings, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", smtp={"port": 25},
                                recipients=recips)
    db = open_db(settings.database_url)
    reps = [make_report(tmp_path, "CERT.at", t) for t in ("scan_rdp", "scan_http", "blocklist")]
    reps.append(make_report(tmp_path, "Example Cable ISP", "scan_http"))
    ids = enqueue_reports(db, settings, reps, DAY)
    assert len(ids) == 2 and reps[0]["outbox_id"] == reps[1]["outbox_id"] == reps[2]["outbox_id"]
    digest = next(e for e in list_outbox(db) if e.recipient == "CERT.at")
    assert digest.report_type == "digest"
    assert digest.subject == f"[Herald] AT Daily Digest Report {DAY} [TLP:AMBER]"
    msg = _msg(digest.path)
    names = sorted(a.get_filename() for a in msg.iter_attachments())
    assert names == sorted(Path(r["path"]).name for r in reps[:3])
    body = msg.get_body(("plain",)).get_content()
    assert "3 report(s)" in body and "Blocklist" in body and "Accessible RDP" in body
    assert enqueue_reports(db, settings, reps, DAY) == ids
    db.dispose()


def test_templates_overridable_per_kind_and_language(tmp_path):
    site = tmp_path / "site-templates"
    (site / "de" / "national_cert").mkdir(parents=True)
    (site / "de" / "national_cert" / "report.txt.j2").write_text(
        "TLP:{{ tlp }}\nHallo {{ name }}, {{ report.rows }} Ereignis(se) am {{ day }}.\n")
    (site / "en").mkdir()
    (site / "en" / "report.txt.j2").write_text("TLP:{{ tlp }}\nSite English for {{ area }}.\n")
    recips = [dict(r) for r in RECIPIENTS]
    recips[1]["language"] = "de"
    settings, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", smtp={"port": 25},
                                mail={"templates": str(site)}, recipients=recips)
    db = open_db(settings.database_url)
    reps = [make_report(tmp_path, "CERT.at", "scan_rdp", rows=4),
            make_report(tmp_path, "Example Cable ISP", "scan_http")]
    enqueue_reports(db, settings, reps, DAY)
    bodies = {e.recipient: _msg(e.path).get_body(("plain",)).get_content().replace("\r\n", "\n")
              for e in list_outbox(db)}
    assert bodies["CERT.at"] == f"TLP:AMBER\nHallo CERT.at, 4 Ereignis(se) am {DAY}.\n"
    assert bodies["Example Cable ISP"] == "TLP:AMBER\nSite English for AS7922.\n"
    db.dispose()


def test_built_in_templates_per_kind(tmp_path):
    recips = [dict(r) for r in RECIPIENTS] + [{
        "name": "Task Force", "email": "tf@police.example", "kind": "law_enforcement",
        "countries": ["AT"], "operation": "virut-takedown", "tlp": "RED"}]
    settings, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", smtp={"port": 25},
                                recipients=recips)
    db = open_db(settings.database_url)
    rep = make_report(tmp_path, "Task Force", "event4_sinkhole")
    rep["tlp"] = "RED"
    enqueue_reports(db, settings, [rep], DAY)
    e = list_outbox(db)[0]
    body = _msg(e.path).get_body(("plain",)).get_content()
    assert 'operation "virut-takedown"' in body and "TLP:RED" in body
    assert e.subject == f"[Herald] AT Sinkhole Events IPv4 Report {DAY} [TLP:RED]" and e.tlp == "RED"
    db.dispose()


def test_attachment_zipped_above_the_configured_size(tmp_path):
    settings, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", smtp={"port": 25},
                                mail={"zip_above": 600})
    db = open_db(settings.database_url)
    small = make_report(tmp_path, "CERT.at", "scan_rdp", rows=0)
    big = make_report(tmp_path, "Example Cable ISP", "scan_http", rows=20)
    assert Path(small["path"]).stat().st_size <= 600 < Path(big["path"]).stat().st_size
    enqueue_reports(db, settings, [small, big], DAY)
    by = {e.recipient: _msg(e.path) for e in list_outbox(db)}
    att = next(by["Example Cable ISP"].iter_attachments())
    assert att.get_filename() == Path(big["path"]).name + ".zip"
    assert att.get_content_type() == "application/zip"
    with zipfile.ZipFile(io.BytesIO(att.get_payload(decode=True))) as zf:
        assert zf.read(Path(big["path"]).name) == Path(big["path"]).read_bytes()
    assert next(by["CERT.at"].iter_attachments()).get_filename() == Path(small["path"]).name
    db.dispose()


def test_unsubscribe_url_gives_one_click_header(tmp_path):
    settings, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", smtp={"port": 25},
                                mail={"unsubscribe_url": "https://portal.herald.example/unsubscribe/{slug}"})
    db = open_db(settings.database_url)
    enqueue_reports(db, settings, [make_report(tmp_path, "CERT.at", "scan_rdp")], DAY)
    msg = _msg(list_outbox(db)[0].path)
    assert msg["List-Unsubscribe"] == ("<https://portal.herald.example/unsubscribe/cert_at>, "
                                       "<mailto:reports@herald.example?subject=unsubscribe%20cert_at>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://portal.herald.example/unsubscribe/cert_at" in msg.get_body(("plain",)).get_content()
    db.dispose()


def test_recovery_policy_for_rows_left_sending(db_url, tmp_path):
    with SmtpServer() as srv:
        settings, _ = make_settings(tmp_path, db_url, smtp={"port": srv.port})
        db = open_db(db_url, upgrade=True)
        reps = [make_report(tmp_path, "Example Cable ISP", t) for t in ("scan_http", "scan_rdp")]
        a, b = enqueue_reports(db, settings, reps, DAY)
        with db.session() as s:  # as a sender killed mid-transaction leaves them
            s.execute(sa.update(OutboxRow).where(OutboxRow.id == a).values(state="sending", smtp_phase="smtp"))
            s.execute(sa.update(OutboxRow).where(OutboxRow.id == b).values(state="sending", smtp_phase="eod"))
        res = send_due(db, settings)
        assert res.requeued == [a] and res.held == [b] and res.sent == [a]
        held = list_outbox(db, state="held")[0]
        assert held.hold_reason == "outcome_unknown" and f"--mark-sent {b}" in held.last_error
        assert len(srv.handler.received) == 1
        mark_sent(db, b, "cli:test", "relay log shows 250")
        assert {e.state for e in list_outbox(db)} == {"sent"}
        # resend policy, for operators who prefer at-least-once
        settings2, _ = make_settings(tmp_path, db_url, smtp={"port": srv.port, "unknown_outcome": "resend"})
        c = enqueue_reports(db, settings2, [make_report(tmp_path, "CERT.at", "scan_rdp")], DAY)[0]
        with db.session() as s:
            s.execute(sa.update(OutboxRow).where(OutboxRow.id == c).values(state="sending", smtp_phase="eod"))
        assert send_due(db, settings2).sent == [c]
    db.dispose()


def test_only_one_sender_at_a_time(db_url, tmp_path):
    settings, _ = make_settings(tmp_path, db_url, smtp={"port": 25})
    db = open_db(db_url, upgrade=True)
    enqueue_reports(db, settings, [make_report(tmp_path, "CERT.at", "scan_rdp")], DAY)
    with sender_lock(db, delivery_settings(settings).spool) as got:
        assert got
        res = send_due(db, settings)
        assert res.busy and res.sent == [] and "sender lock" in res.errors[0]
    assert list_outbox(db)[0].state == "queued" and list_outbox(db)[0].attempts == 0
    db.dispose()


def test_daily_job_on_examples_arrives_exactly_once_signed_and_encrypted(gpg_keys, tmp_path, repo_root):
    raw = tomllib.loads((repo_root / "examples" / "herald.toml").read_text())
    shutil.copytree(repo_root / "examples" / "inbox", tmp_path / "inbox")
    raw["paths"] = {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"}
    raw["database"] = {"url": f"sqlite:///{tmp_path / 'data' / 'herald.db'}"}
    cable = next(r for r in raw["recipients"] if r["name"] == "Example Cable ISP")
    cable["pgp_fingerprint"] = gpg_keys.rcpt_fpr
    raw["pgp"] = {"gnupghome": str(gpg_keys.herald_home), "signing_key": gpg_keys.herald_fpr}
    with SmtpServer() as srv:
        raw["smtp"] = {"host": "127.0.0.1", "port": srv.port, "security": "none",
                       "rate_per_second": 0, "timeout": 10}
        settings = settings_from_dict(raw, base=tmp_path)
        summary = run_day(settings, DAY)
        assert summary.reports, summary.errors
        db = open_db(settings.database_url)
        ids = enqueue_reports(db, settings, summary.reports, DAY)
        assert len(set(ids)) == len(summary.reports)
        assert all(r["delivery"] == "queued" for r in summary.reports)
        res = send_due(db, settings)
        assert sorted(res.sent) == sorted(ids) and not res.failed and not res.held
        # re-running the day and the sender sends nothing twice
        summary2 = run_day(settings, DAY)
        assert set(enqueue_reports(db, settings, summary2.reports, DAY)) <= set(ids)
        assert enqueue_reports(db, settings, [dict(r) for r in summary.reports], DAY) == ids
        assert send_due(db, settings).sent == []
        got = srv.handler.counts()
        expected = {e.message_id for e in list_outbox(db)}
        assert set(got) == expected and set(got.values()) == {1}
        herald_gpg = gnupg.GPG(gnupghome=str(gpg_keys.rcpt_home))
        by_rcpt = {}
        for rec in srv.handler.received:
            by_rcpt.setdefault(rec.rcpt_tos[0], []).append(rec)
        for rep in summary.reports:
            rcpt = next(r["email"] for r in raw["recipients"] if r["name"] == rep["recipient"])
            rec = next(x for x in by_rcpt[rcpt]
                       if message_from_bytes(x.data, policy=policy.default)["X-Herald-Report-Type"] == rep["type"])
            msg = message_from_bytes(rec.data, policy=policy.default)
            assert f"[TLP:{rep['tlp']}]" in msg["Subject"]
            if rep["recipient"] == "Example Cable ISP":
                assert msg.get_content_type() == "multipart/encrypted"
                dec = herald_gpg.decrypt(list(msg.iter_parts())[1].get_payload(decode=True))
                assert dec.ok and dec.valid and dec.fingerprint == gpg_keys.herald_fpr
                inner = message_from_bytes(dec.data, policy=policy.default)
            else:
                assert msg.get_content_type() == "multipart/signed"
                signed, sig = split_signed(rec.data)
                sig_file = tmp_path / "sig.asc"
                sig_file.write_bytes(sig)
                v = herald_gpg.verify_data(str(sig_file), signed)
                assert v.valid and v.fingerprint == gpg_keys.herald_fpr
                inner = message_from_bytes(signed, policy=policy.default)
            att = next(inner.iter_attachments())
            assert att.get_payload(decode=True) == Path(rep["path"]).read_bytes()
        db.dispose()

"""OpenPGP (RFC 3156): every message signed as PGP/MIME, encrypted where the recipient has a key on
file, held when that key is expired or missing.  Verified with GnuPG in the recipient's own home."""

from __future__ import annotations

import re
from pathlib import Path
import subprocess
from email import message_from_bytes, policy

import gnupg
import pytest
import tomli_w

from herald.cli import main
from herald.deliver.outbox import enqueue_reports, list_outbox, release, send_due
from herald.deliver.outbox import OutboxError
from herald.store.db import open_db
from tests.deliver_support import (
    DAY, RECIPIENTS, SmtpServer, fingerprint_of, make_report, make_settings, run_gpg, split_signed,
)


def _settings(tmp_path, db_url, port, keys, fingerprints: dict[str, str] | None = None, pgp=True):
    recips = [dict(r) for r in RECIPIENTS]
    for r in recips:
        if fingerprints and r["name"] in fingerprints:
            r["pgp_fingerprint"] = fingerprints[r["name"]]
    return make_settings(tmp_path, db_url, smtp={"port": port}, recipients=recips,
                         pgp={"gnupghome": str(keys.herald_home), "signing_key": keys.herald_fpr}
                         if pgp else None)


def test_signed_pgp_mime_verifies_over_the_canonical_part(gpg_keys, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    with SmtpServer() as srv:
        settings, _ = _settings(tmp_path, db_url, srv.port, gpg_keys)
        db = open_db(db_url)
        rep = make_report(tmp_path, "Example Cable ISP", "scan_http", rows=3)
        ids = enqueue_reports(db, settings, [rep], DAY)
        assert rep["delivery"] == "queued"
        assert send_due(db, settings).sent == ids
        raw = srv.handler.received[0].data
        msg = message_from_bytes(raw, policy=policy.default)
        assert msg.get_content_type() == "multipart/signed"
        assert msg.get_param("micalg") == "pgp-sha256"
        assert msg.get_param("protocol") == "application/pgp-signature"
        signed, sig = split_signed(raw)
        assert b"\n" not in signed.replace(b"\r\n", b"")  # canonical CRLF line endings only
        assert signed.startswith(b"Content-Type: multipart/mixed")
        verified = gnupg.GPG(gnupghome=str(gpg_keys.rcpt_home))
        sig_file = tmp_path / "sig.asc"
        sig_file.write_bytes(sig)
        v = verified.verify_data(str(sig_file), signed)
        assert v.valid and v.fingerprint == gpg_keys.herald_fpr
        # One changed byte in the signed part breaks the signature.
        assert not verified.verify_data(str(sig_file), signed.replace(b"TLP:AMBER", b"TLP:GREEN", 1)).valid
        inner = message_from_bytes(signed, policy=policy.default)
        att = next(inner.iter_attachments())
        assert att.get_payload(decode=True) == open(rep["path"], "rb").read()
        assert list_outbox(db)[0].protection == "signed"
        db.dispose()


def test_encrypted_to_the_key_on_file_and_signed(gpg_keys, db_url, tmp_path):
    with SmtpServer() as srv:
        settings, _ = _settings(tmp_path, db_url, srv.port, gpg_keys,
                                {"Example Cable ISP": gpg_keys.rcpt_fpr})
        db = open_db(db_url, upgrade=True)
        rep = make_report(tmp_path, "Example Cable ISP", "scan_http", rows=3)
        ids = enqueue_reports(db, settings, [rep], DAY)
        assert send_due(db, settings).sent == ids
        raw = srv.handler.received[0].data
        assert b"192.0.2.1" not in raw and b"Content-Type: text/csv" not in raw
        msg = message_from_bytes(raw, policy=policy.default)
        assert msg.get_content_type() == "multipart/encrypted"
        assert msg.get_param("protocol") == "application/pgp-encrypted"
        control, payload = list(msg.iter_parts())
        assert control.get_content_type() == "application/pgp-encrypted"
        assert control.get_payload(decode=True).strip() == b"Version: 1"
        rcpt = gnupg.GPG(gnupghome=str(gpg_keys.rcpt_home))
        dec = rcpt.decrypt(payload.get_payload(decode=True))
        assert dec.ok and dec.valid and dec.fingerprint == gpg_keys.herald_fpr
        inner = message_from_bytes(dec.data, policy=policy.default)
        att = next(inner.iter_attachments())
        assert att.get_payload(decode=True) == open(rep["path"], "rb").read()
        assert "TLP:AMBER" in msg["Subject"]
        assert list_outbox(db)[0].protection == "encrypted"
        db.dispose()


def test_expired_key_holds_the_message_with_the_reason(gpg_keys, db_url, tmp_path, capsys):
    with SmtpServer() as srv:
        settings, raw = _settings(tmp_path, db_url, srv.port, gpg_keys,
                                  {"Old Key Org": gpg_keys.expired_fpr})
        db = open_db(db_url, upgrade=True)
        rep = make_report(tmp_path, "Old Key Org", "scan_rdp")
        ok = make_report(tmp_path, "CERT.at", "scan_rdp")
        ids = enqueue_reports(db, settings, [rep, ok], DAY)
        assert rep["delivery"] == "held" and ok["delivery"] == "queued"
        assert f"OpenPGP key {gpg_keys.expired_fpr} expired on 2020-01-02" in rep["delivery_reason"]
        res = send_due(db, settings)
        assert res.sent == [ids[1]] and len(srv.handler.received) == 1
        held = list_outbox(db, state="held")
        assert [h.id for h in held] == [ids[0]] and held[0].hold_reason == "pgp_key"
        cfg = tmp_path / "herald.toml"
        cfg.write_text(tomli_w.dumps(raw))
        assert main(["outbox", "--config", str(cfg), "--state", "held"]) == 0
        out = capsys.readouterr().out
        assert "expired on 2020-01-02" in out and "noc@expired.example" in out
        with pytest.raises(OutboxError, match="still held"):
            release(db, settings, ids[0], "cli:test")
        db.dispose()


def test_missing_key_is_held_until_the_key_is_imported(gpg_keys, tmp_path):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    run_gpg(other, "--quick-gen-key", "New <noc@new.example>", "ed25519", "sign,cert", "0")
    fpr = fingerprint_of(other, "noc@new.example")
    run_gpg(other, "--quick-add-key", fpr, "cv25519", "encr", "0")
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    try:
        with SmtpServer() as srv:
            settings, _ = _settings(tmp_path, db_url, srv.port, gpg_keys, {"CERT.at": fpr})
            db = open_db(db_url)
            rep = make_report(tmp_path, "CERT.at", "scan_http")
            ids = enqueue_reports(db, settings, [rep], DAY)
            assert rep["delivery"] == "held"
            assert f"no OpenPGP key {fpr} in the keyring" in rep["delivery_reason"]
            assert send_due(db, settings).sent == [] and srv.handler.received == []
            # The operator imports the recipient's key; the next pass builds and sends it.
            run_gpg(gpg_keys.herald_home, "--import", input=run_gpg(other, "--armor", "--export", fpr))
            res = send_due(db, settings)
            assert res.released == ids and res.sent == ids
            msg = message_from_bytes(srv.handler.received[0].data, policy=policy.default)
            assert msg.get_content_type() == "multipart/encrypted"
            dec = gnupg.GPG(gnupghome=str(other)).decrypt(
                list(msg.iter_parts())[1].get_payload(decode=True))
            assert dec.ok and b"scan_http" in dec.data
            db.dispose()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(other), "--kill", "all"], capture_output=True)


def test_key_on_file_without_pgp_configured_is_held_not_sent_in_clear(gpg_keys, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    settings, _ = _settings(tmp_path, db_url, 25, gpg_keys, {"CERT.at": gpg_keys.rcpt_fpr}, pgp=False)
    db = open_db(db_url)
    rep = make_report(tmp_path, "CERT.at", "scan_http")
    enqueue_reports(db, settings, [rep], DAY)
    assert rep["delivery"] == "held" and "[pgp] is not configured" in rep["delivery_reason"]
    db.dispose()


def test_unusable_signing_key_holds_every_message(gpg_keys, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    settings, _ = make_settings(tmp_path, db_url, smtp={"port": 25}, pgp={
        "gnupghome": str(gpg_keys.herald_home), "signing_key": gpg_keys.expired_fpr})
    db = open_db(db_url)
    rep = make_report(tmp_path, "CERT.at", "scan_http")
    enqueue_reports(db, settings, [rep], DAY)
    assert rep["delivery"] == "held"
    assert re.search(r"signing key: .*(expired|no OpenPGP key)", rep["delivery_reason"])
    assert list_outbox(db)[0].hold_reason == "pgp"
    db.dispose()


def test_protected_signing_key_uses_the_passphrase_from_the_environment(tmp_path, monkeypatch):
    home = tmp_path / "protected"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", "correct horse", "--quick-gen-key", "Herald <r@herald.example>",
                    "ed25519", "sign", "0"], check=True, capture_output=True)
    fpr = fingerprint_of(home, "r@herald.example")
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    pgp = {"gnupghome": str(home), "signing_key": fpr, "passphrase_env": "TEST_PGP_PASS"}
    try:
        monkeypatch.setenv("TEST_PGP_PASS", "wrong")
        settings, _ = make_settings(tmp_path, db_url, smtp={"port": 25}, pgp=pgp)
        db = open_db(db_url)
        bad = make_report(tmp_path, "CERT.at", "scan_http")
        enqueue_reports(db, settings, [bad], DAY)
        assert bad["delivery"] == "held" and "signing failed" in bad["delivery_reason"]
        monkeypatch.setenv("TEST_PGP_PASS", "correct horse")
        good = make_report(tmp_path, "Example Cable ISP", "scan_http")
        enqueue_reports(db, settings, [good], DAY)
        assert good["delivery"] == "queued"
        raw = Path(list_outbox(db, ids=[good["outbox_id"]])[0].path).read_bytes()
        signed, sig = split_signed(raw)
        sig_file = tmp_path / "sig.asc"
        sig_file.write_bytes(sig)
        assert gnupg.GPG(gnupghome=str(home)).verify_data(str(sig_file), signed).valid
        db.dispose()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)

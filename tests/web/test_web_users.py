"""Portal users, API keys and nonces in the metadata database (SQLite and PostgreSQL), and the
``herald users`` / ``herald apikeys`` commands."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
import sqlalchemy as sa

from herald.accounts import apikeys as keys, users
from herald.cli import main
from herald.constituency import repository
from herald.crypto import ServerKey
from herald.errors import ConfigError
from herald.store import audit
from herald.store.db import NotFound, UserRow

SK = ServerKey(b"s" * 32)
#: a fixed UTC instant for TOTP codes (tests never use the system clock)
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
PW = "correct horse battery"


#: Cheap Argon2 costs for every test of this module (fixture of tests/web_fixtures.py).
pytestmark = pytest.mark.usefixtures("cheap_argon2")


@pytest.fixture
def rdb(db):
    """``db`` with two recipients."""
    repository.add_recipient(db, "Example ISP", "abuse@isp.example", "test")
    repository.add_recipient(db, "Other ISP", "abuse@other.example", "test")
    return db


def test_users_hash_lockout_and_audit(rdb):
    u = users.add_user(rdb, "Alice@ISP.example", PW, "recipient", "cli:root", "Example ISP")
    assert u.email == "alice@isp.example" and u.recipient == "Example ISP"
    with rdb.session() as s:
        h = s.scalars(sa.select(UserRow.password_hash)).one()
    assert h.startswith("$argon2id$") and PW not in h
    assert users.authenticate(rdb, SK, "alice@isp.example", PW).id == u.id
    for _ in range(users.MAX_FAILURES - 1):
        with pytest.raises(users.LoginError) as e:
            users.authenticate(rdb, SK, "alice@isp.example", "wrong")
        assert e.value.reason == "invalid"
    # a success resets the counter
    users.authenticate(rdb, SK, "alice@isp.example", PW)
    for _ in range(users.MAX_FAILURES):
        with pytest.raises(users.LoginError):
            users.authenticate(rdb, SK, "alice@isp.example", "wrong")
    with pytest.raises(users.LoginError) as e:
        users.authenticate(rdb, SK, "alice@isp.example", PW)
    assert e.value.reason == "locked"
    users.set_password(rdb, u.id, "another long password", "cli:root")  # clears the lock
    assert users.authenticate(rdb, SK, "alice@isp.example", "another long password").id == u.id
    actions = [e.action for e in audit.query(rdb, object_type="user")]
    assert actions.count("user.locked") == 1 and "user.add" in actions and "user.password" in actions


def test_user_validation(rdb):
    with pytest.raises(ConfigError):
        users.add_user(rdb, "a@isp.example", "short", "recipient", "t", "Example ISP")
    with pytest.raises(ConfigError):
        users.add_user(rdb, "a@isp.example", PW, "recipient", "t")
    with pytest.raises(ConfigError):
        users.add_user(rdb, "a@isp.example", PW, "root", "t")
    with pytest.raises(NotFound):
        users.add_user(rdb, "a@isp.example", PW, "recipient", "t", "Nobody")
    users.add_user(rdb, "a@isp.example", PW, "admin", "t")
    with pytest.raises(ConfigError):
        users.add_user(rdb, "A@isp.example", PW, "admin", "t")


def test_totp_secret_encrypted(rdb):
    u = users.add_user(rdb, "b@isp.example", PW, "recipient", "t", "Example ISP")
    secret = users.new_totp_secret()
    t0 = T0 + timedelta(minutes=1)
    assert not users.enable_totp(rdb, SK, u.id, secret, "000000" if pyotp.TOTP(secret).at(t0) != "000000" else "111111", t0)
    assert users.enable_totp(rdb, SK, u.id, secret, pyotp.TOTP(secret).at(t0), t0)
    with rdb.session() as s:
        row = s.get(UserRow, u.id)
        assert secret not in (row.totp_secret_enc or "") and row.totp_secret is None
    with pytest.raises(users.LoginError) as e:
        users.authenticate(rdb, SK, "b@isp.example", PW, now=t0)
    assert e.value.reason == "totp_required"
    t1 = t0 + timedelta(minutes=5)
    # another server key cannot read the TOTP secret: the code is refused
    with pytest.raises(users.LoginError):
        users.authenticate(rdb, ServerKey(b"t" * 32), "b@isp.example", PW, pyotp.TOTP(secret).at(t1), now=t1)
    assert users.authenticate(rdb, SK, "b@isp.example", PW, pyotp.TOTP(secret).at(t1), now=t1).totp_enabled


def _sig(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_keys_verify_rotate_revoke(rdb):
    k = keys.create_key(rdb, SK, "Example ISP", "t", label="intelmq")
    body = b'{"apikey": "%s"}' % k.key_id.encode()
    c = keys.verify_request(rdb, SK, k.key_id, body, _sig(k.secret, body))
    assert c.recipient == "Example ISP" and c.slug == "example_isp"
    assert keys.verify_request(rdb, SK, k.key_id, body, _sig("x", body)) is None
    assert keys.verify_request(rdb, SK, "nope", body, _sig(k.secret, body)) is None
    other = repository.get_recipient(rdb, "Other ISP")
    with pytest.raises(NotFound):  # another recipient's key looks like a missing one
        keys.revoke_key(rdb, k.key_id, "t", recipient_id=other.id)
    r = keys.rotate_key(rdb, SK, k.key_id, "t", timedelta(minutes=5))
    assert keys.verify_request(rdb, SK, k.key_id, body, _sig(k.secret, body)) is not None
    assert keys.verify_request(rdb, SK, k.key_id, body, _sig(r.secret, body)) is not None
    info = keys.list_keys(rdb, "Example ISP")[0]
    assert info.rotating_until is not None and info.fingerprint == hashlib.sha256(
        r.secret.encode()).hexdigest()[:12]
    keys.revoke_key(rdb, k.key_id, "t", "gone")
    assert keys.verify_request(rdb, SK, k.key_id, body, _sig(r.secret, body)) is None
    assert keys.list_keys(rdb, "Example ISP")[0].state == "revoked"
    assert [e.action for e in audit.query(rdb, object_type="apikey")] == [
        "apikey.create", "apikey.rotate", "apikey.revoke"]


def test_expired_key(rdb):
    from herald.store.db import utcnow

    k = keys.create_key(rdb, SK, "Example ISP", "t", expires_at=utcnow() - timedelta(seconds=1))
    body = b'{"apikey": "%s"}' % k.key_id.encode()
    assert keys.verify_request(rdb, SK, k.key_id, body, _sig(k.secret, body)) is None
    assert keys.list_keys(rdb, "Example ISP")[0].state == "expired"


def test_nonces(rdb):
    assert keys.remember_nonce(rdb, "k1", "nonce-0001", timedelta(minutes=10))
    assert not keys.remember_nonce(rdb, "k1", "nonce-0001", timedelta(minutes=10))
    assert keys.remember_nonce(rdb, "k2", "nonce-0001", timedelta(minutes=10))
    # purged once older than the window: accepted again (its timestamp check refuses it anyway)
    assert keys.remember_nonce(rdb, "k1", "nonce-0001", timedelta(0))


def test_cli_users_and_apikeys(db_url, tmp_path, monkeypatch, capsys):
    for var in ("HERALD_DATABASE_URL", "HERALD_DATA_DIR", "HERALD_SECRET_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HERALD_SECRET_KEY", "k" * 40)
    cfg = tmp_path / "herald.toml"
    cfg.write_text(f'[paths]\ndata = "data"\n[database]\nurl = "{db_url}"\n'
                   '[[recipients]]\nname = "Example ISP"\nemail = "abuse@isp.example"\n'
                   'asns = [64496]\n')
    from herald.config import load_settings
    from herald.constituency.sync import sync_config
    from herald.store.db import open_db

    db = open_db(db_url, upgrade=True)
    sync_config(db, load_settings(cfg))
    monkeypatch.setenv("HERALD_USER_PASSWORD", PW)
    assert main(["users", "add", "root@herald.example", "--role", "admin", "--config", str(cfg)]) == 0
    assert main(["users", "add", "noc@isp.example", "--role", "recipient", "--recipient",
                 "Example ISP", "--config", str(cfg)]) == 0
    assert main(["users", "add", "x@isp.example", "--role", "admin", "--recipient", "Example ISP",
                 "--config", str(cfg)]) == 2
    assert main(["users", "list", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "root@herald.example" in out and "noc@isp.example" in out
    assert main(["apikeys", "create", "Example ISP", "--label", "cli", "--expires-days", "30",
                 "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    key_id = out.split("key", 1)[1].split()[0]
    secret = out.split("secret", 1)[1].split()[0]
    sk = ServerKey(("k" * 40).encode())
    body = b'{"apikey": "%s"}' % key_id.encode()
    assert keys.verify_request(db, sk, key_id, body, _sig(secret, body)) is not None
    assert main(["apikeys", "rotate", "Example ISP", "--grace-days", "0", "--config", str(cfg)]) == 0
    new_secret = capsys.readouterr().out.split("secret", 1)[1].split()[0]
    assert keys.verify_request(db, sk, key_id, body, _sig(secret, body)) is None
    assert keys.verify_request(db, sk, key_id, body, _sig(new_secret, body)) is not None
    assert main(["apikeys", "list", "Example ISP", "--config", str(cfg)]) == 0
    assert key_id in capsys.readouterr().out
    assert main(["apikeys", "revoke", "Example ISP", "--key", key_id, "--config", str(cfg)]) == 0
    assert keys.verify_request(db, sk, key_id, body, _sig(new_secret, body)) is None
    assert main(["apikeys", "revoke", "Example ISP", "--config", str(cfg)]) == 2  # none active
    actors = {e.actor for e in audit.query(db, object_type="apikey")}
    assert all(a.startswith("cli") for a in actors)
    db.dispose()


def test_server_key_file_is_private(tmp_path, monkeypatch):
    monkeypatch.delenv("HERALD_SECRET_KEY", raising=False)
    monkeypatch.delenv("HERALD_SECRET_KEY_FILE", raising=False)
    a = ServerKey.load(tmp_path)
    assert oct((tmp_path / "secret.key").stat().st_mode & 0o777) == "0o600"
    assert ServerKey.load(tmp_path).subkey("x") == a.subkey("x")
    assert a.subkey("x") != a.subkey("y")
    monkeypatch.setenv("HERALD_SECRET_KEY", "short")
    with pytest.raises(ConfigError):
        ServerKey.load(tmp_path)
    monkeypatch.delenv("HERALD_SECRET_KEY")
    f = tmp_path / "k"
    f.write_text("z" * 64 + "\n")
    os.chmod(f, 0o600)
    monkeypatch.setenv("HERALD_SECRET_KEY_FILE", str(f))
    assert ServerKey.load(None).subkey("x") == ServerKey(b"z" * 64).subkey("x")


def test_herald_serve_command(tmp_path):
    """``herald serve`` starts uvicorn on the given loopback port with the configured database."""
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from herald.web.testing import free_port

    cfg = tmp_path / "herald.toml"
    cfg.write_text('[paths]\ndata = "data"\n')
    port = free_port()
    env = dict(os.environ, HERALD_SECRET_KEY="k" * 40)
    for var in ("HERALD_DATABASE_URL", "HERALD_DATA_DIR", "HERALD_SECRET_KEY_FILE"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "herald.cli", "serve", "--config", str(cfg),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
                    assert r.status == 200 and b'name="csrf_token"' in r.read()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "herald serve did not start"
                time.sleep(0.2)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api2/test/ping",
                                     data=b'{"apikey": "x"}', headers={"HMAC2": "00"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 401
        assert (tmp_path / "data" / "herald.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=20)

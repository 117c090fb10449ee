"""Download links (/dl/<id>) against an attacker: links die with their key and their recipient,
ids with trailing or embedded bytes are refused, and ids never reach the access log."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from urllib.request import urlopen

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from herald.store.db import RecipientRow
from herald.accounts import apikeys as keys
from herald.web.logs import REDACTED, RedactDownloadIds, uvicorn_log_config
from herald.web.testing import build_deployment, free_port


def call(client, key, method, req=None):
    """POST a request signed like Shadowserver's call-api.py."""
    body = json.dumps(dict(req or {}, apikey=key.key_id)).encode()
    return client.post(f"/api2/{method}", content=body, headers={"HMAC2": keys.sign(key.secret, body)})


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("dl")
    d = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    d.client = TestClient(d.app)
    yield d
    d.db.dispose()


def _links(dep, name):
    key = keys.create_key(dep.db, dep.server_key, name, "test")
    listed = call(dep.client, key, "reports/list").json()
    assert listed and all(dep.client.get(f"/dl/{x['id']}").status_code == 200 for x in listed)
    return key, listed


def test_links_die_when_the_key_is_revoked(dep):
    key, listed = _links(dep, "CERT.at")
    other, kept = _links(dep, "CERT.at")
    keys.revoke_key(dep.db, key.key_id, "test", "leaked")
    for item in listed:
        r = dep.client.get(f"/dl/{item['id']}")
        assert r.status_code == 404 and b"," not in r.content  # no CSV line
        assert call(dep.client, other, "reports/download", {"id": item["id"]}).status_code == 404
    # the same recipient's links of another, live key still work
    assert dep.client.get(f"/dl/{kept[0]['id']}").status_code == 200


def test_links_die_when_the_recipient_is_disabled(dep):
    _, listed = _links(dep, "CERT-Bund")
    with dep.db.session() as s:
        s.execute(sa.update(RecipientRow).where(RecipientRow.name == "CERT-Bund").values(disabled=True))
    try:
        for item in listed:
            assert dep.client.get(f"/dl/{item['id']}").status_code == 404
    finally:
        with dep.db.session() as s:
            s.execute(sa.update(RecipientRow).where(RecipientRow.name == "CERT-Bund")
                      .values(disabled=False))


@pytest.mark.parametrize("suffix", ["%00", "x", "%0a", "%20", "=", "==", "%3D", "A", ".", "/",
                                    "%C3%A4"])
def test_trailing_bytes_after_an_id_are_refused(dep, suffix):
    _, listed = _links(dep, "Alpine Hosting")
    token = listed[0]["id"]
    assert dep.client.get(f"/dl/{token}").status_code == 200
    strict = TestClient(dep.app, follow_redirects=False)
    r = strict.get(f"/dl/{token}{suffix}")
    # "/": Starlette's slash redirect names the path without it; never the file itself
    assert r.status_code == (307 if suffix == "/" else 404), suffix
    # embedded bytes, too
    mid = len(token) // 2
    assert strict.get(f"/dl/{token[:mid]}{suffix}{token[mid:]}").status_code == 404


def _uvicorn_access_record(path: str) -> logging.LogRecord:
    """A record exactly as uvicorn's h11/httptools protocol logs a request line."""
    return logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50000", "GET", path, "1.1", 200), None)


def test_filter_redacts_an_uvicorn_access_record():
    from uvicorn.logging import AccessFormatter

    token = "gAAAAABrDWVA" + "x" * 100 + "=="
    record = _uvicorn_access_record(f"/dl/{token}?a=1")
    assert RedactDownloadIds().filter(record) is True
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert token not in line and REDACTED in line and "GET" in line and "200" in line
    other = _uvicorn_access_record("/api2/test/ping")
    RedactDownloadIds().filter(other)
    assert other.getMessage().endswith('"GET /api2/test/ping HTTP/1.1" 200')


def test_served_access_log_has_no_download_id(dep):
    """A real uvicorn with ``herald serve``'s logging configuration, a real GET /dl/<id>."""
    _, listed = _links(dep, "CERT.at")
    token = listed[0]["id"]
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(dep.app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=uvicorn_log_config(), access_log=True))
    thread = threading.Thread(target=server.run, daemon=True)
    capture = Capture()
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.02)
        access = logging.getLogger("uvicorn.access")
        access.addHandler(capture)
        with urlopen(f"http://127.0.0.1:{port}/dl/{token}", timeout=30) as resp:
            assert resp.status == 200 and resp.read()
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(capture)
        server.should_exit = True
        thread.join(timeout=10)
    assert lines, "uvicorn wrote no access line"
    assert all(token not in line for line in lines) and any(REDACTED in line for line in lines)
    assert json.dumps(lines).count(token[:20]) == 0


def test_herald_serve_runs_uvicorn_with_the_redacting_access_log(monkeypatch):
    import argparse

    import herald.config
    import herald.web.app
    from herald.commands import serve

    seen = {}
    monkeypatch.setattr(herald.config, "load_settings", lambda path: path)
    monkeypatch.setattr(herald.web.app, "create_app", lambda settings: "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    assert serve.run(argparse.Namespace(config="x.toml", host="127.0.0.1", port=8000)) == 0
    config = seen["log_config"]
    assert "redact_download_ids" in config["handlers"]["access"]["filters"]
    assert config["filters"]["redact_download_ids"]["()"] is RedactDownloadIds


def test_links_follow_the_secret_that_listed_them_through_a_rotation(dep):
    """A rotation with a grace period keeps the old secret's links alive until the grace period
    ends (or the key is revoked); links listed with the new secret work at once; an id carrying no
    or a wrong secret fingerprint (crafted with the server key, or issued by an older version) is
    refused."""
    from datetime import timedelta

    from herald.store.db import ApiKeyRow, utcnow
    from herald.web.api import download_token

    key, old_links = _links(dep, "CERT.at")
    new = keys.rotate_key(dep.db, dep.server_key, key.key_id, "test", grace=timedelta(days=1))
    rotated = keys.NewKey(key.key_id, new.secret, new.info)
    new_links = call(dep.client, rotated, "reports/list").json()
    assert new_links and call(dep.client, key, "reports/list").status_code == 200  # grace period
    for item in old_links + new_links:
        assert dep.client.get(f"/dl/{item['id']}").status_code == 200
    st = dep.app.state.herald
    entry = st.catalog.report_file(
        _recipient(dep, "CERT.at"), old_links[0]["timestamp"], old_links[0]["file"])
    rid = new.info.recipient_id
    real = hashlib.sha256(key.secret.encode()).hexdigest()[:32]
    near = real[:31] + ("1" if real[31] == "0" else "0")  # one hex digit off, never the real one
    for fp in ["", "0" * 32, near]:
        assert dep.client.get(f"/dl/{download_token(st, entry, rid, key.key_id, fp)}").status_code == 404
    legacy = st.server_key.fernet("download").encrypt_at_time(json.dumps(
        {"r": rid, "d": entry.day, "f": entry.file, "k": key.key_id}).encode(),
        int(st.clock().timestamp())).decode()
    assert dep.client.get(f"/dl/{legacy}").status_code == 404
    # the grace period ends: the old secret's links die, the new secret's live on
    with dep.db.session() as s:
        s.execute(sa.update(ApiKeyRow).where(ApiKeyRow.key_id == key.key_id)
                  .values(prev_valid_until=utcnow() - timedelta(seconds=1)))
    for item in old_links:
        assert dep.client.get(f"/dl/{item['id']}").status_code == 404
        assert call(dep.client, rotated, "reports/download", {"id": item["id"]}).status_code == 404
    for item in new_links:
        assert dep.client.get(f"/dl/{item['id']}").status_code == 200


def _recipient(dep, name):
    with dep.db.session() as s:
        row = s.scalars(sa.select(RecipientRow).where(RecipientRow.name == name)).one()
        s.expunge(row)
        return row

"""Malformed and oversized requests get a 4xx, never a 500, and are refused before they are
buffered: body limits while streaming, hostile headers and JSON, non-finite timestamps, and a
schemathesis run over /openapi.json (docs/api.md, "Errors and limits")."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from herald.accounts import apikeys as keys
from herald.web.testing import FIXED_NOW, build_deployment

ENGINE_TEXT = ["Traceback", "Error:", "Exception", "sqlalchemy", "psycopg", "RecursionError",
               "OverflowError", "TypeError", "File \""]


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("malformed")
    d = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    d.key = keys.create_key(d.db, d.server_key, "CERT.at", "test")
    d.rkey = keys.create_key(d.db, d.server_key, "CERT.at", "test", replay_protection=True)
    d.client = TestClient(d.app, raise_server_exceptions=False)
    yield d
    d.db.dispose()


def signed(client, key, raw: bytes, method="test/ping", headers=None):
    mac = hmac.new(key.secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(f"/api2/{method}", content=raw, headers=dict({"HMAC2": mac}, **(headers or {})))


def assert_clean_4xx(r):
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    for text in ENGINE_TEXT:
        assert text not in r.text, text


# --- body limits while streaming ---------------------------------------------------------------

CHUNK = 16 * 1024


def asgi_post(app, path: str, headers: list[tuple[bytes, bytes]], chunks: int):
    """POST through the ASGI interface with a body of ``chunks`` x 16 KiB fed one message at a
    time; returns (status, messages pulled by the app)."""
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        if pulled >= chunks:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": b"{" * CHUNK, "more_body": pulled < chunks}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"127.0.0.1")] + headers,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], pulled


@pytest.mark.parametrize("path", ["/api2/test/ping", "/api2/reports/list", "/login",
                                  "/portal/keys/create"])
def test_announced_huge_body_is_refused_unread(dep, path):
    # 400 MB announced: refused from the header alone, not one byte read
    status, pulled = asgi_post(dep.app, path, [(b"content-length", b"419430400")], 25600)
    assert status == 413 and pulled == 0


@pytest.mark.parametrize("path", ["/api2/test/ping", "/login"])
def test_chunked_body_is_cut_off_while_streaming(dep, path):
    # no Content-Length (chunked): 4 MiB offered, at most the limit plus one chunk is pulled
    total = 256
    status, pulled = asgi_post(dep.app, path, [(b"transfer-encoding", b"chunked"), (
        b"content-type", b"application/x-www-form-urlencoded")], total)
    assert status == 413
    assert pulled <= dep.app.state.herald.config.max_body // CHUNK + 1 < total


def test_malformed_content_length(dep):
    status, pulled = asgi_post(dep.app, "/api2/test/ping", [(b"content-length", b"12, 99999999")], 1)
    assert status == 400 and pulled == 0


# --- malformed requests: 4xx, never the engine's text -------------------------------------------

def test_non_ascii_hmac2_header(dep):
    raw = json.dumps({"apikey": dep.key.key_id}).encode()
    for value in ["ä" * 64, "\u00ff" + "0" * 63]:
        r = dep.client.post("/api2/test/ping", content=raw, headers={"HMAC2": value.encode("latin-1")})
        assert_clean_4xx(r)
        assert r.status_code == 401


@pytest.mark.parametrize("depth", [40, 1000, 30_000])
def test_deeply_nested_json(dep, depth):
    raw = b'{"apikey": "' + dep.key.key_id.encode() + b'", "x": ' + b"[" * depth + b"]" * depth + b"}"
    r = signed(dep.client, dep.key, raw)
    assert_clean_4xx(r)
    assert r.status_code == 400


@pytest.mark.parametrize("ts", [b"1e400", b"-1e400", b"1" + b"0" * 400, b"NaN", b"Infinity",
                                b"-Infinity", b'"1700000000"', b"true", b"null"])
def test_non_finite_or_wrong_timestamps_are_refused(dep, ts):
    nonce = secrets.token_hex(8).encode()
    raw = (b'{"apikey": "' + dep.rkey.key_id.encode() + b'", "timestamp": ' + ts +
           b', "nonce": "' + nonce + b'"}')
    r = signed(dep.client, dep.rkey, raw)
    assert_clean_4xx(r)
    assert r.status_code in (400, 401)


def test_replay_window_uses_the_app_clock(dep):
    ok = {"apikey": dep.rkey.key_id, "timestamp": FIXED_NOW.timestamp(), "nonce": secrets.token_hex(8)}
    assert signed(dep.client, dep.rkey, json.dumps(ok).encode()).status_code == 200


def test_wrongly_typed_fields_get_4xx(dep):
    for body in [{"apikey": 5}, {"apikey": ["x"]}, {"apikey": {"a": 1}}, {"apikey": None}]:
        r = signed(dep.client, dep.key, json.dumps(body).encode())
        assert_clean_4xx(r)
    for method, extra in [("reports/list", {"limit": "1"}), ("reports/list", {"limit": 10**30}),
                          ("reports/list", {"date": ["x"]}), ("reports/list", {"type": {"a": 1}}),
                          ("reports/download", {"id": 5}), ("reports/download", {"id": "A" * 5000}),
                          ("reports/schema", {"type": ["x"]}), ("reports/types", {"date": 7}),
                          ("reports/stats", {"date": "2026-13-45"})]:
        r = signed(dep.client, dep.key, json.dumps(dict(extra, apikey=dep.key.key_id)).encode(), method)
        if extra != {"limit": 10**30}:  # a huge limit is a valid one
            assert_clean_4xx(r)
        assert r.status_code < 500


# --- schemathesis over /openapi.json --------------------------------------------------------------

def test_openapi_no_server_errors(dep):
    """Every operation of /openapi.json, with requests schemathesis generates from it (bounded:
    a few dozen examples each), as generated and then signed with a real key: never a 5xx, never
    the engine's text."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", dep.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert "/api2/reports/list" in paths and "/dl/{token}" in paths
    seen = []

    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call()
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:200])
            seen.append(case.formatted_path)
            if case.method == "POST" and isinstance(case.body, dict):
                body = dict(case.body, apikey=dep.key.key_id)
                r = signed(dep.client, dep.key, json.dumps(body).encode(),
                           case.formatted_path.removeprefix("/api2/"))
                assert r.status_code < 500, (case.formatted_path, body, r.text[:200])
                for text in ENGINE_TEXT:
                    assert text not in r.text

        run()
    assert len(seen) >= len(operations)

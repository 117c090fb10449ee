"""Reports API (herald.web.api) against the real example day, on SQLite and PostgreSQL, through
TestClient and through a plain client signing like Shadowserver's call-api.py against a real
uvicorn server on 127.0.0.1 (ephemeral port): only the base URL differs.

The deployment runs the real pipeline on examples/ (herald.web.testing), so every report, event
and count below is what the daily run produced.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
from urllib.request import urlopen
from datetime import timedelta
from urllib.parse import quote

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from herald.accounts import apikeys as keys
from herald.constituency.recipients import slugify
from herald.crypto import ServerKey
from herald.store.db import ApiKeyRow
from herald.web.api import download_token
from herald.web.app import WebConfig, create_app
from herald.web.testing import EXAMPLE_DAY, FIXED_NOW, LiveServer, ShadowserverClient, build_deployment
from tests.db_fixtures import pg_dsn

NAMES = ["Example Cable ISP", "Alpine Hosting", "Example Mobile RO", "Example IPv6 Broadband",
         "CERT.at", "CERT-Bund", "Operation Virut Task Force"]


def pg_url(database: str) -> str:
    """A fresh schema of the session's PostgreSQL test database."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_dsn(database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = pg_dsn(database).replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dep(request, tmp_path_factory):
    """The example deployment, with one API key per recipient (``dep.keys[name]``)."""
    root = tmp_path_factory.mktemp("api")
    url = (f"sqlite:///{root / 'herald.db'}" if request.param == "sqlite"
           else pg_url(request.getfixturevalue("pg_database")))
    d = build_deployment(root, url)
    d.keys = {n: keys.create_key(d.db, d.server_key, n, "test") for n in NAMES}
    d.client = TestClient(d.app)
    yield d
    d.db.dispose()


def call(client, key, method, req=None, secret=None, raw: bytes | None = None, headers=None):
    """POST a signed request; ``raw`` sends those exact bytes."""
    body = raw if raw is not None else json.dumps(dict(req or {}, apikey=key.key_id)).encode()
    mac = hmac.new((secret or key.secret).encode(), body, hashlib.sha256).hexdigest()
    return client.post(f"/api2/{method}", content=body, headers=dict({"HMAC2": mac}, **(headers or {})))


def own_reports(dep, name):
    return sorted((r for r in dep.summary.reports if r["recipient"] == name),
                  key=lambda r: r["type"])


def test_ping_key_info_subscribed(dep):
    key = dep.keys["CERT.at"]
    r = call(dep.client, key, "test/ping")
    assert r.status_code == 200 and set(r.json()) == {"pong"}
    info = call(dep.client, key, "key/info").json()
    assert info["apikey"] == key.key_id and info["recipient"] == "CERT.at"
    assert call(dep.client, key, "reports/subscribed").json() == ["cert_at"]


@pytest.mark.parametrize("name", NAMES)
def test_list_and_download_exactly_own_reports(dep, name):
    key = dep.keys[name]
    listed = call(dep.client, key, "reports/list", {"date": EXAMPLE_DAY}).json()
    want = own_reports(dep, name)
    assert want, "every example recipient gets at least one report"
    assert sorted(x["type"] for x in listed) == [r["type"] for r in want]
    for item in listed:
        assert set(item) >= {"id", "file", "type", "report", "timestamp"}
        assert item["timestamp"] == EXAMPLE_DAY and item["report"] == slugify(name)
        src = next(r for r in want if r["type"] == item["type"])
        body = call(dep.client, key, "reports/download", {"id": item["id"]})
        assert body.status_code == 200
        assert hashlib.sha256(body.content).hexdigest() == src["sha256"]
        assert dep.client.get(f"/dl/{item['id']}").content == body.content
    # date ranges and type filters
    assert len(call(dep.client, key, "reports/list",
                    {"date": "2026-11-01:2026-11-30"}).json()) == len(want)
    assert call(dep.client, key, "reports/list", {"date": "2026-11-29"}).json() == []
    one = want[0]["type"]
    assert [x["type"] for x in call(dep.client, key, "reports/list", {"type": one}).json()] == [one]
    assert len(call(dep.client, key, "reports/list", {"limit": 1}).json()) == 1
    # another recipient's report name gives nothing
    assert call(dep.client, key, "reports/list", {"reports": ["cert_bund", "x"]}).json() == [] \
        or name == "CERT-Bund"


def test_foreign_ids_are_not_found(dep):
    at = call(dep.client, dep.keys["CERT.at"], "reports/list").json()
    for item in at:
        r = call(dep.client, dep.keys["CERT-Bund"], "reports/download", {"id": item["id"]})
        assert r.status_code == 404 and r.json() == {"error": "no such report (unknown or expired id)"}


def test_authentication_failures(dep):
    key = dep.keys["CERT.at"]
    c = dep.client
    assert call(c, key, "test/ping", secret="wrong").status_code == 401
    r = c.post("/api2/test/ping", content=b'{"apikey": "%s"}' % key.key_id.encode())
    assert r.status_code == 401 and "error" in r.json()
    assert call(c, key, "test/ping", raw=b'{"apikey": "nope"}').status_code == 401
    assert call(c, key, "test/ping", raw=b"{not json").status_code == 400
    assert call(c, key, "test/ping", raw=b"[1, 2]").status_code == 400
    assert call(c, key, "test/ping", raw=b"{}").status_code == 401
    # the signature covers the exact bytes: re-serialised JSON does not verify
    body = json.dumps({"apikey": key.key_id}).encode()
    mac = hmac.new(key.secret.encode(), body, hashlib.sha256).hexdigest()
    assert c.post("/api2/test/ping", content=body.replace(b" ", b""),
                  headers={"HMAC2": mac}).status_code == 401
    assert c.post("/api2/test/ping", content=body, headers={"HMAC2": mac.upper()}).status_code == 200
    assert call(c, key, "no/such").status_code == 404
    assert c.get("/api2/test/ping").status_code == 405


def test_expired_tampered_and_traversal_ids(dep):
    key = dep.keys["CERT.at"]
    st = dep.app.state.herald
    entry = dep.app.state.herald.catalog.reports(_row(dep, "CERT.at"))[0]
    token = download_token(st, entry, key.info.recipient_id, key.key_id)
    assert call(dep.client, key, "reports/download", {"id": token}).status_code == 200
    payload = json.dumps({"r": key.info.recipient_id, "d": entry.day, "f": entry.file,
                          "k": key.key_id})
    old = st.server_key.fernet("download").encrypt_at_time(
        payload.encode(), int(FIXED_NOW.timestamp()) - st.config.download_ttl - 5).decode()
    assert call(dep.client, key, "reports/download", {"id": old}).status_code == 404
    assert dep.client.get(f"/dl/{old}").status_code == 404
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    assert dep.client.get(f"/dl/{flipped}").status_code == 404
    other = ServerKey(b"k" * 32).encrypt("download", payload)
    assert dep.client.get(f"/dl/{other}").status_code == 404
    # Even a correctly encrypted id naming a path outside the recipient's directory is refused.
    for day, f in [(entry.day, "../cert_bund/" + entry.file), ("../..", "herald.db"),
                   (entry.day, "..%2F..%2Fherald.db"), ("2026-11-30/../2026-11-30", entry.file),
                   (entry.day, "/etc/passwd"), (entry.day, "")]:
        crafted = st.server_key.fernet("download").encrypt_at_time(json.dumps(
            {"r": key.info.recipient_id, "d": day, "f": f, "k": key.key_id}).encode(),
            int(FIXED_NOW.timestamp())).decode()
        assert dep.client.get(f"/dl/{crafted}").status_code == 404, (day, f)
    for path in ["/dl/..%2F..%2Fherald.db", "/dl/../../etc/passwd", "/dl/%2e%2e%2fsecret.key"]:
        assert dep.client.get(path).status_code == 404


def _row(dep, name):
    from herald.accounts.apikeys import find_recipient
    from herald.web.common import recipient_row

    with dep.db.session() as s:
        rid = find_recipient(s, name).id
    return recipient_row(dep.app.state.herald, rid)


def test_run_summary_pointing_elsewhere_is_ignored(dep, tmp_path):
    """A run summary entry whose path leaves the recipient's directory is never served."""
    st = dep.app.state.herald
    runs = dep.settings.paths.data / "runs"
    bund = own_reports(dep, "CERT-Bund")[0]
    fake = {"reports": [{"recipient": "CERT.at", "type": "scan_mongodb", "rows": 1,
                         "path": bund["path"], "sha256": bund["sha256"]}]}
    (runs / "2026-11-29.json").write_text(json.dumps(fake))
    try:
        listed = call(dep.client, dep.keys["CERT.at"], "reports/list",
                      {"date": "2026-11-01:2026-11-30"}).json()
        assert "scan_mongodb" not in {x["type"] for x in listed}
        assert st.catalog.report_file(_row(dep, "CERT.at"), "2026-11-30",
                                      bund["path"].rsplit("/", 1)[1]) is None
    finally:
        (runs / "2026-11-29.json").unlink()


def test_types_and_stats_match_the_run(dep):
    key = dep.keys["CERT.at"]
    want = own_reports(dep, "CERT.at")
    assert call(dep.client, key, "reports/types").json() == [r["type"] for r in want]
    detail = call(dep.client, key, "reports/types", {"detail": True}).json()
    assert [d["type"] for d in detail] == [r["type"] for r in want] and all("title" in d for d in detail)
    stats = call(dep.client, key, "reports/stats", {"date": EXAMPLE_DAY}).json()
    assert {(s["type"], s["value"]) for s in stats} == {(r["type"], r["rows"]) for r in want}
    assert call(dep.client, key, "reports/stats", {"date": "2026-13-01"}).status_code == 400
    assert call(dep.client, key, "reports/stats", {"date": "2026-11-30:2026-11-01"}).status_code == 400


def test_schema(dep):
    key = dep.keys["CERT.at"]
    s = call(dep.client, key, "reports/schema", {"type": "scan_dns"}).json()
    assert s["type"] == "object" and s["properties"]["timestamp"]["format"] == "date-time"
    assert s["x-column-order"][0] == "timestamp"
    assert call(dep.client, key, "reports/schema", {"type": "nope"}).status_code == 404


def test_query_counts_equal_the_reports(dep):
    """Facet by type over the caller's own filters gives exactly its report row counts."""
    for name, query in [("CERT.at", {"geo": "AT"}), ("Alpine Hosting", {"asn": 25255}),
                        ("Example Mobile RO", {"ip": "5.12.0.0/14"}),
                        ("Example IPv6 Broadband", {"ip": "2603:8080::/32"}),
                        ("CERT-Bund", {"geo": "de"}),
                        # law enforcement: only its operation's share (virut, its jurisdiction)
                        ("Operation Virut Task Force", {"geo": ["US", "BE", "PE"]})]:
        r = call(dep.client, dep.keys[name], "reports/query",
                 {"query": query, "date": EXAMPLE_DAY, "facet": "type"})
        assert r.status_code == 200, r.text
        assert r.json() == {x["type"]: x["rows"] for x in own_reports(dep, name)}, name


def test_query_rows_and_paging(dep):
    key = dep.keys["CERT.at"]
    q = {"query": {"geo": "AT", "type": "scan_dns"}, "date": EXAMPLE_DAY}
    rows = call(dep.client, key, "reports/query", dict(q, limit=10000)).json()
    assert len(rows) == 98 and all(r["geo"] == "AT" and r["type"] == "scan_dns" for r in rows)
    p1 = call(dep.client, key, "reports/query", dict(q, limit=40, page=1, sort="ip")).json()
    p3 = call(dep.client, key, "reports/query", dict(q, limit=40, page=3, sort="ip")).json()
    assert len(p1) == 40 and len(p3) == 18
    assert [r["ip"] for r in p1] == sorted(r["ip"] for r in p1)
    desc = call(dep.client, key, "reports/query", dict(q, limit=5, sort="-port")).json()
    assert [r["port"] for r in desc] == sorted((r["port"] for r in rows), reverse=True)[:5]
    one_ip = rows[0]["ip"]
    # narrowing by another field
    narrowed = call(dep.client, key, "reports/query",
                    {"query": {"geo": "AT", "ip": one_ip}, "date": EXAMPLE_DAY}).status_code
    assert narrowed == 403  # CERT.at has no CIDR filter: an ip is not one of its own filters
    by_port = call(dep.client, key, "reports/query",
                   {"query": {"geo": "AT", "port": 53, "type": "scan_dns"},
                    "date": EXAMPLE_DAY, "limit": 10000}).json()
    assert by_port and all(r["port"] == 53 for r in by_port)


@pytest.mark.parametrize("body,status", [
    ({"query": {}}, 403),
    ({"query": {"geo": "DE"}}, 403),
    ({"query": {"asn": 25255}}, 403),
    ({"query": {"ip": "5.12.0.1"}}, 403),
    ({"query": {"geo": "AT"}, "limit": 10001}, 400),
    ({"query": {"geo": "AT"}, "limit": 0}, 400),
    ({"query": {"geo": "AT"}, "page": 0}, 400),
    ({"query": {"geo": "AT"}, "type": "no_such_type"}, 404),
    ({"query": {"geo": "AT", "bad field!": 1}}, 400),
    ({"query": "geo=AT"}, 400),
    ({"query": {"geo": "AT"}, "date": "yesterday"}, 400),
])
def test_query_refusals(dep, body, status):
    r = call(dep.client, dep.keys["CERT.at"], "reports/query", body)
    assert r.status_code == status and "error" in r.json()


def test_openapi_lists_every_method(dep):
    spec = dep.client.get("/openapi.json").json()
    for m in ["test/ping", "key/info", "reports/subscribed", "reports/types", "reports/list",
              "reports/download", "reports/query", "reports/stats", "reports/schema"]:
        op = spec["paths"][f"/api2/{m}"]["post"]
        assert "apikey" in op["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "/dl/{token}" in spec["paths"]


def test_replay_protection(dep):
    new = keys.create_key(dep.db, dep.server_key, "CERT.at", "test", replay_protection=True)
    c = dep.client
    assert call(c, new, "test/ping").status_code == 401
    nonce = secrets.token_hex(12)
    assert call(c, new, "test/ping", {"timestamp": int(FIXED_NOW.timestamp()), "nonce": nonce}).status_code == 200
    again = call(c, new, "test/ping", {"timestamp": int(FIXED_NOW.timestamp()), "nonce": nonce})
    assert again.status_code == 401 and "nonce" in again.json()["error"]
    stale = call(c, new, "test/ping", {"timestamp": int(FIXED_NOW.timestamp()) - 301, "nonce": secrets.token_hex(8)})
    assert stale.status_code == 401
    future = call(c, new, "test/ping", {"timestamp": int(FIXED_NOW.timestamp()) + 301, "nonce": secrets.token_hex(8)})
    assert future.status_code == 401
    assert call(c, new, "test/ping", {"timestamp": int(FIXED_NOW.timestamp()), "nonce": "short"}).status_code == 401
    # keys without the option ignore both fields
    assert call(c, dep.keys["CERT.at"], "test/ping", {"nonce": nonce}).status_code == 200


def test_rate_limits(dep):
    app = create_app(dep.settings, dep.db, dep.server_key,
                     config=WebConfig(rate_per_key=3, rate_per_ip=1000))
    c = TestClient(app)
    key = dep.keys["CERT.at"]
    codes = [call(c, key, "test/ping").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = call(c, key, "test/ping")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "error" in r.json()
    assert call(c, dep.keys["CERT-Bund"], "test/ping").status_code == 200  # per key
    app2 = create_app(dep.settings, dep.db, dep.server_key,
                      config=WebConfig(rate_per_key=1000, rate_per_ip=2))
    c2 = TestClient(app2)
    codes = [call(c2, dep.keys[n], "test/ping").status_code for n in NAMES[:3]]
    assert codes == [200, 200, 429]  # per address, whatever the key
    assert c2.get("/dl/whatever").status_code == 429


def test_rotation_grace_and_revocation(dep):
    k = keys.create_key(dep.db, dep.server_key, "Alpine Hosting", "test")
    c = dep.client
    rotated = keys.rotate_key(dep.db, dep.server_key, k.key_id, "test", timedelta(hours=1))
    assert rotated.secret != k.secret
    assert call(c, k, "test/ping").status_code == 200          # old secret in grace
    assert call(c, rotated, "test/ping").status_code == 200    # new secret
    again = keys.rotate_key(dep.db, dep.server_key, k.key_id, "test", timedelta(0))
    assert call(c, rotated, "test/ping").status_code == 401    # grace 0: previous one is dead
    assert call(c, k, "test/ping").status_code == 401          # two rotations ago
    assert call(c, again, "test/ping").status_code == 200
    keys.revoke_key(dep.db, k.key_id, "test", "done")
    assert call(c, again, "test/ping").status_code == 401
    with pytest.raises(Exception):
        keys.rotate_key(dep.db, dep.server_key, k.key_id, "test")


def test_secrets_are_not_stored_in_clear(dep):
    k = keys.create_key(dep.db, dep.server_key, "CERT.at", "test")
    with dep.db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM api_keys")).all()
    dump = json.dumps([list(map(str, r)) for r in rows])
    assert k.key_id in dump and k.secret not in dump
    with dep.db.session() as s:
        row = s.scalars(sa.select(ApiKeyRow).where(ApiKeyRow.key_id == k.key_id)).one()
        assert row.secret_hash == "sha256:" + hashlib.sha256(k.secret.encode()).hexdigest()
        assert dep.server_key.decrypt("api-secret", row.secret_enc) == k.secret
        with pytest.raises(Exception):
            ServerKey(b"x" * 32).decrypt("api-secret", row.secret_enc)
    # another server key cannot verify the key at all
    other = create_app(dep.settings, dep.db, ServerKey(b"y" * 32),
                       config=WebConfig(rate_per_key=0, rate_per_ip=0))
    assert call(TestClient(other), k, "test/ping").status_code == 401


def test_disabled_recipient_loses_access(dep):
    from herald.constituency import repository

    k = keys.create_key(dep.db, dep.server_key, "Example Cable ISP", "test")
    listed = call(dep.client, k, "reports/list").json()
    assert listed
    repository.disable_recipient(dep.db, "Example Cable ISP", "test", "testing")
    try:
        assert call(dep.client, k, "test/ping").status_code == 401
        assert dep.client.get(f"/dl/{listed[0]['id']}").status_code == 404
    finally:
        repository.enable_recipient(dep.db, "Example Cable ISP", "test")
    assert call(dep.client, k, "test/ping").status_code == 200



# --- a real client against a real server -----------------------------------------------------------

@pytest.fixture(scope="module")
def live(dep):
    """uvicorn serving the deployment on 127.0.0.1 (an ephemeral port)."""
    with LiveServer(dep.app) as server:
        yield dep, server


def test_list_and_download_like_call_api(live):
    dep, server = live
    new = keys.create_key(dep.db, dep.server_key, "CERT.at", "test")
    client = ShadowserverClient(server.url + "api2/", new.key_id, new.secret)
    assert "pong" in json.loads(client.call("test/ping", {}))
    assert json.loads(client.call("reports/subscribed", {})) == ["cert_at"]
    reports = json.loads(client.call("reports/list", {"date": EXAMPLE_DAY}))
    want = {r["type"]: r for r in dep.summary.reports if r["recipient"] == "CERT.at"}
    assert sorted(r["type"] for r in reports) == sorted(want)
    for r in reports:
        data = client.call("reports/download", {"id": r["id"]})
        assert hashlib.sha256(data).hexdigest() == want[r["type"]]["sha256"]
        assert r["file"].endswith(".csv") and r["file"].startswith(EXAMPLE_DAY)
        # the list's url is a plain GET download on the same server
        with urlopen(r["url"], timeout=30) as resp:
            assert resp.read() == data
            assert resp.headers["Content-Type"].startswith("text/csv")


def test_wrong_secret_is_an_http_error_with_json(live):
    dep, server = live
    new = keys.create_key(dep.db, dep.server_key, "CERT.at", "test")
    bad = ShadowserverClient(server.url + "api2/", new.key_id, "not-the-secret")
    with pytest.raises(urllib.error.HTTPError) as exc:
        bad.call("reports/list", {})
    assert exc.value.code == 401
    assert json.loads(exc.value.read()) == {"error": "invalid apikey or HMAC2 signature"}

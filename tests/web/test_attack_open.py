"""Findings of the attack review: each test failed before its fix (tracked as a strict xfail until then)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

from fastapi.testclient import TestClient

from herald.accounts import apikeys as keys
from herald.web.testing import build_deployment


def test_download_links_listed_with_a_rotated_out_secret_die(tmp_path):
    dep = build_deployment(tmp_path, f"sqlite:///{tmp_path / 'herald.db'}")
    key = keys.create_key(dep.db, dep.server_key, "Example Mobile RO", "test")
    client = TestClient(dep.app)
    body = json.dumps({"apikey": key.key_id}).encode()
    mac = hmac.new(key.secret.encode(), body, hashlib.sha256).hexdigest()
    listed = client.post("/api2/reports/list", content=body, headers={"HMAC2": mac}).json()
    assert listed
    keys.rotate_key(dep.db, dep.server_key, key.key_id, "test", grace=timedelta(0))
    # The old secret no longer signs anything ...
    assert client.post("/api2/reports/list", content=body, headers={"HMAC2": mac}).status_code == 401
    # ... but what it listed is still served.
    status = client.get(f"/dl/{listed[0]['id']}").status_code
    dep.db.dispose()
    assert status == 404


def test_clients_behind_the_reverse_proxy_do_not_share_one_rate_bucket(tmp_path):
    from herald.web.app import WebConfig

    dep = build_deployment(tmp_path, f"sqlite:///{tmp_path / 'herald.db'}",
                           config=WebConfig(rate_per_key=0, rate_per_ip=3,
                                            trusted_proxies=["127.0.0.1"]))
    proxy = TestClient(dep.app, client=("127.0.0.1", 40000))
    for _ in range(5):  # the attacker, through the proxy
        proxy.get("/dl/" + "x" * 50, headers={"X-Forwarded-For": "203.0.113.66"})
    # another recipient, through the same proxy
    r = proxy.post("/api2/test/ping", content=b"{}", headers={"X-Forwarded-For": "198.51.100.7"})
    dep.db.dispose()
    assert r.status_code == 401

"""A plain client signing like Shadowserver's example call-api.py, against a real uvicorn server
on 127.0.0.1 (ephemeral port): only the base URL differs from a Shadowserver set-up."""

from __future__ import annotations

import hashlib
import json
import urllib.error

import pytest

from herald.web import keys
from herald.web.testing import EXAMPLE_DAY, LiveServer, ShadowserverClient, build_deployment


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    dep = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    with LiveServer(dep.app) as server:
        yield dep, server
    dep.db.dispose()


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
        from urllib.request import urlopen
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

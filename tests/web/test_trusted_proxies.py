"""``[web] trusted_proxies``: behind a trusted reverse proxy each client has its own rate bucket;
a peer that is not a trusted proxy cannot choose its address with forwarding headers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from herald.config import load_settings
from herald.errors import ConfigError
from herald.web.app import WebConfig, create_app
from herald.web.testing import EXAMPLES, FIXED_NOW, build_deployment

JUNK = "/dl/" + "x" * 50


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    d = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    yield d
    d.db.dispose()


def _client(dep, peer: str, trusted=()) -> TestClient:
    """A fresh app (empty buckets, 3 requests per address) seen from socket peer ``peer``."""
    app = create_app(dep.settings, dep.db, dep.server_key, clock=lambda: FIXED_NOW,
                     config=WebConfig(rate_per_key=0, rate_per_ip=3, trusted_proxies=trusted))
    return TestClient(app, client=(peer, 40000))


def _statuses(client, forwarded: list[str]) -> list[int]:
    return [client.get(JUNK, headers={"X-Forwarded-For": f}).status_code for f in forwarded]


def test_an_untrusted_peer_cannot_choose_its_address(dep):
    # not configured at all (the default): the header is ignored even from loopback
    for client in (_client(dep, "127.0.0.1"), _client(dep, "198.51.100.9", ["127.0.0.1"]),
                   _client(dep, "10.0.0.5", ["10.1.0.0/16"])):
        got = _statuses(client, [f"203.0.113.{i}" for i in range(1, 6)])
        assert got == [404, 404, 404, 429, 429]


def test_the_proxy_appended_address_counts_not_what_the_client_wrote(dep):
    """A client writes its own X-Forwarded-For; the proxy appends the real peer.  Only the
    right-most untrusted entry counts, so forged left-hand entries give no fresh bucket."""
    proxy = _client(dep, "127.0.0.1", ["127.0.0.1", "10.0.0.0/8"])
    forged = [f"192.0.2.{i}, 203.0.113.66" for i in range(1, 6)]
    assert _statuses(proxy, forged) == [404, 404, 404, 429, 429]
    # a chain of trusted proxies (10.x) in front of the last one is skipped
    assert _statuses(proxy, ["198.51.100.7, 10.2.3.4", "198.51.100.7,10.9.9.9",
                             "192.0.2.1, 198.51.100.7, 10.2.3.4"]) == [404, 404, 404]
    assert _statuses(proxy, ["198.51.100.7, 10.2.3.4"]) == [429]
    assert _statuses(proxy, ["198.51.100.8"]) == [404]  # another client, its own bucket
    # two X-Forwarded-For fields read as one list
    r = proxy.get(JUNK, headers=[("X-Forwarded-For", "192.0.2.200"),
                                 ("X-Forwarded-For", "203.0.113.66")])
    assert r.status_code == 429


def test_ipv6_clients_behind_the_proxy_count_by_64(dep):
    proxy = _client(dep, "::1", ["::1"])
    same_64 = [f"2001:db8:1:2::{i:x}" for i in range(1, 5)]
    assert _statuses(proxy, same_64) == [404, 404, 404, 429]
    assert _statuses(proxy, ["[2001:db8:1:3::1]:5555"]) == [404]


def test_a_dual_stack_listener_sees_ipv4_proxies_as_mapped_addresses(dep):
    proxy = _client(dep, "::ffff:127.0.0.1", ["127.0.0.1"])
    assert _statuses(proxy, ["198.51.100.1", "198.51.100.2", "198.51.100.3",
                             "198.51.100.4"]) == [404] * 4


def test_trusted_proxies_setting_is_checked():
    settings = load_settings(EXAMPLES / "herald.toml")
    settings.raw = dict(settings.raw, web={"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]})
    assert set(WebConfig.from_settings(settings).trusted_proxies) >= {"127.0.0.1/32", "10.0.0.0/8"}
    assert WebConfig().trusted_proxies == ()
    for bad in ["127.0.0.1", ["*"], ["10.0.0.1/8"], ["proxy.example"], [1], ["127.0.0.1/33"]]:
        settings.raw = dict(settings.raw, web={"trusted_proxies": bad})
        with pytest.raises(ConfigError):
            WebConfig.from_settings(settings)

"""Attacks on the portal's login and forms that were found to work, and their fixes.

- An unauthenticated login with an e-mail longer than the audit log's ``actor`` column (200)
  crashed the request on PostgreSQL (``StringDataRightTruncation``: a 500, and the failed attempt
  was not audited) and stored up to a whole request body per attempt on SQLite.
- A recipient login could create API keys and pending filter requests without bound (portal POSTs
  have no rate limit): the database and the admin console's filter review (evidence and conflicts
  for every pending request) grew with every POST, and many keys escaped the per-key rate limit.
- The per-address rate limit (API, ``/dl/``, login) counted each IPv6 address on its own, so a
  client with one /64 had 2**64 buckets.
- Logins were checked without bound on concurrency: each an Argon2id verification (64 MiB) holding
  a database connection, so one client's burst of logins exhausted memory and the pool.
"""

from __future__ import annotations

import queue
import re
import threading

import pytest
from fastapi.testclient import TestClient

from herald.constituency import repository
from herald.store import audit
from herald.accounts import apikeys as keys
from herald.accounts import users
from herald.web.portal import MAX_PENDING_REQUESTS, MAX_PORTAL_KEYS
from herald.web.testing import build_deployment
from tests.db_fixtures import pg_database  # noqa: F401 - fixture
from tests.web.test_api import pg_url
from tests.web_fixtures import cheap_argon2  # noqa: F401 - autouse fixture

PW = "correct horse battery"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dep(request, tmp_path_factory, cheap_argon2):  # noqa: F811 - fixture
    """The example deployment with one recipient user, on both back ends."""
    root = tmp_path_factory.mktemp("attack_portal")
    url = (f"sqlite:///{root / 'herald.db'}" if request.param == "sqlite"
           else pg_url(request.getfixturevalue("pg_database")))
    d = build_deployment(root, url)
    users.add_user(d.db, "ro@mobile-ro.example", PW, "recipient", "test", "Example Mobile RO")
    yield d
    d.db.dispose()


def _csrf(client: TestClient, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def _login(dep) -> TestClient:
    client = TestClient(dep.app, follow_redirects=False)
    r = client.post("/login", data={"csrf_token": _csrf(client, "/login"),
                                    "email": "ro@mobile-ro.example", "password": PW})
    assert r.status_code == 303
    return client


def test_login_with_an_overlong_email_is_refused_and_audited(dep):
    client = TestClient(dep.app, follow_redirects=False)
    email = "a" * 5000 + "@mobile-ro.example"
    r = client.post("/login", data={"csrf_token": _csrf(client, "/login"), "email": email,
                                    "password": "not the password"})
    assert r.status_code == 401
    failed = [e for e in audit.query(dep.db, action="user.login_failed")
              if e.actor.startswith("aaaa")]
    assert failed and all(len(e.actor) <= audit.ACTOR_MAX for e in failed)


def test_pending_filter_requests_are_bounded(dep):
    client = _login(dep)
    token = _csrf(client, "/portal/filters")
    for i in range(MAX_PENDING_REQUESTS + 5):
        r = client.post("/portal/filters", data={"csrf_token": token, "kind": "cidr",
                                                 "value": f"5.12.{i}.0/24"})
        assert r.status_code == 303
    info = repository.get_recipient(dep.db, "Example Mobile RO")
    assert sum(f.state == "pending" for f in info.filters) == MAX_PENDING_REQUESTS


def test_active_api_keys_from_the_portal_are_bounded(dep):
    client = _login(dep)
    token = _csrf(client, "/portal/keys")
    for _ in range(MAX_PORTAL_KEYS + 5):
        assert client.post("/portal/keys/create", data={"csrf_token": token}).status_code == 303
    active = [k for k in keys.list_keys(dep.db, "Example Mobile RO") if k.state == "active"]
    assert len(active) == MAX_PORTAL_KEYS
    # Revoking one makes room for one more.
    client.post(f"/portal/keys/{active[0].key_id}/revoke", data={"csrf_token": token})
    client.post("/portal/keys/create", data={"csrf_token": token})
    active = [k for k in keys.list_keys(dep.db, "Example Mobile RO") if k.state == "active"]
    assert len(active) == MAX_PORTAL_KEYS


def test_ipv6_clients_are_rate_limited_by_their_64(tmp_path):
    """Per-address limits keyed by the full IPv6 address are no limit at all: one subscriber's
    /64 holds 2**64 addresses.  Addresses of one /64 share a bucket; another /64 does not."""
    from herald.web.app import WebConfig

    d = build_deployment(tmp_path, f"sqlite:///{tmp_path / 'herald.db'}",
                         config=WebConfig(rate_per_key=0, rate_per_ip=3))
    codes = []
    for i in range(1, 6):
        client = TestClient(d.app, client=(f"2001:db8:1:2::{i:x}", 40000 + i))
        codes.append(client.post("/api2/test/ping", content=b"{}").status_code)
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]
    other = TestClient(d.app, client=("2001:db8:1:3::1", 40000))
    assert other.post("/api2/test/ping", content=b"{}").status_code == 401
    v4 = TestClient(d.app, client=("192.0.2.7", 40000))
    assert v4.post("/api2/test/ping", content=b"{}").status_code == 401
    d.db.dispose()


def test_concurrent_logins_are_bounded(dep, monkeypatch):
    """Every login check is an Argon2id verification (64 MiB with the production parameters)
    holding a database connection: unbounded, one client's burst of logins (no account needed)
    exhausts memory and the database pool.  With every slot taken, one more login is refused as
    busy (503 with Retry-After) before any check starts."""
    entered: queue.Queue = queue.Queue()
    release = threading.Event()

    def blocking_check(*args, **kwargs):
        entered.put("entered")
        release.wait(60)  # bounded, so a failing test cannot hang
        return None, "invalid"

    monkeypatch.setattr(users, "_check_login", blocking_check)
    results: queue.Queue = queue.Queue()

    def attempt(i: int) -> None:
        try:
            users.authenticate(dep.db, dep.server_key, f"nobody{i}@example.org", "x" * 12)
        except users.LoginError as exc:
            results.put(exc.reason)

    client = TestClient(dep.app, follow_redirects=False)
    token = _csrf(client, "/login")
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(users.LOGIN_SLOTS)]
    for t in threads:
        t.start()
    for _ in threads:
        entered.get(timeout=60)  # every slot is now inside a check
    extra = threading.Thread(target=attempt, args=(99,))
    extra.start()
    # The extra login either starts a check (unbounded) or is refused at once.
    first = _first_event(entered, results)
    r = client.post("/login", data={"csrf_token": token, "email": "x@example.org",
                                    "password": "y" * 12}) if first == "busy" else None
    release.set()
    for t in threads + [extra]:
        t.join(timeout=60)
    assert first == "busy"
    assert r.status_code == 503 and "Retry-After" in r.headers


def _first_event(entered: "queue.Queue", results: "queue.Queue") -> str:
    """``"entered"`` when the extra login started a check, else its refusal reason."""
    while True:
        for q in (results, entered):
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue

"""Portal sessions and TOTP against an attacker: a cookie replayed after logout, sessions past
their absolute and idle lifetimes, TOTP codes replayed or too far from the clock (the app's
clock is moved by the test; nothing depends on today's date)."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient

from herald.accounts import users
from herald.web.app import WebConfig, create_app
from herald.web.testing import FIXED_NOW, build_deployment
pytestmark = pytest.mark.usefixtures("cheap_argon2")

PW = "correct horse battery"


class Clock:
    """A settable UTC clock for the app."""

    def __init__(self):
        self.now = FIXED_NOW

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def dep(tmp_path_factory, cheap_argon2):
    root = tmp_path_factory.mktemp("sessions")
    d = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    d.clock = Clock()
    d.cfg = WebConfig(rate_per_key=0, rate_per_ip=0, session_max_age=3600, session_absolute=12 * 3600)
    d.app = create_app(d.settings, d.db, d.server_key, config=d.cfg, clock=d.clock)
    yield d
    d.db.dispose()


@pytest.fixture(autouse=True)
def reset_clock(dep):
    dep.clock.now = FIXED_NOW
    yield


def csrf(client, path="/login"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def login(dep, email, totp=None):
    c = TestClient(dep.app, follow_redirects=False)
    form = {"csrf_token": csrf(c), "email": email, "password": PW}
    if totp:
        form["totp"] = totp
    return c, c.post("/login", data=form)


def new_user(dep, name):
    return users.add_user(dep.db, f"{name}@cert.at.example", PW, "recipient", "test", "CERT.at")


def test_old_cookie_is_refused_after_logout(dep):
    u = new_user(dep, "logout")
    c, r = login(dep, u.email)
    assert r.status_code == 303 and c.get("/portal/").status_code == 200
    stolen = dict(c.cookies)  # a copy of the cookie, as an attacker would keep it
    assert c.post("/logout", data={"csrf_token": csrf(c, "/portal/")}).status_code == 303
    thief = TestClient(dep.app, follow_redirects=False, cookies=stolen)
    r = thief.get("/portal/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "CERT.at" not in r.text
    # a new login works and gets a new, valid session
    c2, r = login(dep, u.email)
    assert r.status_code == 303 and c2.get("/portal/").status_code == 200
    assert TestClient(dep.app, follow_redirects=False, cookies=stolen).get("/portal/").status_code == 303


def test_absolute_lifetime_ends_an_active_session(dep):
    u = new_user(dep, "absolute")
    c, _ = login(dep, u.email)
    # active every 50 minutes (never idle for the 1 h idle limit) for just under 12 h: still in
    for _ in range(14):
        dep.clock.now += timedelta(minutes=50)
        assert c.get("/portal/").status_code == 200
    dep.clock.now = FIXED_NOW + timedelta(seconds=dep.cfg.session_absolute + 1)
    r = c.get("/portal/")
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_idle_lifetime_on_the_app_clock(dep):
    u = new_user(dep, "idle")
    c, _ = login(dep, u.email)
    dep.clock.now += timedelta(seconds=dep.cfg.session_max_age - 1)
    assert c.get("/portal/").status_code == 200
    dep.clock.now += timedelta(seconds=dep.cfg.session_max_age + 1)
    assert c.get("/portal/").status_code == 303


def _enable_totp(dep, name):
    u = new_user(dep, name)
    secret = users.new_totp_secret()
    assert users.enable_totp(dep.db, dep.server_key, u.id, secret,
                             pyotp.TOTP(secret).at(FIXED_NOW - timedelta(minutes=10)),
                             FIXED_NOW - timedelta(minutes=10))
    return u, pyotp.TOTP(secret)


def test_totp_code_works_once(dep):
    u, totp = _enable_totp(dep, "replay")
    code = totp.at(FIXED_NOW)
    _, r = login(dep, u.email, code)
    assert r.status_code == 303
    _, r = login(dep, u.email, code)  # the same code again, within its 30 s: refused
    assert r.status_code == 401 and "Wrong authenticator code" in r.text
    # an older code (the previous step, within the drift) is refused too: steps only go forward
    _, r = login(dep, u.email, totp.at(FIXED_NOW - timedelta(seconds=30)))
    assert r.status_code == 401
    dep.clock.now = FIXED_NOW + timedelta(seconds=30)
    _, r = login(dep, u.email, totp.at(dep.clock.now))
    assert r.status_code == 303


def test_totp_drift_is_one_step(dep):
    u, totp = _enable_totp(dep, "drift")
    for offset, ok in [(-90, False), (-60, False), (90, False), (60, False), (-30, True), (30, True)]:
        code = totp.at(FIXED_NOW + timedelta(seconds=offset))
        if code in {totp.at(FIXED_NOW + timedelta(seconds=k)) for k in (-30, 0, 30)} and not ok:
            continue  # the same six digits in an accepted step (1 in 10^6): nothing to test
        _, r = login(dep, u.email, code)
        assert (r.status_code == 303) == ok, offset


@pytest.mark.parametrize("code", ["", " ", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "0" * 5000])
def test_malformed_totp_codes(dep, code):
    u, _ = _enable_totp(dep, f"bad{abs(hash(code)) % 10**8}")
    _, r = login(dep, u.email, code)
    assert r.status_code in (401, 413)

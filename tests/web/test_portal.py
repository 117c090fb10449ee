"""Recipient portal and admin console over HTTP (TestClient) on the real example day."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient

from herald.constituency import repository
from herald.store import audit
from herald.accounts import users
from herald.web.testing import EXAMPLE_DAY, FIXED_NOW, build_deployment

PW = "correct horse battery"


#: Cheap Argon2 costs for every test of this module (fixture of tests/web_fixtures.py).
pytestmark = pytest.mark.usefixtures("cheap_argon2")


@pytest.fixture(scope="module")
def dep(tmp_path_factory, cheap_argon2):
    root = tmp_path_factory.mktemp("portal")
    d = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    users.add_user(d.db, "admin@herald.example", PW, "admin", "test")
    users.add_user(d.db, "noc@cable-isp.example", PW, "recipient", "test", "Example Cable ISP")
    users.add_user(d.db, "soc@cert.at.example", PW, "recipient", "test", "CERT.at")
    yield d
    d.db.dispose()


def csrf(client, path="/login"):
    html = client.get(path).text
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(dep, email, password=PW, totp=None):
    c = TestClient(dep.app, follow_redirects=False)
    form = {"csrf_token": csrf(c), "email": email, "password": password}
    if totp:
        form["totp"] = totp
    r = c.post("/login", data=form)
    return c, r


def test_login_requires_csrf_and_right_password(dep):
    c = TestClient(dep.app, follow_redirects=False)
    r = c.post("/login", data={"email": "soc@cert.at.example", "password": PW})
    assert r.status_code == 403
    _, r = login(dep, "soc@cert.at.example", "wrong password!")
    assert r.status_code == 401 and "Wrong e-mail or password" in r.text
    _, r = login(dep, "nobody@example.org", PW)
    assert r.status_code == 401
    c, r = login(dep, "soc@cert.at.example")
    assert r.status_code == 303 and r.headers["location"] == "/portal/"
    assert c.get("/portal/").status_code == 200
    assert TestClient(dep.app, follow_redirects=False).get("/portal/").headers["location"] == "/login"


def test_lockout_after_repeated_failures(dep):
    users.add_user(dep.db, "victim@cert.at.example", PW, "recipient", "test", "CERT.at")
    for _ in range(users.MAX_FAILURES):
        _, r = login(dep, "victim@cert.at.example", "not the password")
        assert r.status_code == 401
    _, r = login(dep, "victim@cert.at.example")  # the right password, but locked
    assert r.status_code == 401
    actions = [e.action for e in audit.query(dep.db, actor="victim@cert.at.example")]
    assert "user.locked" in actions and "user.login" not in actions


def test_recipient_sees_only_own_reports_and_downloads(dep):
    c, _ = login(dep, "soc@cert.at.example")
    html = c.get("/portal/").text
    own = [r for r in dep.summary.reports if r["recipient"] == "CERT.at"]
    others = [r for r in dep.summary.reports if r["recipient"] != "CERT.at"]
    for r in own:
        name = r["path"].rsplit("/", 1)[1]
        assert name in html
        got = c.get(f"/portal/download/{EXAMPLE_DAY}/{name}")
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == r["sha256"]
    for r in others:
        name = r["path"].rsplit("/", 1)[1]
        assert name not in html
        assert c.get(f"/portal/download/{EXAMPLE_DAY}/{name}").status_code == 404
    for bad in ["..%2F..%2Fherald.db", "..%2Fcert_bund%2Fx.csv", "secret.key"]:
        assert c.get(f"/portal/download/{EXAMPLE_DAY}/{bad}").status_code == 404
    assert c.get("/portal/download/..%2F..%2Fdata/herald.db").status_code == 404
    # the chart: one bar per (day, type) with events, titled with the counts
    bars = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', html)
    assert sorted(bars) == sorted(f"{EXAMPLE_DAY} {r['type']}: {r['rows']}" for r in own)


def test_recipient_cannot_reach_admin(dep):
    c, _ = login(dep, "soc@cert.at.example")
    for path in ["/admin/", "/admin/filters", "/admin/audit", "/admin/runs"]:
        assert c.get(path).status_code == 403
    token = csrf(c, "/portal/keys")
    assert c.post("/admin/filters/1/approve", data={"csrf_token": token}).status_code == 403


def _sign(key_id, secret, req=None):
    body = json.dumps(dict(req or {}, apikey=key_id)).encode()
    return body, {"HMAC2": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_api_keys_in_the_portal(dep):
    c, _ = login(dep, "soc@cert.at.example")
    token = csrf(c, "/portal/keys")
    assert c.post("/portal/keys/create", data={"label": "x"}).status_code == 403  # no CSRF
    r = c.post("/portal/keys/create", data={"csrf_token": token, "label": "intelmq"})
    assert r.status_code == 303
    cookie = c.cookies.get("herald_session")
    page = c.get("/portal/keys").text
    key_id = re.search(r'id="new-key-id">([0-9a-f]+)<', page).group(1)
    secret = re.search(r'id="new-secret-value">([^<]+)<', page).group(1)
    assert secret not in c.get("/portal/keys").text  # shown once
    # the (signed, readable) session cookie never carried it
    import base64
    payload = cookie.split(".")[0]
    decoded = base64.b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert '"uid"' in decoded and secret not in decoded
    api = TestClient(dep.app)
    body, headers = _sign(key_id, secret)
    assert api.post("/api2/reports/list", content=body, headers=headers).status_code == 200
    # another recipient's user cannot revoke it
    other, _ = login(dep, "noc@cable-isp.example")
    other.post(f"/portal/keys/{key_id}/revoke", data={"csrf_token": csrf(other, "/portal/keys")})
    assert api.post("/api2/test/ping", content=body, headers=headers).status_code == 200
    # a forged cross-site POST (no token) does nothing
    assert c.post(f"/portal/keys/{key_id}/revoke").status_code == 403
    assert api.post("/api2/test/ping", content=body, headers=headers).status_code == 200
    c.post(f"/portal/keys/{key_id}/revoke", data={"csrf_token": token})
    assert api.post("/api2/test/ping", content=body, headers=headers).status_code == 401


def test_filter_request_review_and_next_run(dep):
    c, _ = login(dep, "noc@cable-isp.example")
    before = {r["type"] for r in dep.summary.reports if r["recipient"] == "Example Cable ISP"}
    r = c.post("/portal/filters", data={"csrf_token": csrf(c, "/portal/filters"), "kind": "asn",
                                        "value": "AS25255", "reason": "our second AS"})
    assert r.status_code == 303
    assert re.search(r"<td>asn</td><td>25255</td><td class=\"state-pending\">", c.get(
        "/portal/filters").text)
    info = repository.get_recipient(dep.db, "Example Cable ISP")
    f = next(x for x in info.filters if x.value == "25255")
    assert f.state == "pending" and f.requested_by == "noc@cable-isp.example"
    # pending filters do not route
    dep.run()
    assert {r["type"] for r in dep.summary.reports if r["recipient"] == "Example Cable ISP"} == before
    admin, _ = login(dep, "admin@herald.example")
    page = admin.get("/admin/filters").text
    assert "Hutchison Drei Austria" in page and "cable-isp.example" in page  # evidence
    assert "Alpine Hosting" in page  # conflict: AS25255 is Alpine Hosting's
    token = csrf(admin, "/admin/filters")
    r = admin.post(f"/admin/filters/{f.id}/reject", data={"csrf_token": token, "reason": ""})
    assert repository.get_recipient(dep.db, "Example Cable ISP").filters[-1].state == "pending"
    r = admin.post(f"/admin/filters/{f.id}/approve",
                   data={"csrf_token": token, "reason": "LOA checked"})
    assert r.status_code == 303
    entries = audit.query(dep.db, action="filter.verify", object_id=f.id)
    assert entries and entries[-1].actor == "admin@herald.example" and entries[-1].reason == "LOA checked"
    assert "filter.verify" in admin.get("/admin/audit").text
    dep.run()
    after = {r["type"] for r in dep.summary.reports if r["recipient"] == "Example Cable ISP"}
    alpine = {r["type"] for r in dep.summary.reports if r["recipient"] == "Alpine Hosting"}
    assert after == before | alpine and after != before
    assert EXAMPLE_DAY in admin.get("/admin/runs").text


def test_totp(dep):
    users.add_user(dep.db, "mfa@cert.at.example", PW, "recipient", "test", "CERT.at")
    c, _ = login(dep, "mfa@cert.at.example")
    page = c.get("/account").text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    token = csrf(c, "/account")
    c.post("/account/totp", data={"csrf_token": token, "code": "000000"
                                  if pyotp.TOTP(secret).at(FIXED_NOW) != "000000" else "111111"})
    assert "totp-on" not in c.get("/account").text
    c.post("/account/totp", data={"csrf_token": token, "code": pyotp.TOTP(secret).at(FIXED_NOW)})
    assert "totp-on" in c.get("/account").text
    _, r = login(dep, "mfa@cert.at.example")
    assert r.status_code == 401 and 'id="totp"' in r.text
    wrong = "123456" if pyotp.TOTP(secret).at(FIXED_NOW) != "123456" else "654321"
    _, r = login(dep, "mfa@cert.at.example", totp=wrong)
    assert r.status_code == 401
    # the code that enabled TOTP is used up; the next step's code is within the ±30 s drift
    _, r = login(dep, "mfa@cert.at.example", totp=pyotp.TOTP(secret).at(FIXED_NOW))
    assert r.status_code == 401
    _, r = login(dep, "mfa@cert.at.example", totp=pyotp.TOTP(secret).at(FIXED_NOW + timedelta(seconds=30)))
    assert r.status_code == 303
    with dep.db.engine.connect() as conn:
        import sqlalchemy as sa
        dump = str(conn.execute(sa.text("SELECT * FROM users")).all())
    assert secret not in dump


def test_logout_ends_the_session(dep):
    c, _ = login(dep, "soc@cert.at.example")
    c.post("/logout", data={"csrf_token": csrf(c, "/portal/")})
    assert c.get("/portal/").status_code == 303


def test_password_change_ends_other_sessions(dep):
    u = users.add_user(dep.db, "rotating@cert.at.example", PW, "recipient", "test", "CERT.at")
    c, _ = login(dep, "rotating@cert.at.example")
    assert c.get("/portal/").status_code == 200
    users.set_password(dep.db, u.id, "a brand new password", "test")
    assert c.get("/portal/").status_code == 303  # back to the login page
    _, r = login(dep, "rotating@cert.at.example", "a brand new password")
    assert r.status_code == 303


def test_many_days(dep):
    """Reports of 16 days: the front page lists the newest 14, ``?all=1`` every one; the API
    filters by date range.  (Earlier days are copies of the example day's files.)"""
    import shutil

    own = [r for r in dep.summary.reports if r["recipient"] == "CERT.at"]
    days = [f"2026-11-{d:02d}" for d in range(1, 16)]
    for day in days:
        entries = []
        for r in own:
            src = dep.settings.paths.reports / EXAMPLE_DAY / "cert_at" / r["path"].rsplit("/", 1)[1]
            dst = dep.settings.paths.reports / day / "cert_at" / src.name.replace(EXAMPLE_DAY, day)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
            entries.append(dict(r, path=str(dst)))
        (dep.settings.paths.data / "runs" / f"{day}.json").write_text(json.dumps(
            {"day": day, "reports": entries}))
    c, _ = login(dep, "soc@cert.at.example")
    html = c.get("/portal/").text
    shown = re.findall(r'<table class="reports" data-day="([0-9-]+)"', html)
    assert shown == [EXAMPLE_DAY] + days[::-1][:13]
    assert 'id="all-days"' in html and "Show 2 older day(s)" in html
    every = re.findall(r'<table class="reports" data-day="([0-9-]+)"', c.get("/portal/?all=1").text)
    assert every == [EXAMPLE_DAY] + days[::-1]
    # the chart covers the 30 days up to the newest: one bar per (day, type)
    assert len(re.findall(r'<rect class="bar"', html)) == 16 * len(own)
    from herald.accounts import apikeys

    k = apikeys.create_key(dep.db, dep.server_key, "CERT.at", "test")
    body, headers = _sign(k.key_id, k.secret, {"date": "2026-11-01:2026-11-05"})
    listed = TestClient(dep.app).post("/api2/reports/list", content=body, headers=headers).json()
    assert sorted({x["timestamp"] for x in listed}) == days[:5] and len(listed) == 5 * len(own)


def test_admin_recipients_page_shows_the_renotification_window(dep):
    repository.set_renotify_days(dep.db, "CERT.at", 7, "test")
    try:
        c, _ = login(dep, "admin@herald.example")
        html = c.get("/admin/").text
        row = re.search(r"<tr><td>CERT.at</td>(.*?)</tr>", html, re.S).group(1)
        assert '<td class="renotify">7 days</td>' in row
        other = re.search(r"<tr><td>Example Cable ISP</td>(.*?)</tr>", html, re.S).group(1)
        assert '<td class="renotify">-</td>' in other
    finally:
        repository.set_renotify_days(dep.db, "CERT.at", None, "test")

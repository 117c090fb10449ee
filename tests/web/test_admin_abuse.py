"""The admin console's abuse-contact pages over HTTP (TestClient): automatic recipients from the
ledger with RPSL sources, bounce and override state; overrides, inhibitions, bounce resets (all
audited); refusals for recipients, missing CSRF, dead cookies and bad values; HTML escaping."""

from __future__ import annotations

import datetime as dt
import mailbox
import os
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from herald.contacts import overrides as ovr
from herald.contacts.importer import import_dumps
from herald.contacts.store import write_contacts
from herald.constituency import inhibitions as inh
from herald.constituency import repository
from herald.deliver import bounces
from herald.store import audit, ledger
from herald.accounts import users
from herald.web.app import WebConfig, create_app
from herald.web.testing import FIXED_NOW, build_deployment
from tests.deliver.test_bounces import dsn

PW = "correct horse battery"
ADMIN = "admin@herald.example"
RPSL = Path(__file__).resolve().parents[1] / "data" / "rpsl"
#: The dumps' date (file mtime): 60 days before the app clock's day.
DUMP_TIME = dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc).timestamp()
HOSTILE = "<script>alert(1)</script>"
HOSTILE_MAILBOX = "x<script>alert(2)</script>@evil.example"

pytestmark = pytest.mark.usefixtures("cheap_argon2")


def report_path(day: str, slug: str, rtype: str = "scan_http") -> str:
    return f"/reports/{day}/{slug}/{day}-{rtype}-{slug}-abuse_c.csv"


@pytest.fixture(scope="module")
def dep(tmp_path_factory, cheap_argon2):
    """The example deployment plus: RPSL data, two automatic recipients with ledger reports on
    two days, and bounces of one of them (read from a Maildir of DSNs)."""
    root = tmp_path_factory.mktemp("abuseadmin")
    d = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    users.add_user(d.db, ADMIN, PW, "admin", "test")
    users.add_user(d.db, "soc@cert.at.example", PW, "recipient", "test", "CERT.at")
    dumps = []
    for name in ("ripe.db.inetnum", "ripe.db.inet6num", "ripe.db.aut-num", "ripe.db.organisation",
                 "ripe.db.role"):
        dst = root / "dumps" / name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(RPSL / name, dst)
        os.utime(dst, (DUMP_TIME, DUMP_TIME))
        dumps.append(dst)
    write_contacts(d.settings.paths.data, import_dumps(dumps), now=FIXED_NOW - dt.timedelta(days=1))
    # Automatic recipients, recorded in the ledger as the run records reports.
    repository.add_recipient(d.db, "abuse@example.net", "abuse@example.net", "test")
    repository.add_recipient(d.db, HOSTILE, "as-abuse@example.net", "test")
    for day, rows in (("2026-11-20", 5), ("2026-11-21", 7)):
        run = ledger.start_run(d.db, day, [])
        ledger.record_report(d.db, run, "abuse@example.net", "scan_http", day, rows, "0" * 64,
                             report_path(day, "abuse_example_net"))
        ledger.record_report(d.db, run, "abuse@example.net", "scan_ssh", day, 1, "1" * 64,
                             report_path(day, "abuse_example_net", "scan_ssh"))
        ledger.finish_run(d.db, run, {})
    run = ledger.start_run(d.db, "2026-11-19", [])
    ledger.record_report(d.db, run, HOSTILE, "scan_http", "2026-11-19", 3, "2" * 64,
                         report_path("2026-11-19", "script"))
    ledger.finish_run(d.db, run, {})
    # A hostile mailbox (the configuration's e-mail check accepts it) with a report and bounces.
    repository.add_recipient(d.db, "Hostile", HOSTILE_MAILBOX, "test")
    run = ledger.start_run(d.db, "2026-11-18", [])
    ledger.record_report(d.db, run, "Hostile", "scan_http", "2026-11-18", 2, "3" * 64,
                         report_path("2026-11-18", "hostile"))
    ledger.finish_run(d.db, run, {})
    md = root / "bounces"
    box = mailbox.Maildir(str(md), create=True)
    for n in range(3):
        box.add(dsn([("abuse@example.net", "failed", "5.1.1")], n))
    box.add(dsn([("other@bounce.example", "failed", "5.2.2")], 9))
    box.add(dsn([(HOSTILE_MAILBOX, "failed", "5.1.1")], 10))
    bounces.record_bounces(d.db, md, now=FIXED_NOW - dt.timedelta(hours=2))
    yield d
    d.db.dispose()


def csrf(client, path="/login"):
    html = client.get(path).text
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(dep, email, app=None):
    c = TestClient(app or dep.app, follow_redirects=False)
    r = c.post("/login", data={"csrf_token": csrf(c), "email": email, "password": PW})
    assert r.status_code == 303
    return c


@pytest.fixture
def admin(dep):
    return login(dep, ADMIN)


def post(client, path, data, token_from="/admin/abuse/"):
    return client.post(path, data=dict(data, csrf_token=csrf(client, token_from)))


def row_of(html: str, cls: str, key: str, value: str) -> str:
    m = re.search(rf'<tr class="{cls}[^"]*" {key}="{re.escape(value)}">(.*?)</tr>', html, re.S)
    assert m, f"no {cls} row {value}"
    return m.group(1)


# --- pages ----------------------------------------------------------------------------------------

def test_automatic_recipients_page(dep, admin):
    r = admin.get("/admin/abuse/")
    assert r.status_code == 200
    row = row_of(r.text, "automatic-recipient", "data-mailbox", "abuse@example.net")
    assert re.search(r'class="reports">4<', row) and re.search(r'class="rows">14<', row)
    assert 'class="last-day">2026-11-21<' in row and "scan_http, scan_ssh" in row
    assert "inetnum 192.0.2.0 - 192.0.2.255 (EXAMPLE-PARENT)" in row   # the RPSL source object
    assert "bouncing: 3 (last 5.1.1)" in row
    # each object links to the override form, prefilled
    assert 'href="/admin/abuse/overrides?network=192.0.2.0%2F24">override</a>' in row
    assert 'href="/admin/abuse/overrides?asn=64496">override</a>' in row
    form = admin.get("/admin/abuse/overrides?network=192.0.2.0%2F24").text
    assert 'name="network" placeholder="192.0.2.0/24" maxlength="64" value="192.0.2.0/24"' in form
    bad = admin.get('/admin/abuse/overrides?network="><script>&asn=-1').text
    assert 'maxlength="64" value=""' in bad and 'maxlength="16" value=""' in bad
    other = row_of(r.text, "automatic-recipient", "data-mailbox", "as-abuse@example.net")
    assert "aut-num AS" in other and re.search(r'class="rows">3<', other)
    assert "ok" in other
    # the example recipients' own reports are not automatic
    assert "CERT.at" not in re.search(r'<table id="automatic">.*?</table>', r.text, re.S).group(0)


def test_rpsl_panel_and_age_warning(dep, admin):
    html = admin.get("/admin/abuse/").text
    panel = re.search(r'<div id="rpsl">.*?</div>', html, re.S).group(0)
    assert "ripe.db.inetnum" in panel and "2026-10-01" in panel and "(60 days old)" in panel
    assert "rpsl-warning" not in panel
    # 120 days later the same data is past the 90-day limit
    later = create_app(dep.settings, dep.db, dep.server_key, config=WebConfig(rate_per_key=0, rate_per_ip=0),
                       clock=lambda: FIXED_NOW + dt.timedelta(days=60))
    html = login(dep, ADMIN, later).get("/admin/abuse/").text
    assert 'id="rpsl-warning"' in html and "120 days old" in html


def test_rpsl_panel_without_data(dep, admin, tmp_path):
    settings = dep.settings.__class__(**{**vars(dep.settings)})
    settings.paths = dep.settings.paths.__class__(**{**vars(dep.settings.paths), "data": tmp_path})
    app = create_app(settings, dep.db, dep.server_key, config=WebConfig(rate_per_key=0, rate_per_ip=0),
                     clock=lambda: FIXED_NOW)
    c = login(dep, ADMIN, app)
    html = c.get("/admin/abuse/").text
    assert 'id="no-rpsl"' in html and "unknown" in html   # sources unknown without data
    (tmp_path / "contacts").mkdir()
    (tmp_path / "contacts" / "manifest.json").write_text('{"generation": "g-gone"}')
    html = c.get("/admin/abuse/").text
    assert 'id="rpsl-damaged"' in html and "g-gone" not in html


def test_override_add_list_remove_audited(dep, admin):
    r = post(admin, "/admin/abuse/overrides",
             {"network": "192.0.2.0/26", "mailbox": "desk@example.net", "reason": "confirmed by phone"})
    assert r.status_code == 303 and r.headers["location"] == "/admin/abuse/overrides"
    o = ovr.list_overrides(dep.db)[-1]
    assert (o.network, o.mailbox, o.created_by) == ("192.0.2.0/26", "desk@example.net", ADMIN)
    entry = audit.query(dep.db, action="contact_override.add")[-1]
    assert (entry.actor, entry.object_id, entry.reason) == (ADMIN, str(o.id), "confirmed by phone")
    r = post(admin, "/admin/abuse/overrides", {"asn": "AS3333", "suppress": "on", "reason": "asked"})
    assert r.status_code == 303
    s = ovr.list_overrides(dep.db)[-1]
    assert (s.asn, s.mailbox) == (3333, None)
    html = admin.get("/admin/abuse/overrides").text
    assert "desk@example.net" in html and "AS3333" in html and "suppressed" in html
    # the automatic-recipients page shows the override of the address's network
    row = row_of(admin.get("/admin/abuse/").text, "automatic-recipient", "data-mailbox", "abuse@example.net")
    assert f"override #{o.id} (network 192.0.2.0/26): sent to desk@example.net" in row
    for oid in (o.id, s.id):
        r = post(admin, f"/admin/abuse/overrides/{oid}/remove", {"reason": "done"})
        assert r.status_code == 303
    assert [x.id for x in ovr.list_overrides(dep.db)] == []
    removed = audit.query(dep.db, action="contact_override.remove")
    assert [(e.actor, e.object_id, e.reason) for e in removed[-2:]] == [
        (ADMIN, str(o.id), "done"), (ADMIN, str(s.id), "done")]


def test_inhibition_add_list_remove_audited(dep, admin):
    r = post(admin, "/admin/abuse/inhibitions",
             {"network": "198.51.100.7/24", "report_type": "scan_http", "recipient": "CERT.at",
              "expires": "2026-12-31", "reason": "customer is patching"})
    assert r.status_code == 303
    i = inh.list_inhibitions(dep.db)[-1]
    assert (i.network, i.report_type, i.recipient, i.created_by) == (
        "198.51.100.0/24", "scan_http", "CERT.at", ADMIN)
    assert i.expires_at == dt.datetime(2026, 12, 31, tzinfo=dt.timezone.utc)
    entry = audit.query(dep.db, action="inhibition.add")[-1]
    assert (entry.actor, entry.object_id, entry.reason) == (ADMIN, str(i.id), "customer is patching")
    r = post(admin, "/admin/abuse/inhibitions", {"asn": "64496", "tag": "mirai", "reason": "sinkhole"})
    assert r.status_code == 303
    j = inh.list_inhibitions(dep.db)[-1]
    assert (j.asn, j.tag, j.recipient, j.expires_at) == (64496, "mirai", None, None)
    html = admin.get("/admin/abuse/inhibitions").text
    row = row_of(html, "inhibition", "data-inhibition-id", str(i.id))
    assert "198.51.100.0/24" in row and "CERT.at" in row and "2026-12-31 00:00" in row
    assert "everyone" in row_of(html, "inhibition", "data-inhibition-id", str(j.id))
    for x in (i, j):
        assert post(admin, f"/admin/abuse/inhibitions/{x.id}/remove", {"reason": "over"}).status_code == 303
    assert inh.list_inhibitions(dep.db) == []
    removed = audit.query(dep.db, action="inhibition.remove")
    assert [(e.actor, e.object_id, e.reason) for e in removed[-2:]] == [
        (ADMIN, str(i.id), "over"), (ADMIN, str(j.id), "over")]


def test_bounces_list_and_reset_audited(dep, admin):
    html = admin.get("/admin/abuse/bounces").text
    row = row_of(html, "bounce", "data-address", "other@bounce.example")
    assert 'class="count">1<' in row and "5.2.2" in row and "2026-11-30 10:00" in row
    assert 'class="bounce bouncing" data-address="abuse@example.net"' in html
    r = post(admin, "/admin/abuse/bounces/reset", {"address": "other@bounce.example",
                                                   "reason": "mailbox fixed"}, "/admin/abuse/bounces")
    assert r.status_code == 303
    assert "other@bounce.example" not in {b["address"] for b in bounces.list_bounces(dep.db)}
    entry = audit.query(dep.db, action="bounces.reset")[-1]
    assert (entry.actor, entry.object_id, entry.reason) == (ADMIN, "other@bounce.example", "mailbox fixed")


# --- refusals -------------------------------------------------------------------------------------

PAGES = ["/admin/abuse/", "/admin/abuse/overrides", "/admin/abuse/inhibitions", "/admin/abuse/bounces"]
POSTS = [("/admin/abuse/overrides", {"asn": "64500", "suppress": "on", "reason": "x"}),
         ("/admin/abuse/overrides/1/remove", {"reason": "x"}),
         ("/admin/abuse/inhibitions", {"asn": "64500", "reason": "x"}),
         ("/admin/abuse/inhibitions/1/remove", {"reason": "x"}),
         ("/admin/abuse/bounces/reset", {"address": "abuse@example.net", "reason": "x"})]


def _unchanged(dep):
    return (len(ovr.list_overrides(dep.db)), len(inh.list_inhibitions(dep.db)),
            len(bounces.list_bounces(dep.db)), len(audit.query(dep.db, action="contact_override.")),
            len(audit.query(dep.db, action="inhibition.")), len(audit.query(dep.db, action="bounces.")))


def test_recipient_user_is_refused(dep):
    c = login(dep, "soc@cert.at.example")
    for path in PAGES:
        assert c.get(path).status_code == 403
    before = _unchanged(dep)
    token = csrf(c, "/portal/keys")
    for path, data in POSTS:
        assert c.post(path, data=dict(data, csrf_token=token)).status_code == 403
    assert _unchanged(dep) == before


def test_anonymous_is_sent_to_login(dep):
    c = TestClient(dep.app, follow_redirects=False)
    for path in PAGES:
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login"
    for path, data in POSTS:
        assert c.post(path, data=data).status_code == 303


def test_missing_or_wrong_csrf_is_refused(dep, admin):
    before = _unchanged(dep)
    for path, data in POSTS:
        assert admin.post(path, data=data).status_code == 403
        assert admin.post(path, data=dict(data, csrf_token="forged")).status_code == 403
    assert _unchanged(dep) == before


def test_old_cookie_after_logout_is_refused(dep):
    c = login(dep, ADMIN)
    token = csrf(c, "/admin/abuse/")
    cookie = c.cookies.get("herald_session")
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    replay = TestClient(dep.app, follow_redirects=False, cookies={"herald_session": cookie})
    before = _unchanged(dep)
    for path in PAGES:
        assert replay.get(path).status_code == 303
    for path, data in POSTS:
        assert replay.post(path, data=dict(data, csrf_token=token)).status_code == 303
    assert _unchanged(dep) == before


@pytest.mark.parametrize("path, data, field", [
    ("/admin/abuse/overrides", {"network": "300.1.1.1/8", "mailbox": "a@b.example", "reason": "r"}, "network"),
    ("/admin/abuse/overrides", {"asn": "-1", "mailbox": "a@b.example", "reason": "r"}, "asn"),
    ("/admin/abuse/overrides", {"asn": "4294967296", "suppress": "on", "reason": "r"}, "asn"),
    ("/admin/abuse/overrides", {"asn": "64500", "mailbox": "not a mailbox", "reason": "r"}, "mailbox"),
    ("/admin/abuse/overrides", {"asn": "64500", "suppress": "on", "reason": " "}, "reason"),
    ("/admin/abuse/overrides", {"network": "192.0.2.0/24", "asn": "1", "suppress": "on", "reason": "r"}, "network"),
    ("/admin/abuse/overrides/abc/remove", {"reason": "r"}, "id"),
    ("/admin/abuse/inhibitions", {"network": "300.1.1.1/8", "reason": "r"}, "network"),
    ("/admin/abuse/inhibitions", {"asn": "-1", "reason": "r"}, "asn"),
    ("/admin/abuse/inhibitions", {"asn": "1", "expires": "yesterday", "reason": "r"}, "expires"),
    ("/admin/abuse/inhibitions", {"asn": "1", "expires": "2026-11-29", "reason": "r"}, "expires"),
    ("/admin/abuse/inhibitions", {"asn": "1", "expires": "2026-11-30", "reason": "r"}, "expires"),
    ("/admin/abuse/inhibitions", {"report_type": "no_such_type", "reason": "r"}, "report_type"),
    ("/admin/abuse/inhibitions", {"asn": "1", "recipient": "Nobody", "reason": "r"}, "recipient"),
    ("/admin/abuse/inhibitions", {"reason": "r"}, "network"),
    ("/admin/abuse/inhibitions", {"tag": "x" * 101, "reason": "r"}, "tag"),
    ("/admin/abuse/inhibitions", {"asn": "1", "reason": "r\x00"}, "reason"),
    ("/admin/abuse/bounces/reset", {"address": "no-at-sign", "reason": "r"}, "address"),
    ("/admin/abuse/overrides", {"asn": "1", "mailbox": HOSTILE_MAILBOX, "reason": "r"}, "mailbox"),
    ("/admin/abuse/overrides", {"asn": "1", "suppress": "on", "reason": "x" * 2001}, "reason"),
])
def test_bad_values_are_refused_naming_the_field(dep, admin, path, data, field):
    before = _unchanged(dep)
    r = post(admin, path, data)
    assert r.status_code == 400
    assert f'data-field="{field}"' in r.text and f"<strong>{field}</strong>" in r.text
    assert "Traceback" not in r.text and "sqlalchemy" not in r.text.lower()
    assert _unchanged(dep) == before


def test_huge_reason(dep, admin):
    """A 1 MB reason: refused before parsing (413) at the default body limit; with the limit
    raised, refused by the form check naming the field."""
    before = _unchanged(dep)
    r = post(admin, "/admin/abuse/overrides", {"asn": "1", "suppress": "on", "reason": "x" * 1_000_000})
    assert r.status_code == 413
    big = create_app(dep.settings, dep.db, dep.server_key,
                     config=WebConfig(rate_per_key=0, rate_per_ip=0, max_body=4_000_000),
                     clock=lambda: FIXED_NOW)
    c = login(dep, ADMIN, big)
    r = post(c, "/admin/abuse/inhibitions", {"asn": "1", "reason": "x" * 1_000_000})
    assert r.status_code == 400 and 'data-field="reason"' in r.text and "x" * 3000 not in r.text
    assert _unchanged(dep) == before


def test_unknown_ids_do_not_fail(dep, admin):
    for path in ("/admin/abuse/overrides/999999/remove", "/admin/abuse/inhibitions/999999/remove"):
        r = post(admin, path, {"reason": "r"})
        assert r.status_code == 303
    r = post(admin, "/admin/abuse/bounces/reset", {"address": "nobody@example.net", "reason": "r"})
    assert r.status_code == 303
    assert "nobody@example.net has no recorded bounces" in admin.get("/admin/abuse/bounces").text


def test_hostile_text_is_escaped(dep, admin):
    post(admin, "/admin/abuse/overrides", {"asn": "64511", "mailbox": "abuse@evil.example",
                                           "reason": HOSTILE})
    post(admin, "/admin/abuse/inhibitions", {"tag": HOSTILE[:90], "reason": HOSTILE})
    for path in PAGES:
        html = admin.get(path).text
        assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in admin.get("/admin/abuse/overrides").text
    assert "&lt;script&gt;" in admin.get("/admin/abuse/inhibitions").text
    html = admin.get("/admin/abuse/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # recipient name
    assert "x&lt;script&gt;alert(2)&lt;/script&gt;@evil.example" in html  # mailbox
    assert "alert(2)&lt;/script&gt;@evil.example" in admin.get("/admin/abuse/bounces").text
    r = post(admin, "/admin/abuse/bounces/reset", {"address": "x<script>alert(2)</script>@evil.example",
                                                   "reason": "fixed"})
    assert r.status_code == 303 and "bounces.reset" in [e.action for e in audit.query(dep.db, limit=1)]
    for o in ovr.list_overrides(dep.db):
        ovr.remove_override(dep.db, o.id, "test")
    for i in inh.list_inhibitions(dep.db):
        inh.remove_inhibition(dep.db, i.id, "test")


def test_recipients_of_kind_abuse_contact_are_automatic(dep, admin):
    """A recipient of kind ``abuse_contact`` (the routing's automatic recipients) is listed even
    when its report file has no ``abuse_c`` filter part (migration c002 allows the kind)."""
    import sqlalchemy as sa

    from herald.store.db import ContactRow, RecipientRow, utcnow

    with dep.db.engine.begin() as conn:
        rid = conn.execute(sa.insert(RecipientRow.__table__).values(
            name="auto abuse@kind.example", slug="auto_abuse_kind_example", kind="abuse_contact",
            disabled=False, created_at=utcnow(), updated_at=utcnow())).inserted_primary_key[0]
        conn.execute(sa.insert(ContactRow.__table__).values(recipient_id=rid, email="abuse@kind.example",
                                                            is_primary=True))
    run = ledger.start_run(dep.db, "2026-11-17", [])
    ledger.record_report(dep.db, run, rid, "scan_http", "2026-11-17", 9, "4" * 64,
                         "/reports/2026-11-17/auto/2026-11-17-scan_http-auto.csv")
    ledger.finish_run(dep.db, run, {})
    row = row_of(admin.get("/admin/abuse/").text, "automatic-recipient", "data-mailbox", "abuse@kind.example")
    assert re.search(r'class="rows">9<', row) and "auto abuse@kind.example" in row


def test_engine_errors_are_not_shown(dep, monkeypatch):
    import sqlalchemy.exc

    def boom(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("INSERT INTO contact_overrides secret_column", {},
                                              Exception("database is locked at /srv/secret.db"))

    monkeypatch.setattr(ovr, "add_override", boom)
    c = TestClient(dep.app, follow_redirects=False, raise_server_exceptions=False)
    c.post("/login", data={"csrf_token": csrf(c), "email": ADMIN, "password": PW})
    r = post(c, "/admin/abuse/overrides", {"asn": "64501", "suppress": "on", "reason": "r"})
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    assert "secret" not in r.text and "contact_overrides" not in r.text


def test_automatic_recipients_are_summed_and_limited(dep):
    from herald.web.admin_abuse import automatic_recipients

    rows, more = automatic_recipients(dep.db)
    top = rows[0]
    assert (top.mailbox, top.reports, top.rows, top.types) == (
        "abuse@example.net", 4, 14, ["scan_http", "scan_ssh"])
    assert top.last_day == dt.date(2026, 11, 21) and more == 0
    first, more = automatic_recipients(dep.db, limit=1)
    assert first[0].mailbox == "abuse@example.net" and more == len(rows) - 1

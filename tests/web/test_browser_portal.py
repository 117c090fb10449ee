"""End to end in headless Chromium (Debian's chromium driven by Playwright): a recipient logs in,
sees and downloads its reports, requests a filter; an admin approves it; the next pipeline run
routes to it.  Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from herald.constituency import repository
from herald.accounts import users
from herald.web.testing import EXAMPLE_DAY, LiveServer, build_deployment

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PW = "correct horse battery"


#: Cheap Argon2 costs for every test of this module (fixture of tests/web_fixtures.py).
pytestmark = pytest.mark.usefixtures("cheap_argon2")


@pytest.fixture(scope="module")
def live(tmp_path_factory, cheap_argon2):
    root = tmp_path_factory.mktemp("browser")
    dep = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    users.add_user(dep.db, "admin@herald.example", PW, "admin", "test")
    users.add_user(dep.db, "noc@cable-isp.example", PW, "recipient", "test", "Example Cable ISP")
    with LiveServer(dep.app) as server:
        yield dep, server
    dep.db.dispose()


def _login(page, base, email):
    page.goto(base + "login")
    page.fill("#email", email)
    page.fill("#password", PW)
    page.click("#login")


def test_portal_and_admin_end_to_end(live, tmp_path):
    dep, server = live
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = server.url
    own = {r["type"]: r for r in dep.summary.reports if r["recipient"] == "Example Cable ISP"}
    alpine = {r["type"] for r in dep.summary.reports if r["recipient"] == "Alpine Hosting"}
    assert own and alpine - set(own)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
            page = ctx.new_page()
            _login(page, base, "noc@cable-isp.example")
            page.wait_for_url(base + "portal/")
            assert page.locator("h1").first.inner_text() == "Reports of Example Cable ISP"
            links = page.locator("a.download")
            assert sorted(links.all_inner_texts()) == sorted(
                Path(r["path"]).name for r in own.values())
            assert page.locator("#chart rect.bar").count() == len(own)
            page.screenshot(path=str(SHOTS / "01-portal-reports.png"), full_page=True)

            with page.expect_download() as info:
                links.first.click()
            dl = info.value
            data = Path(dl.path()).read_bytes()
            rtype = next(t for t, r in own.items() if Path(r["path"]).name == dl.suggested_filename)
            assert hashlib.sha256(data).hexdigest() == own[rtype]["sha256"]

            page.click("text=Filters")
            page.select_option("#filter-kind", "asn")
            page.fill("#filter-value", "AS25255")
            page.fill("#filter-reason", "second AS, see LOA")
            page.click("#request-filter")
            assert "pending" in page.locator("#flash").inner_text()
            assert page.locator("#filters td.state-pending").count() == 1
            page.screenshot(path=str(SHOTS / "02-portal-filter-requested.png"), full_page=True)
            page.click("#logout")
            page.wait_for_url(base + "login")

            admin = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            _login(admin, base, "admin@herald.example")
            admin.wait_for_url(base + "admin/")
            assert admin.locator("#recipients").inner_text().count("Example Cable ISP") == 1
            admin.click("text=Filter requests")
            row = admin.locator("tr.pending-filter")
            assert row.count() == 1
            assert "Hutchison Drei Austria" in row.locator(".as-name").inner_text()
            assert row.locator(".email-domain").inner_text() == "cable-isp.example"
            admin.screenshot(path=str(SHOTS / "03-admin-pending-filter.png"), full_page=True)
            row.locator("form[action$='/approve'] input.reason").fill("LOA checked by phone")
            row.locator("button.approve").click()
            assert "verified" in admin.locator("#flash").inner_text()
            assert admin.locator("#no-pending").count() == 1
            admin.click("text=Audit log")
            assert admin.locator("#audit td.action", has_text="filter.verify").count() >= 1
            admin.screenshot(path=str(SHOTS / "04-admin-audit.png"), full_page=True)

            f = [x for x in repository.get_recipient(dep.db, "Example Cable ISP").filters
                 if x.value == "25255"]
            assert f and f[0].state == "verified" and f[0].decided_by == "admin@herald.example"
            dep.run()  # the next daily run routes AS25255 to the Cable ISP too
            got = {r["type"] for r in dep.summary.reports if r["recipient"] == "Example Cable ISP"}
            assert got == set(own) | alpine

            _login(page, base, "noc@cable-isp.example")
            page.wait_for_url(base + "portal/")
            texts = page.locator(f"table.reports[data-day='{EXAMPLE_DAY}']").inner_text()
            for t in got:
                assert t in texts
            page.screenshot(path=str(SHOTS / "05-portal-after-approval.png"), full_page=True)
        finally:
            browser.close()

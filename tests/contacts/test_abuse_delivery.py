"""Issue 15: automatic recipients (RPSL abuse mailboxes) are stored as recipients of kind
``abuse_contact``, so that the run records their reports in the ledger and queues their
messages, and ``herald send``'s bounce hold applies to them (real aiosmtpd relay).

Uses the RPSL fixtures and the run set-up of ``tests/contacts/test_abuse_routing.py``.
"""

from __future__ import annotations

import mailbox
from datetime import datetime, timezone

import sqlalchemy as sa

from herald.constituency.recipients import slugify
from herald.constituency.sync import routing_recipients
from herald.contacts.autorecipients import AUDIT_ACTION, KIND, StoredNames
from herald.deliver.bounces import bounce_threshold, record_bounces
from herald.deliver.outbox import list_outbox, send_due
from herald.pipeline import run_day
from herald.store.db import AuditRow, ContactRow, OutboxRow, RecipientRow, ReportRow, open_db
from tests.deliver_support import SmtpServer
from tests.contacts.test_abuse_routing import DAYS, setup  # noqa: F401  (the fixture)
from tests.contacts.test_abuse_routing import CERT, OWNER, report_pairs
from tests.deliver.test_bounces import dsn

BOUNCING = "abuse@example.net"


def smtp(settings, port: int = 25) -> None:
    """Configure a relay (127.0.0.1:port) and a sender in ``settings``."""
    settings.raw["smtp"] = {"host": "127.0.0.1", "port": port, "security": "none",
                            "rate_per_second": 0, "retry_base": 0, "timeout": 10}
    settings.raw.setdefault("report", {})["sender"] = "reports@herald.example"


def admin_client(settings, db):
    """A web test client logged in as a new admin user (the app on a fixed clock, 2026-11-05)."""
    import os
    import re

    from fastapi.testclient import TestClient

    from herald.accounts import users
    from herald.crypto import ServerKey
    from herald.web.app import WebConfig, create_app

    users.add_user(db, "admin@herald.example", "correct horse battery", "admin", "test")
    app = create_app(settings, db, ServerKey(os.urandom(32)),
                     config=WebConfig(rate_per_key=0, rate_per_ip=0),
                     clock=lambda: datetime(2026, 11, 5, 12, tzinfo=timezone.utc))
    c = TestClient(app, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
    assert c.post("/login", data={"csrf_token": token, "email": "admin@herald.example",
                                  "password": "correct horse battery"}).status_code == 303
    return c


def automatic_rows(db):
    with db.session() as s:
        return {r.name: (r.id, r.slug) for r in s.scalars(
            sa.select(RecipientRow).where(RecipientRow.kind == KIND))}


def test_run_records_and_queues_automatic_recipients(setup):  # noqa: F811
    root, settings = setup
    smtp(settings)
    s = run_day(settings, DAYS[0])
    assert s.ok and s.reconciles, s.to_dict()
    auto = [r for r in s.reports if r["kind"] == "abuse_contact"]
    assert len(auto) == 4
    assert not [w for w in s.warnings if "not queued" in w or "taken" in w], s.warnings
    db = open_db(settings.database_url)
    try:
        rows = automatic_rows(db)
        assert set(rows) == {r["recipient"] for r in auto}
        with db.session() as sess:
            # The mailbox is the primary contact; no filters.
            emails = dict(sess.execute(sa.select(ContactRow.recipient_id, ContactRow.email)
                                       .where(ContactRow.recipient_id.in_([i for i, _ in rows.values()]))).all())
            assert {emails[rows[r["recipient"]][0]] for r in auto} == {r["email"] for r in auto}
            ledger = {(rid, sha) for rid, sha in sess.execute(sa.select(ReportRow.recipient_id, ReportRow.sha256))}
            queued = {(o.recipient_id, o.report_id) for o in sess.scalars(sa.select(OutboxRow))}
        for r in auto:
            rid = rows[r["recipient"]][0]
            assert (rid, r["sha256"]) in ledger and r["report_id"]
            assert r["delivery"] == "queued" and (rid, r["report_id"]) in queued
        assert {e.recipient for e in list_outbox(db)} >= {r["recipient"] for r in auto}
        # One audit entry for the run, listing the recipients it created.
        with db.session() as sess:
            entries = list(sess.scalars(sa.select(AuditRow).where(AuditRow.action == AUDIT_ACTION)))
        assert len(entries) == 1 and entries[0].details["names"] == sorted(rows)
        assert entries[0].details["created"] == 4 and entries[0].details["day"] == DAYS[0]
        # A re-run creates nothing and queues nothing new.
        outbox_before = [e.id for e in list_outbox(db)]
        again = run_day(settings, DAYS[0], force=True)
        assert again.ok and automatic_rows(db) == rows
        assert [e.id for e in list_outbox(db)] == outbox_before
        with db.session() as sess:
            assert sess.scalar(sa.select(sa.func.count()).select_from(AuditRow)
                               .where(AuditRow.action == AUDIT_ACTION)) == 1
    finally:
        db.dispose()


def test_automatic_recipients_never_route_by_themselves(setup):  # noqa: F811
    root, settings = setup
    run_day(settings, DAYS[0])
    db = open_db(settings.database_url)
    try:
        assert len(automatic_rows(db)) == 4
        assert {r.kind for r in routing_recipients(db, DAYS[1])} == {"network_owner", "national_cert"}
    finally:
        db.dispose()
    # Day 2 without the abuse-contact step: the stored mailboxes receive nothing.
    settings.raw["abuse_contacts"]["enabled"] = False
    s = run_day(settings, DAYS[1])
    assert s.reconciles
    assert {p[0] for p in report_pairs(root, DAYS[1])} == {slugify(OWNER["name"]), slugify(CERT["name"])}


def test_mailbox_slug_taken_by_a_stored_recipient_gets_the_suffix(setup):  # noqa: F811
    """A recipient outside the routing (a law-enforcement partner without operation) already has
    the slug of a mailbox: the automatic recipient takes the hashed name, and is recorded."""
    root, settings = setup
    settings.raw["recipients"].append({"name": "Abuse Example Net", "email": "lea@police.example",
                                       "kind": "law_enforcement"})
    s = run_day(settings, DAYS[0])
    assert s.ok, s.to_dict()
    entry = next(r for r in s.reports if r["email"] == BOUNCING)
    assert entry["recipient"].startswith(BOUNCING + " ") and entry["report_id"]
    assert not [w for w in s.warnings if "taken" in w]


def test_stored_names():
    names = StoredNames(frozenset({"CERT", "cert"}), {"a_b_x": "a.b@x"})
    assert names.free("a.b@x", "a_b_x") and names.free("c@x", "c_x")
    assert not names.free("a_b@x", "a_b_x") and not names.free("cert", "cert")


def test_bouncing_automatic_mailbox_is_held_at_send(setup, tmp_path):  # noqa: F811
    root, settings = setup
    maildir = tmp_path / "bounces"
    box = mailbox.Maildir(str(maildir), create=True)
    for i in range(3):
        box.add(dsn([(BOUNCING, "failed", "5.1.1")], i))
    with SmtpServer() as srv:
        smtp(settings, srv.port)
        settings.raw["abuse_contacts"]["bounce_threshold"] = 3
        s = run_day(settings, DAYS[0])
        assert s.ok
        mine = {r["outbox_id"] for r in s.reports if r["email"] == BOUNCING}
        others = {r["outbox_id"] for r in s.reports if r["kind"] == "abuse_contact"} - mine
        assert len(mine) == 1 and others
        db = open_db(settings.database_url)
        try:
            record_bounces(db, maildir, bounce_threshold(settings),
                           now=datetime(2026, 11, 2, 9, tzinfo=timezone.utc))
            res = send_due(db, settings)
            assert set(res.held) == mine
            assert not mine & set(res.sent) and others & set(res.sent)
            assert BOUNCING not in {a.lower() for env in srv.handler.received for a in env.rcpt_tos}
            held = list_outbox(db, state="held")
            assert [(e.id, e.hold_reason) for e in held] == [(min(mine), "bouncing")]
        finally:
            db.dispose()


def test_store_automatic_recipients_is_bulk_and_idempotent(db):
    """On both databases: one INSERT of recipients (and one of contacts) for all new mailboxes,
    none when they are known; ids assigned in place; one audit entry per call that created any;
    other kinds untouched."""
    from herald.constituency.recipients import Recipient
    from herald.contacts.autorecipients import store_automatic_recipients
    from herald.contacts.routing import AbuseContact

    def batch():
        return ([AbuseContact(name=f"m{i:02d}@x.example", email=f"m{i:02d}@x.example", kind=KIND)
                 for i in range(50)] + [Recipient(name="Owner", email="o@x.example")])

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO RECIPIENTS"):
            statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        first = batch()
        assert store_automatic_recipients(db, first, day="2026-11-02") == []
        assert len(statements) == 1
        assert all(r.id is not None for r in first[:-1]) and first[-1].id is None
        again = batch()
        assert store_automatic_recipients(db, again, day="2026-11-03") == []
        assert len(statements) == 1
        assert [r.id for r in again] == [r.id for r in first]
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    with db.session() as s:
        entries = list(s.scalars(sa.select(AuditRow).where(AuditRow.action == AUDIT_ACTION)))
        assert len(entries) == 1 and entries[0].details["created"] == 50
        assert s.scalar(sa.select(sa.func.count()).select_from(ContactRow)) == 50
        assert s.scalar(sa.select(sa.func.count()).select_from(RecipientRow)) == 50


def test_admin_page_lists_the_runs_automatic_recipients(setup, cheap_argon2):  # noqa: F811
    """``/admin/abuse/`` after real runs: every automatic recipient, with its volumes from the
    ledger (days 1 and 3; day 2 is within their re-notification window)."""
    import re
    from collections import Counter

    root, settings = setup
    summaries = [run_day(settings, day) for day in DAYS]
    reports, rows = Counter(), Counter()
    for s in summaries:
        for r in s.reports:
            if r["kind"] == "abuse_contact":
                reports[r["email"]] += 1
                rows[r["email"]] += r["rows"]
    assert len(reports) == 4
    db = open_db(settings.database_url)
    try:
        c = admin_client(settings, db)
        html = c.get("/admin/abuse/").text
        for mailbox_, n in reports.items():
            m = re.search(rf'<tr class="automatic-recipient[^"]*" data-mailbox="{re.escape(mailbox_)}">'
                          rf'(.*?)</tr>', html.replace("&#34;", '"').replace("&quot;", '"'), re.S)
            assert m, mailbox_
            assert re.search(rf'class="reports">{n}<', m.group(1)), mailbox_
            assert re.search(rf'class="rows">{rows[mailbox_]}<', m.group(1)), mailbox_
        assert "Customer B ISP" not in re.search(r'<table id="automatic">.*?</table>', html, re.S).group(0)
    finally:
        db.dispose()


def test_disabled_automatic_recipient_is_not_reported_to(setup):  # noqa: F811
    """An operator disables a stored automatic recipient (an opt-out): later runs treat its
    mailbox as suppressed; the others are reported to as before and the counts reconcile."""
    from herald.constituency import repository

    root, settings = setup
    run_day(settings, DAYS[0])
    db = open_db(settings.database_url)
    try:
        repository.disable_recipient(db, BOUNCING, "test", "asked us to stop")
    finally:
        db.dispose()
    s = run_day(settings, DAYS[2])  # outside the window of day 1
    assert s.ok and s.reconciles
    got = {p[0] for p in report_pairs(root, DAYS[2])}
    assert slugify(BOUNCING) not in got and slugify("desk@override.example") in got
    assert not [r for r in s.reports if r["email"] == BOUNCING]


def test_long_mailbox_gets_a_short_name_that_the_database_takes(db, tmp_path):
    """A mailbox text longer than MAX_NAME (a long list from one role) is cut and given the hash
    suffix: the name and slug fit ``recipients`` (PostgreSQL enforces the lengths); ``To`` is the
    whole text."""
    import datetime as dt
    import hashlib

    import pyarrow as pa

    from herald.constituency.recipients import recipients_from_specs
    from herald.contacts.autorecipients import store_automatic_recipients
    from herald.contacts.importer import import_dumps
    from herald.contacts.overrides import ContactOverride
    from herald.contacts.routing import MAX_NAME, AbuseContactRouter
    from herald.config import abuse_contact_settings
    from herald.contacts.store import load_contacts, write_contacts
    from herald.route import Router
    from herald.schema.registry import default_registry
    from tests.contacts.test_abuse_routing import RPSL

    long_ = ", ".join(f"abuse{i}@a-rather-long-domain-name.example" for i in range(6))
    write_contacts(tmp_path, import_dumps(sorted(RPSL.glob("*.db*"))))
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    router = Router(recipients_from_specs([CERT]))
    step = AbuseContactRouter(router, load_contacts(tmp_path),
                              abuse_contact_settings({"abuse_contacts": {"enabled": True, "countries": ["NL"]}}),
                              [ContactOverride(1, "192.0.2.0/28", None, long_, "r", "t", now)])
    table = pa.table({"ip": ["192.0.2.1"], "asn": pa.array([None], pa.int64()), "geo": ["NL"], "port": [80]})
    rtype = default_registry().get("scan_http")
    a = step.extend(table, rtype, router.route(table, rtype))
    auto = router.recipients[-1]
    assert int(a.recipient[-1]) == len(router.recipients) - 1
    assert auto.email == long_ and len(long_) > MAX_NAME
    assert auto.name == f"{long_[:MAX_NAME]} {hashlib.sha256(long_.encode()).hexdigest()[:8]}"
    assert len(auto.slug) <= 100
    assert store_automatic_recipients(db, router.recipients) == [] and auto.id is not None


def plain_recipient(db, name: str, email: str) -> int:
    """Insert a recipient and its primary contact naming only the columns every revision has
    (the ORM would name later columns too), for tests of older revisions; its id."""
    from herald.constituency.recipients import slugify
    from herald.store.db import utcnow

    with db.engine.begin() as conn:
        rid = conn.execute(sa.insert(RecipientRow.__table__).values(
            name=name, slug=slugify(name), kind="network_owner", disabled=False, created_at=utcnow(),
            updated_at=utcnow())).inserted_primary_key[0]
        conn.execute(sa.insert(ContactRow.__table__).values(
            recipient_id=rid, email=email, is_primary=True, created_at=utcnow()))
    return rid


def test_migration_c002_keeps_recipients_and_their_children(db_url):
    """Upgrading from c001 (SQLite copies ``recipients``): the rows, their contacts and reports
    survive (no ON DELETE CASCADE), and kind ``abuse_contact`` is accepted afterwards."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from herald.store import ledger
    from herald.store.db import connect_db, utcnow

    db = connect_db(db_url)  # not checked: still at c001 until upgraded below
    try:
        db.upgrade("c001")
        plain_recipient(db, "Example ISP", "abuse@isp.example")
        run = ledger.start_run(db, "2026-11-02", [])
        ledger.record_report(db, run, "Example ISP", "scan_http", "2026-11-02", 3, "0" * 64, "/r.csv")
        row = {"name": "m@x.example", "slug": "m_x_example", "kind": KIND, "disabled": False,
               "created_at": utcnow(), "updated_at": utcnow()}
        with pytest.raises(IntegrityError):
            with db.engine.begin() as conn:
                conn.execute(sa.insert(RecipientRow.__table__).values(**row))
        db.upgrade("c002")
        assert db.current_revision() == "c002"
        with db.session() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(ContactRow)) == 1
            assert s.scalar(sa.select(sa.func.count()).select_from(ReportRow)) == 1
        with db.engine.begin() as conn:
            conn.execute(sa.insert(RecipientRow.__table__).values(**row))
    finally:
        db.dispose()

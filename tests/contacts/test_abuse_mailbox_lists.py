"""Issue 15: an RPSL ``abuse-mailbox`` that lists several addresses.

The fixture role AR200-RIPE has ``abuse-mailbox: abuse@customer.example.net,
noc@customer.example.net,`` (EXAMPLE-CUSTOMER-A, 192.0.2.0/26, via its organisation).  After a
real ``herald run`` (``tests/contacts/test_abuse_routing.py``'s set-up) and a real SMTP relay
(aiosmtpd): one message with both addresses in ``To``, one ``RCPT TO`` per address, a result per
address, bounces counted and held per address, the admin page per address.
"""

from __future__ import annotations

import mailbox
import re
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

import sqlalchemy as sa

from herald.cli import main
from herald.deliver.bounces import list_bounces, reset_bounces
from herald.deliver.outbox import list_outbox, send_due
from herald.pipeline import run_day
from herald.store.db import OutboxAddressRow, OutboxRow, connect_db, open_db, utcnow
from tests.contacts.test_abuse_delivery import admin_client, smtp
from tests.contacts.test_abuse_routing import DAYS, OVERRIDE_MAIL, setup  # noqa: F401  (the fixture)
from tests.deliver.test_bounces import dsn
from tests.deliver_support import Handler, SmtpServer

A, B = "abuse@customer.example.net", "noc@customer.example.net"
LIST = f"{A}, {B}"
QUOTED = '"abuse desk"@c.example.net'
LATER = datetime(2030, 1, 1, tzinfo=timezone.utc)  # every retry is due by then


def transactions(handler: Handler) -> list[list[str]]:
    """The RCPT addresses of each transaction the relay saw (split at ``MAIL``)."""
    out: list[list[str]] = []
    for c in handler.commands:
        if c.startswith("MAIL"):
            out.append([])
        elif c.startswith("RCPT"):
            out[-1].append(c.removeprefix("RCPT "))
    return out


def received(handler: Handler, message_id: str) -> list[list[str]]:
    """``rcpt_tos`` of each delivery of ``message_id``."""
    return [r.rcpt_tos for r in handler.received if r.message_id == message_id]


def list_entry(summary) -> dict:
    (entry,) = [r for r in summary.reports if r["email"] == LIST]
    return entry


def message_id_of(entry: dict) -> str:
    return message_from_bytes(Path(entry["message"]).read_bytes(), policy=policy.default)["Message-ID"]


def addresses(db, oid: int) -> list[tuple[str, str]]:
    (e,) = list_outbox(db, ids=[oid])
    return [(a.address, a.state) for a in e.addresses]


def test_one_message_every_address_in_to_one_rcpt_each(setup):  # noqa: F811
    root, settings = setup
    with SmtpServer() as srv:
        smtp(settings, srv.port)
        s = run_day(settings, DAYS[0])
        assert s.ok and s.reconciles, s.to_dict()
        entry = list_entry(s)  # one report, so one message, for the whole list
        msg = message_from_bytes(Path(entry["message"]).read_bytes(), policy=policy.default)
        assert [a.addr_spec for a in msg["To"].addresses] == [A, B]
        db = open_db(settings.database_url)
        try:
            oid = entry["outbox_id"]
            assert addresses(db, oid) == [(A, "queued"), (B, "queued")]
            res = send_due(db, settings)
            assert oid in res.sent and not res.addresses_failed and not res.errors
            assert received(srv.handler, msg["Message-ID"]) == [[A, B]]
            rcpts = transactions(srv.handler)
            assert [A, B] in rcpts and not [a for t in rcpts for a in t if "," in a]
            # The override replaces the whole list (192.0.2.1 is in CUSTOMER-A): its mailbox only.
            desk = next(r for r in s.reports if r["email"] == OVERRIDE_MAIL)
            assert received(srv.handler, message_id_of(desk)) == [[OVERRIDE_MAIL]]
            # A quoted local part goes out quoted, as in To.
            quoted = next(r for r in s.reports if r["email"] == QUOTED)
            assert received(srv.handler, message_id_of(quoted)) == [[QUOTED]]
            assert addresses(db, oid) == [(A, "sent"), (B, "sent")]
            (e,) = list_outbox(db, ids=[oid])
            assert e.state == "sent" and e.last_error is None
            assert all(a.smtp_reply.startswith("250") for a in e.addresses)
        finally:
            db.dispose()


def test_a_refused_address_loses_no_other(setup, capsys):  # noqa: F811
    """A 5yz for one address: the other gets the message; the outbox records the message
    ``sent``, the refused address ``failed`` with its reply, and does not send it again."""
    root, settings = setup
    handler = Handler(rcpt_replies={B: "550 5.1.1 no such user"})
    with SmtpServer(handler) as srv:
        smtp(settings, srv.port)
        entry = list_entry(run_day(settings, DAYS[0]))
        oid = entry["outbox_id"]
        db = open_db(settings.database_url)
        try:
            res = send_due(db, settings)
            assert oid in res.sent and res.addresses_failed == [(oid, B)]
            assert received(handler, message_id_of(entry)) == [[A]]
            (e,) = list_outbox(db, ids=[oid])
            assert e.state == "sent" and e.addresses[1].smtp_reply == "550 5.1.1 no such user"
            assert e.last_error == (f"not delivered to every address: {B}: recipient refused "
                                    f"(permanent): 550 5.1.1 no such user")
            assert addresses(db, oid) == [(A, "sent"), (B, "failed")]
            assert send_due(db, settings, now=LATER).sent == []
            assert main(["outbox", "--config", str(root / "herald.toml"), "--state", "sent"]) == 0
            out = capsys.readouterr().out
            assert f"failed  <{B}>: 550 5.1.1 no such user" in out and f"sent    <{A}>" in out
        finally:
            db.dispose()


def test_a_temporary_refusal_is_retried_for_that_address_only(setup):  # noqa: F811
    root, settings = setup
    handler = Handler(rcpt_replies={B: "451 4.3.0 try again later"})
    with SmtpServer(handler) as srv:
        smtp(settings, srv.port)
        entry = list_entry(run_day(settings, DAYS[0]))
        oid, mid = entry["outbox_id"], message_id_of(entry)
        db = open_db(settings.database_url)
        try:
            res = send_due(db, settings)
            assert res.retried == [oid] or oid in res.retried
            assert addresses(db, oid) == [(A, "sent"), (B, "queued")]
            (e,) = list_outbox(db, ids=[oid])
            assert e.state == "queued" and e.last_error.startswith(
                f"attempt 1: {B}: recipient refused (temporary): 451 4.3.0 try again later")
            handler.rcpt_replies.clear()
            assert oid in send_due(db, settings, now=LATER).sent
            assert received(handler, mid) == [[A], [B]]
            assert addresses(db, oid) == [(A, "sent"), (B, "sent")]
        finally:
            db.dispose()


def test_release_and_mark_sent_act_on_the_open_addresses(setup):  # noqa: F811
    """Every address refused: the message fails; ``--release`` queues its failed addresses again.
    No reply to the end of data: held, its addresses still open; ``--mark-sent`` records them."""
    from herald.deliver.outbox import mark_sent, release

    root, settings = setup
    handler = Handler(rcpt_replies={A: "550 5.1.1 gone", B: "550 5.1.1 gone"})
    with SmtpServer(handler) as srv:
        smtp(settings, srv.port)
        s = run_day(settings, DAYS[0])
        oid, mid = list_entry(s)["outbox_id"], message_id_of(list_entry(s))
        db = open_db(settings.database_url)
        try:
            assert oid in send_due(db, settings).failed
            (e,) = list_outbox(db, ids=[oid])
            assert e.state == "failed" and e.last_error == "recipient refused (permanent): 550 5.1.1 gone"
            handler.rcpt_replies.clear()
            release(db, settings, oid, "cli:test", "addresses fixed")
            assert addresses(db, oid) == [(A, "queued"), (B, "queued")]
            assert oid in send_due(db, settings).sent and received(handler, mid) == [[A, B]]
            # Another message of the day, to the quoted mailbox: no answer to its end of data.
            other = next(r for r in s.reports if r["email"] == QUOTED)["outbox_id"]
            with db.session() as ses:  # sent by the first pass: queue it again as if new
                ses.execute(sa.update(OutboxRow).where(OutboxRow.id == other).values(state="queued"))
                ses.execute(sa.update(OutboxAddressRow).where(OutboxAddressRow.outbox_id == other)
                            .values(state="queued"))
            handler.drop_after_data = True
            assert other in send_due(db, settings, now=LATER).held
            assert addresses(db, other) == [(QUOTED, "queued")]
            mark_sent(db, other, "cli:test", "in the relay's log")
            assert addresses(db, other) == [(QUOTED, "sent")]
        finally:
            db.dispose()


def test_a_bouncing_address_is_held_alone(setup, tmp_path):  # noqa: F811
    """DSNs (``herald bounces MAILDIR``) for one address of the list: it is counted on its own and
    left out of the envelope, the other still gets the reports; the message is held only when
    every address bounces; ``--reset`` sends the held copies to that address only."""
    root, settings = setup
    cfg = str(root / "herald.toml")
    maildir = tmp_path / "bounces"
    box = mailbox.Maildir(str(maildir), create=True)
    for n in range(3):
        box.add(dsn([(B, "failed", "5.1.1")], n))
    with SmtpServer() as srv:
        smtp(settings, srv.port)
        first = list_entry(run_day(settings, DAYS[0]))
        assert main(["bounces", "--config", cfg, str(maildir)]) == 0
        db = open_db(settings.database_url)
        try:
            assert {b["address"]: b["count"] for b in list_bounces(db)} == {B: 3}
            res = send_due(db, settings)
            m1 = first["outbox_id"]
            assert res.addresses_held == [(m1, B)] and m1 in res.sent and m1 not in res.held
            assert received(srv.handler, message_id_of(first)) == [[A]]
            assert addresses(db, m1) == [(A, "sent"), (B, "held")]
            (e,) = list_outbox(db, ids=[m1])
            assert f"{B} bounced 3 times (last 5.1.1" in e.addresses[1].smtp_reply
            # Now the other address bounces too: the next day's message is held as a whole.
            for n in range(3):
                box.add(dsn([(A.upper(), "failed", "5.2.1")], 10 + n))
            assert main(["bounces", "--config", cfg, str(maildir)]) == 0
            third = list_entry(run_day(settings, DAYS[2]))  # outside the 2-day window
            m3 = third["outbox_id"]
            res = send_due(db, settings)
            assert res.held == [m3] and sorted(res.addresses_held) == [(m3, A), (m3, B)]
            (e,) = list_outbox(db, ids=[m3])
            assert (e.state, e.hold_reason) == ("held", "bouncing")
            assert f"{A} bounced 3 times" in e.last_error and f"{B} bounced 3 times" in e.last_error
            assert received(srv.handler, message_id_of(third)) == []
            # B fixed: its held copies go to B only; A stays held.
            assert reset_bounces(db, B, "cli:test", "mailbox fixed") == [m1, m3]
            res = send_due(db, settings)
            assert sorted(res.sent) == [m1, m3]
            assert received(srv.handler, message_id_of(first)) == [[A], [B]]
            assert received(srv.handler, message_id_of(third)) == [[B]]
            assert addresses(db, m3) == [(A, "held"), (B, "sent")]
            assert send_due(db, settings, now=LATER).sent == []
        finally:
            db.dispose()


def test_admin_page_shows_the_lists_objects_and_each_address(setup, tmp_path, cheap_argon2):  # noqa: F811
    """``/admin/abuse/`` after a real run: the list's RPSL object, the bounce state of each of its
    addresses; an override may name a list (and replaces the RPSL list as a whole)."""
    from herald.contacts.overrides import list_overrides

    root, settings = setup
    assert run_day(settings, DAYS[0]).ok
    maildir = tmp_path / "bounces"
    box = mailbox.Maildir(str(maildir), create=True)
    for n in range(3):
        box.add(dsn([(B, "failed", "5.1.1")], n))
    box.add(dsn([(A, "failed", "5.1.1")], 9))
    assert main(["bounces", "--config", str(root / "herald.toml"), str(maildir)]) == 0
    db = open_db(settings.database_url)
    try:
        c = admin_client(settings, db)
        html = c.get("/admin/abuse/").text
        m = re.search(rf'<tr class="automatic-recipient[^"]*" data-mailbox="{re.escape(LIST)}">(.*?)</tr>',
                      html, re.S)
        assert m, "no row for the list"
        row = m.group(1)
        assert "inetnum 192.0.2.0 - 192.0.2.63 (EXAMPLE-CUSTOMER-A)" in row
        assert f"{B}: bouncing: 3 (last 5.1.1)" in row and f"{A}: bounced: 1 (last 5.1.1)" in row
        assert "bouncing addresses are left out; the others still receive reports" in row
        # The single-address mailbox of the parent is not named by the list's object.
        single = re.search(r'data-mailbox="abuse@example.net">(.*?)</tr>', html, re.S).group(1)
        assert "EXAMPLE-CUSTOMER-A" not in single and "EXAMPLE-PARENT" in single
        # An override naming a list, from the admin console.
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/admin/abuse/overrides").text).group(1)
        r = c.post("/admin/abuse/overrides", data={
            "csrf_token": token, "network": "192.0.2.16/28", "reason": "desk confirmed",
            "mailbox": "Desk1@Override.example , desk2@override.example"})
        assert r.status_code == 303
        assert list_overrides(db)[-1].mailbox == "Desk1@override.example, desk2@override.example"
    finally:
        db.dispose()
    # The next run sends 192.0.2.20 (two events) to the override's two addresses, not to the list.
    s = run_day(settings, DAYS[2])
    assert s.ok and s.reconciles
    entry = next(r for r in s.reports if r["email"] == "Desk1@override.example, desk2@override.example")
    assert entry["rows"] == 2 and not [r for r in s.reports if r["email"] == LIST]
    msg = message_from_bytes(Path(entry["message"]).read_bytes(), policy=policy.default)
    assert [a.addr_spec for a in msg["To"].addresses] == ["Desk1@override.example", "desk2@override.example"]


def test_migration_c003_gives_earlier_messages_their_addresses(db_url):
    """Rows queued before c003 (a list in ``rcpt_to``) get one address row per address, in the
    message's state; the bounce hold then works on them."""
    from tests.contacts.test_abuse_delivery import plain_recipient

    db = connect_db(db_url)
    try:
        db.upgrade("c002")
        rid = plain_recipient(db, "Example ISP", "abuse@isp.example")
        now = utcnow()
        with db.engine.begin() as conn:
            for i, (state, hold) in enumerate([("queued", None), ("sent", None), ("held", "bouncing"),
                                               ("held", "outcome_unknown")]):
                conn.execute(sa.insert(OutboxRow.__table__).values(
                    message_id=f"<m{i}@h>", recipient_id=rid, state=state, attempts=0,
                    envelope_sender="b@h.example", rcpt_to=f"{A}, {B},", hold_reason=hold,
                    created_at=now, updated_at=now))
        db.upgrade()
        with db.session() as s:
            got = [(o, a, st, h) for o, a, st, h in s.execute(
                sa.select(OutboxAddressRow.outbox_id, OutboxAddressRow.address, OutboxAddressRow.state,
                          OutboxAddressRow.hold_reason).order_by(OutboxAddressRow.id))]
        assert got == [(1, A, "queued", None), (1, B, "queued", None), (2, A, "sent", None),
                       (2, B, "sent", None), (3, A, "held", "bouncing"), (3, B, "held", "bouncing"),
                       (4, A, "queued", None), (4, B, "queued", None)]
        from herald.store.db import migrate

        migrate(db.engine, "downgrade", "c002")  # and back
        with db.engine.connect() as conn:
            assert "outbox_addresses" not in sa.inspect(conn).get_table_names()
    finally:
        db.dispose()



def test_a_long_mailbox_list_is_stored_on_both_databases(db):
    """An RPSL list of twelve addresses (over 320 characters, one RFC 5321 address's width) is
    stored as an automatic recipient's contact and as an override (migration c005); it failed
    the run on PostgreSQL before."""
    from herald.constituency import repository as repo
    from herald.contacts.autorecipients import store_automatic_recipients
    from herald.contacts.overrides import add_override, list_overrides
    from herald.contacts.routing import AbuseContact

    many = ", ".join(f"abuse-desk-{i:02d}@customer-network-operations.example.net" for i in range(12))
    assert len(many) > 320
    r = AbuseContact(name="long list abcdef12", email=many, kind="abuse_contact")
    assert store_automatic_recipients(db, [r]) == [] and r.id is not None
    assert repo.get_recipient(db, r.id).email == many
    o = add_override(db, network="192.0.2.0/24", mailbox=many, reason="all desks", actor="test")
    assert o.mailbox == many and [x.mailbox for x in list_overrides(db)] == [many]

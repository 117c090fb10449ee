"""Issue 15: the re-notification window is a property of the stored recipient.

A recipient that lives only in the metadata database (``herald recipients add``, no
``[[recipients]]`` table) gets its window from the database, and ``herald run`` applies it: an
event reported on day 1 is suppressed on days 2-7 and reported again on day 8; the summary counts
the suppressed pairs and the accounting still reconciles.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import tomli_w

from herald.cli import main
from herald.config import load_settings, settings_from_dict
from herald.constituency.recipients import Recipient, slugify
from herald.pipeline import run_day
from herald.reports.policy import policy_for_run
from herald.route import Router
from herald.store import audit
from herald.store.db import open_db

DB_CERT = "DB CERT"
OWNER = {"name": "Config ISP", "email": "abuse@config-isp.example", "kind": "network_owner",
         "cidrs": ["192.0.2.0/25"]}
#: (ip, port, geo): the first reaches both recipients, the second only the database's CERT,
#: the third nobody.
EVENTS = [("192.0.2.1", 80, "NL"), ("192.0.2.200", 443, "NL"), ("198.51.100.1", 80, "DE")]


def write_input(inbox: Path, day: str) -> None:
    d = inbox / day
    d.mkdir(parents=True, exist_ok=True)
    with (d / "scan_http.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "ip", "protocol", "port", "hostname", "tag", "asn", "geo"])
        for ip, port, geo in EVENTS:
            w.writerow([f"{day} 00:01:00", ip, "tcp", port, "", "http", "", geo])


def rows_for(root: Path, day: str, name: str) -> set[str]:
    """Addresses in ``name``'s reports of ``day``."""
    out = set()
    for p in (root / "reports" / day / slugify(name)).glob("*.csv"):
        with p.open(newline="") as fh:
            out |= {row["ip"] for row in csv.DictReader(fh)}
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_database_only_recipient_window_suppresses_and_reconciles(tmp_path, capsys, workers):
    """In one process and in the stage pool's type jobs (``[run] workers = 2``)."""
    root = tmp_path
    url = f"sqlite:///{root / 'herald.db'}"
    cfg = root / "herald.toml"
    cfg.write_text(tomli_w.dumps({
        "paths": {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"},
        "database": {"url": url}, "run": {"workers": workers}, "recipients": [OWNER]}))
    days = ["2026-11-02", "2026-11-03", "2026-11-09", "2026-11-10"]
    for day in days:
        write_input(root / "inbox", day)
    assert main(["recipients", "add", DB_CERT, "--email", "cert@db.example", "--kind", "national_cert",
                 "--country", "NL", "--verified", "--renotify-days", "7", "--actor", "cli:alice",
                 "--config", str(cfg)]) == 0
    assert main(["recipients", "show", DB_CERT, "--config", str(cfg)]) == 0
    assert "  renotify: 7 days" in capsys.readouterr().out
    settings = load_settings(cfg)

    s1 = run_day(settings, days[0])
    assert s1.ok and s1.reconciles, s1.to_dict()
    assert rows_for(root, days[0], DB_CERT) == {"192.0.2.1", "192.0.2.200"}
    assert s1.rows_renotify_suppressed == 0 and (s1.rows_reported, s1.rows_unrouted) == (2, 1)

    # Day 2: within the 7-day window of the database's recipient (none for the configured one).
    s2 = run_day(settings, days[1])
    assert s2.ok and s2.reconciles, s2.to_dict()
    assert rows_for(root, days[1], DB_CERT) == set()
    assert rows_for(root, days[1], OWNER["name"]) == {"192.0.2.1"}
    assert s2.rows_renotify_suppressed == 2
    # 192.0.2.200 reached nobody else: unrouted now; the counts still add up.
    assert (s2.rows_reported, s2.rows_unrouted) == (1, 2)
    summary = json.loads((root / "data" / "runs" / f"{days[1]}.json").read_text())
    assert summary["rows_renotify_suppressed"] == 2 and summary["reconciles"] is True
    assert summary["rows_in"] == (summary["rows_reported"] + summary["rows_unrouted"]
                                  + summary["rows_quarantined"] + summary["rows_duplicate"]
                                  + summary["rows_failed"])

    # Day 8 = day 1 + 7: reported again.
    s8 = run_day(settings, days[2])
    assert rows_for(root, days[2], DB_CERT) == {"192.0.2.1", "192.0.2.200"}
    assert s8.rows_renotify_suppressed == 0 and s8.reconciles

    # The operator turns the window off: day 9 is reported although day 8 was.
    assert main(["recipients", "set", DB_CERT, "--renotify-days", "0", "--reason", "wants daily",
                 "--actor", "cli:bob", "--config", str(cfg)]) == 0
    s9 = run_day(settings, days[3])
    assert rows_for(root, days[3], DB_CERT) == {"192.0.2.1", "192.0.2.200"}
    assert s9.rows_renotify_suppressed == 0 and s9.reconciles
    db = open_db(url)
    try:
        (entry,) = audit.query(db, action="recipient.update")
        assert (entry.actor, entry.reason, entry.details) == ("cli:bob", "wants daily",
                                                              {"renotify_days": [7, 0]})
    finally:
        db.dispose()


def test_policy_reads_windows_from_the_loaded_recipients(tmp_path):
    """``policy_for_run`` takes each recipient's window from the recipients the run loaded: it
    does not query ``recipients`` (these are not even in the database)."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    settings = settings_from_dict({"paths": {"data": "data"}, "database": {"url": url}}, base=tmp_path)
    db = open_db(url)
    router = Router([Recipient(name="A", email="a@x.example", renotify_days=3),
                     Recipient(name="B", email="b@x.example"),
                     Recipient(name="C", email="c@x.example", renotify_days=0)])
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        policy, warnings = policy_for_run(settings, "2026-11-02", router, db)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
        db.dispose()
    assert not warnings and policy.max_window == 3 and not policy.inert
    assert [policy.window_of(r, "scan_http") for r in router.recipients] == [3, 0, 0]
    # (The inhibitions it lists name their recipient through a join; nothing else reads recipients.)
    assert not [q for q in seen if "renotify_days" in q.lower() or (
        "recipients" in q.lower() and not q.lower().startswith("select inhibitions."))], seen


def test_an_unchanged_configuration_is_imported_again_after_the_upgrade(tmp_path):
    """Before c004 a ``[[recipients]]`` table's window was read from the file by every run and
    never stored; the first run after the upgrade must import the unchanged file again (the
    skip marker includes :data:`herald.constituency.sync.IMPORT_FORMAT`), or the window is lost."""
    import hashlib

    from herald.constituency import repository
    from herald.constituency.sync import sync_config

    url = f"sqlite:///{tmp_path / 'h.db'}"
    settings = settings_from_dict({"paths": {"data": "data"}, "database": {"url": url},
                                   "recipients": [dict(OWNER, renotify_days=4)]}, base=tmp_path)
    db = open_db(url)
    try:
        repository.import_recipients(db, [OWNER])  # stored as a deployment before c004 had it
        marker = settings.paths.data / ".config-sync"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(hashlib.sha256(json.dumps(  # that deployment's marker for this file
            [str(db.engine.url), settings.recipients_spec, settings.operations_spec],
            sort_keys=True, default=str).encode()).hexdigest() + "\n")
        assert sync_config(db, settings)["skipped"] is False
        (r,) = repository.load_recipients(db)
        assert r.renotify_days == 4
        assert sync_config(db, settings)["skipped"] is True
    finally:
        db.dispose()


def test_migration_c004_keeps_recipients_and_checks_the_window(db_url):
    """Upgrading from c003 (SQLite copies ``recipients``): the rows and their contacts survive
    with no window; a negative window is refused by the database; downgrading drops the column."""
    from sqlalchemy.exc import IntegrityError

    from herald.constituency import repository
    from herald.store.db import ContactRow, RecipientRow, connect_db, migrate
    from tests.contacts.test_abuse_delivery import plain_recipient

    db = connect_db(db_url)
    try:
        db.upgrade("c003")
        rid = plain_recipient(db, "Example ISP", "abuse@isp.example")
        db.upgrade("c004")
        assert db.current_revision() == "c004"
        info = repository.get_recipient(db, rid)
        assert (info.email, info.renotify_days) == ("abuse@isp.example", None)
        with pytest.raises(IntegrityError):
            with db.engine.begin() as conn:
                conn.execute(sa.update(RecipientRow.__table__).values(renotify_days=-1))
        repository.set_renotify_days(db, rid, 7, "test")
        migrate(db.engine, "downgrade", "c003")
        with db.engine.connect() as conn:
            assert "renotify_days" not in {c["name"] for c in sa.inspect(conn).get_columns("recipients")}
            assert conn.execute(sa.select(sa.func.count()).select_from(ContactRow.__table__)).scalar() == 1
    finally:
        db.dispose()

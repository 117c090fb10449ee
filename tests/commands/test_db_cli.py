"""The database commands end to end (``herald db|recipients|runs|audit|purge|operations``), on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from herald.cli import main
from herald.store import ledger
from herald.store.db import HEAD_REVISION, open_db

CONFIG = """
[paths]
data = "var/data"
reports = "var/reports"
outbox = "var/outbox"

[database]
url = "{url}"

[[recipients]]
name = "Example ISP"
email = "abuse@example.net"
asns = [64496]
cidrs = ["192.0.2.0/24"]

[[recipients]]
name = "Other ISP"
email = "abuse@other.example"
cidrs = ["192.0.2.128/25"]

[[recipients]]
name = "BKA"
email = "cyber@bka.example"
kind = "law_enforcement"
"""


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch, capsys):
    """Run ``herald ARGS --config herald.toml`` in tmp_path; returns (status, stdout, stderr)."""
    for var in ("HERALD_DATABASE_URL", "HERALD_DATA_DIR", "HERALD_REPORTS_DIR", "HERALD_OUTBOX_DIR"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "herald.toml").write_text(CONFIG.format(url=db_url))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    run.url = db_url
    return run


def test_db_upgrade_and_status(cli):
    if cli.url.startswith("postgresql"):
        status, out, err = cli("recipients", "list")
        assert status == 2 and "herald db upgrade" in err
        status, out, _ = cli("db", "status")
        assert status == 1 and "revision: empty" in out
    status, out, _ = cli("db", "upgrade")
    assert status == 0 and HEAD_REVISION in out
    status, out, _ = cli("db", "upgrade")
    assert status == 0 and f"already at revision {HEAD_REVISION}" in out
    status, out, _ = cli("db", "status")
    assert status == 0 and f"revision: {HEAD_REVISION}" in out


def test_recipients_commands(cli):
    assert cli("db", "upgrade")[0] == 0
    status, out, _ = cli("recipients", "import")
    assert status == 0 and out.startswith("3 added, 0 updated, 0 unchanged; 3 filter(s) verified")
    status, out, _ = cli("recipients", "import")
    assert out.startswith("0 added, 0 updated, 3 unchanged; 0 filter(s) verified")

    status, out, _ = cli("recipients", "conflicts")
    assert status == 1 and "cidr_overlap" in out and "'Example ISP'" in out

    status, out, _ = cli("recipients", "add", "Small ISP", "--email", "noc@small.example",
                         "--cidr", "198.51.100.0/24", "--asn", "AS64511", "--actor", "cli:alice")
    assert status == 0 and "added recipient" in out and out.count("pending") == 2
    status, out, _ = cli("recipients", "list", "--pending")
    pending = [line.split("\t") for line in out.splitlines()]
    assert sorted(p[3] for p in pending) == ["198.51.100.0/24", "64511"]
    cidr_id = next(p[0] for p in pending if p[2] == "cidr")
    asn_id = next(p[0] for p in pending if p[2] == "asn")
    assert cli("recipients", "verify", cidr_id, "--reason", "RIPE checked")[0] == 0
    with pytest.raises(SystemExit) as exc:  # argparse: --reason is required
        cli("recipients", "reject", asn_id)
    assert exc.value.code == 2
    assert cli("recipients", "reject", asn_id, "--reason", "not theirs")[0] == 0
    status, out, _ = cli("recipients", "show", "small_isp")
    assert "198.51.100.0/24" in out and "verified by cli:" in out and "(not theirs)" in out
    assert cli("recipients", "disable", "Small ISP", "--reason", "bounces")[0] == 0
    status, out, _ = cli("recipients", "list")
    line = next(x for x in out.splitlines() if x.endswith("Small ISP"))
    assert "\tdisabled\t" in line and "1 verified, 0 pending" in line
    status, out, _ = cli("recipients", "list", "--enabled")
    assert "Small ISP" not in out

    status, _, err = cli("recipients", "show", "Nobody")
    assert status == 2 and "no recipient" in err
    status, _, err = cli("recipients", "add", "Small ISP", "--cidr", "300.0.0.0/8")
    assert status == 2 and "cidr" in err

    status, out, _ = cli("audit", "--actor", "cli:alice")
    assert [line.split("\t")[3] for line in out.splitlines()] == [
        "recipient.add", "filter.request", "filter.request"]
    status, out, _ = cli("audit", "--action", "filter.", "--json", "--since", "1d")
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    # The import's 3 verifications are in its one summary entry (issue 14), not one entry each.
    assert actions.count("filter.verify") == 1 and actions.count("filter.reject") == 1
    status, out, _ = cli("audit", "--action", "recipients.import", "--json", "--since", "1d")
    imports = [json.loads(line) for line in out.splitlines()]
    assert len(imports) == 1 and imports[0]["details"]["filters"]["verified"] == 3
    status, _, err = cli("audit", "--since", "yesterday")
    assert status == 2 and "--since" in err


def test_recipients_renotify_days(cli):
    """``--renotify-days`` on ``add`` and ``set``: stored, shown by ``list`` and ``show``, audited;
    bad values are refused by the parser."""
    assert cli("db", "upgrade")[0] == 0
    status, out, _ = cli("recipients", "add", "DB CERT", "--email", "cert@db.example",
                         "--kind", "national_cert", "--renotify-days", "7")
    assert status == 0
    line = next(x for x in cli("recipients", "list")[1].splitlines() if x.endswith("DB CERT"))
    assert "\trenotify 7 days\t" in line
    status, out, _ = cli("recipients", "set", "db_cert", "--renotify-days", "1", "--reason", "r")
    assert status == 0 and "re-notification window 1 day" in out
    assert "  renotify: 1 day\n" in cli("recipients", "show", "DB CERT")[1]
    assert cli("recipients", "set", "DB CERT", "--renotify-days", "none")[0] == 0
    assert "  renotify: -\n" in cli("recipients", "show", "DB CERT")[1]
    for bad in ("-1", "7d", "²"):
        with pytest.raises(SystemExit) as exc:
            cli("recipients", "set", "DB CERT", "--renotify-days", bad)
        assert exc.value.code == 2
    status, _, err = cli("recipients", "add", "DB CERT", "--renotify-days", "3")
    assert status == 2 and "needs --email" in err
    status, out, _ = cli("audit", "--action", "recipient.update", "--json")
    assert [json.loads(x)["details"] for x in out.splitlines()] == [
        {"renotify_days": [7, 1]}, {"renotify_days": [1, None]}]


def test_runs_purge_and_operations_commands(cli, tmp_path):
    assert cli("db", "upgrade")[0] == 0
    assert cli("recipients", "import")[0] == 0
    db = open_db(cli.url)
    try:
        run = ledger.start_run(db, date(2026, 11, 29), [("inbox/a.csv", "a" * 64, 3)])
        ledger.record_report(db, run, "Example ISP", "scan_ssh", date(2026, 11, 29), 3, "b" * 64,
                             "var/reports/2026-11-29/x.csv")
        ledger.finish_run(db, run, {"counts": {"rows_in": 3}})
    finally:
        db.dispose()
    status, out, _ = cli("runs", "list")
    assert out.split("\t")[:3] == [str(run), "2026-11-29", "done"]
    status, out, _ = cli("runs", "show", "2026-11-29")
    assert "rows_in=3" in out and "inbox/a.csv" in out and "Example ISP" in out
    status, out, _ = cli("runs", "show", str(run), "--json")
    assert json.loads(out) == {"counts": {"rows_in": 3}}

    old = tmp_path / "var" / "data" / "events" / "date=2026-09-01"
    old.mkdir(parents=True)
    status, out, _ = cli("purge", "--dry-run", "--today", "2026-11-30")
    assert "would remove" in out and "2026-09-01" in out and old.exists()
    status, out, _ = cli("purge", "--today", "2026-11-30", "--keep-days", "40")
    assert status == 0 and "recorded in the audit log" in out and not old.exists()

    assert cli("operations", "add", "Endgame", "--start", "2026-11-01", "--families",
               "emotet,QakBot", "--domains", "c2.example")[0] == 0
    status, _, err = cli("operations", "partner", "Endgame", "Example ISP", "--countries", "DE")
    assert status == 2 and "law_enforcement" in err
    status, out, _ = cli("operations", "partner", "Endgame", "BKA", "--countries", "de,at")
    assert status == 0 and "BKA (AT, DE)" in out
    status, out, _ = cli("operations", "list", "--active", "2026-11-29")
    assert "Endgame" in out and "families=emotet,qakbot" in out
    status, out, _ = cli("operations", "show", "Endgame")
    assert "c2.example" in out and "BKA (jurisdiction AT, DE)" in out

    day = tmp_path / "var" / "data" / "events" / "date=2026-11-29" / "type=event4_sinkhole"
    day.mkdir(parents=True)
    pq.write_table(pa.table({"src_ip": ["192.0.2.1", "192.0.2.2", "198.51.100.3"],
                             "src_asn": [64496, 64496, 64500], "src_geo": ["DE", "DE", "AT"],
                             "infection": ["emotet", "qakbot", "mirai"]}), day / "a.parquet")
    status, out, _ = cli("operations", "stats", "Endgame", "--date", "2026-11-29")
    assert status == 0
    assert "2 victim(s) in 1 event file(s)" in out
    assert [line.split() for line in out.splitlines()[1:]] == [
        ["by", "country:"], ["DE", "2"], ["by", "ASN:"], ["AS64496", "2"]]
    assert "192.0.2" not in out

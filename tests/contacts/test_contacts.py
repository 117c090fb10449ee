"""Abuse contacts from RPSL dumps: parser, attribute values, import, store, lookup, CLI (issue 15).

Fixtures: tests/data/rpsl/ (synthetic, see its LICENSE.md) and the anonymised RIPE role objects in
tests/data/samples/enrichment/ripe_rpsl/ (abuse-mailbox edge cases).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from herald.cli import main
from herald.contacts.importer import ContactImportError, dump_date, import_dumps
from herald.contacts.lookup import lookup_contacts, object_text
from herald.contacts.rpsl import iter_objects, open_dump
from herald.contacts.store import ContactDataError, load_contacts, write_contacts
from herald.contacts.values import parse_asn, parse_mailboxes, parse_range

DATA = Path(__file__).resolve().parents[1] / "data" / "rpsl"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "enrichment" / "ripe_rpsl"
SPLIT = ["ripe.db.inetnum", "ripe.db.inet6num", "ripe.db.aut-num", "ripe.db.organisation", "ripe.db.role"]
#: Fixed mtime for the split files: 2026-10-01 12:00 UTC.
MTIME = dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc).timestamp()
NOW = dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.timezone.utc)


@pytest.fixture
def dumps(tmp_path) -> list[Path]:
    """The fixtures copied with a fixed mtime; ripe.db.inetnum and ripe.db.role gzipped."""
    out = []
    for name in SPLIT + ["apnic.db"]:
        src = DATA / name
        if name in ("ripe.db.inetnum", "ripe.db.role"):
            dst = tmp_path / f"{name}.gz"
            dst.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
        else:
            dst = tmp_path / name
            shutil.copy(src, dst)
        os.utime(dst, (MTIME, MTIME))
        out.append(dst)
    return out


@pytest.fixture
def data_dir(tmp_path, dumps) -> Path:
    d = tmp_path / "data"
    write_contacts(d, import_dumps(dumps), now=NOW)
    return d


# --- parser ---------------------------------------------------------------------------------------

def test_parser_objects_comments_continuations_case():
    text = ("% header\n# more\n\nInetNum:  192.0.2.0 - 192.0.2.255\nDESCR: one\n two\n+\n\tthree # comment\n"
            "remarks: a#b stays\n\n\n\nrole: R\nnic-hdl: x1-ripe\n%inline comment line\nabuse-mailbox: a@example.net\n")
    objs = list(iter_objects(io.StringIO(text)))
    assert [o.object_class for o in objs] == ["inetnum", "role"]
    assert objs[0].key == "192.0.2.0 - 192.0.2.255"
    assert objs[0].first("descr") == "one two three"
    assert objs[0].first("remarks") == "a#b stays"
    assert objs[0].line == 4
    assert objs[1].all("abuse-mailbox") == ["a@example.net"]


def test_parser_keep_and_classes_filter():
    text = "person: P\nnic-hdl: P1\n\nrole: R\nnic-hdl: R1\nremarks: long\n continued\naddress: x\n"
    objs = list(iter_objects(io.StringIO(text), keep={"nic-hdl"}, classes={"role"}))
    assert len(objs) == 1
    assert objs[0].attributes == [("role", "R"), ("nic-hdl", "R1")]


def test_open_dump_reads_gzip_and_plain(tmp_path):
    (tmp_path / "a").write_text("role: A\n")
    (tmp_path / "b.gz").write_bytes(gzip.compress(b"role: B\n"))
    with open_dump(tmp_path / "a") as a, open_dump(tmp_path / "b.gz") as b:
        assert [o.key for o in iter_objects(a)] == ["A"]
        assert [o.key for o in iter_objects(b)] == ["B"]


def test_real_ripe_role_objects_abuse_mailbox_variants():
    """The anonymised RIPE role objects: every abuse-mailbox edge case gives clean addresses."""
    got = {}
    for f in sorted(SAMPLES.glob("certbund_contact__role_*.txt")):
        with open_dump(f) as fh:
            for o in iter_objects(fh):
                got[o.first("nic-hdl")] = [m for v in o.all("abuse-mailbox") for m in parse_mailboxes(v)]
    assert got["NN2241-RIPE"] == ["abuse@novaposhta.ua"]
    assert got["BBSA1-RIPE"] == ["abuse@icloudhosting.com"]
    assert got["DUMY2-RIPE"] == ["abuse@example.com", "abuse@example.net"]
    assert got["DUMY3-RIPE"] == ['"abuse contact"@example.com', "abuse@example.com"]
    assert got["AR20626-RIPE"] == ["abuse@crimeainfo.com"]
    assert got["CC22562-RIPE"] == ["abuse@cxl.zone"]
    assert got["AR19875-RIPE"] == ['"r:[/r/]*4;e\'*&m\'"@fenix.international']


# --- values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,family,expected", [
    ("192.0.2.0 - 192.0.2.255", 4, (0xC0000200, 0xC00002FF)),
    ("192.0.2.0-192.0.2.0", 4, (0xC0000200, 0xC0000200)),
    ("192.0.2.0/25", 4, (0xC0000200, 0xC000027F)),
    ("192.0.2/24", 4, (0xC0000200, 0xC00002FF)),
    ("2001:db8::/32", 6, (0x20010DB8 << 96, (0x20010DB8 << 96) | ((1 << 96) - 1))),
    ("2001:db8:: - 2001:db8::ff", 6, (0x20010DB8 << 96, (0x20010DB8 << 96) | 0xFF)),
])
def test_parse_range(value, family, expected):
    assert parse_range(value, family) == expected


@pytest.mark.parametrize("value,family", [("192.0.2.9 - 192.0.2.1", 4), ("x", 4), ("192.0.2.0/33", 4),
                                          ("2001:db8::/32", 4), ("192.0.2.0/24", 6)])
def test_parse_range_rejects(value, family):
    with pytest.raises(ValueError):
        parse_range(value, family)


def test_parse_asn():
    assert parse_asn("AS64496") == 64496
    assert parse_asn("as4200000000") == 4200000000
    assert parse_asn("AS-SET") is None
    assert parse_asn("AS99999999999") is None


# --- import, store, lookup ------------------------------------------------------------------------

def test_import_counts_dates_and_digests(dumps):
    data = import_dumps(dumps)
    by_name = {s.name: s for s in data.sources}
    assert by_name["ripe.db.inetnum.gz"].objects == {"inetnum": 6}
    assert by_name["ripe.db.role.gz"].objects == {"role": 6}
    assert by_name["apnic.db"].objects == {"inetnum": 4, "organisation": 1, "role": 2}  # person skipped
    assert by_name["apnic.db"].date == "2026-11-20" and by_name["apnic.db"].date_from == "header"
    assert by_name["ripe.db.aut-num"].date == "2026-10-01" and by_name["ripe.db.aut-num"].date_from == "mtime"
    import hashlib

    gz = dumps[0]
    assert by_name[gz.name].sha256 == hashlib.sha256(gz.read_bytes()).hexdigest()
    assert by_name[gz.name].size == gz.stat().st_size
    # 6 + 2 + 3 valid inetnum/inet6num from the split files and APNIC (one broken range skipped).
    assert data.networks.num_rows == 11
    assert data.autnums.column("asn").to_pylist() == [64496, 64500]


def test_import_missing_file(tmp_path):
    with pytest.raises(ContactImportError, match="cannot read dump"):
        import_dumps([tmp_path / "nope.gz"])


def test_dump_date_header_and_mtime():
    assert dump_date(["# Dump generated 2026-11-20 00:00 UTC"], 0) == ("2026-11-20", "header")
    assert dump_date(["% serial 20261121"], 0) == ("2026-11-21", "header")
    assert dump_date(["# Copyright 2025 RIPE NCC"], MTIME) == ("2026-10-01", "mtime")


IPS = ["192.0.2.1", "192.0.2.100", "192.0.2.130", "192.0.2.161", "198.51.100.1", "198.51.100.70",
       "203.0.113.5", "203.0.113.130", "2001:db8::1", "2001:db8:1234::5", "10.0.0.1", "not-an-ip"]


def test_lookup_rules(data_dir):
    data = load_contacts(data_dir)
    asn = [None, None, None, None, 64500, 64500, None, 64496, None, None, 64496, 64496]
    rows = lookup_contacts(data, IPS, asn).to_pylist()
    got = {ip: (r["mailbox"], r["source"], r["role"], r["via"]) for ip, r in zip(IPS, rows)}
    # Most specific inetnum has no abuse-c, its org's abuse-c answers.
    assert got["192.0.2.1"] == ("abuse@customer.example.net, noc@customer.example.net",
                                "inetnum 192.0.2.0 - 192.0.2.63", "AR200-RIPE", "org")
    # Only the parent holds the address.
    assert got["192.0.2.100"] == ("abuse@example.net", "inetnum 192.0.2.0 - 192.0.2.255", "AR100-RIPE", "abuse-c")
    # The most specific object has no answer: inherited from the parent inetnum.
    assert got["192.0.2.130"] == ("abuse@example.net", "inetnum 192.0.2.0 - 192.0.2.255", "AR100-RIPE", "abuse-c")
    assert rows[2]["network"] == "inetnum 192.0.2.128 - 192.0.2.191"
    assert rows[2]["netname"] == "EXAMPLE-CUSTOMER-B"
    # Nested deeper, own abuse-c given in lower case.
    assert got["192.0.2.161"] == ('"abuse desk"@c.example.net', "inetnum 192.0.2.160 - 192.0.2.167",
                                  "AR300-RIPE", "abuse-c")
    # Dangling abuse-c: falls back to the ASN's aut-num.
    assert got["198.51.100.1"] == ("as-abuse@example.net", "aut-num AS64500", "AR400-RIPE", "abuse-c")
    # An inetnum answer wins over the ASN.
    assert got["198.51.100.70"][1] == "inetnum 198.51.100.64 - 198.51.100.127"
    assert got["203.0.113.5"][:2] == ("ap-abuse@example.net", "inetnum 203.0.113.0 - 203.0.113.127")
    assert got["203.0.113.130"] == ("abuse@example.net", "aut-num AS64496", "AR100-RIPE", "org")
    assert got["2001:db8::1"] == ("abuse@example.net", "inet6num 2001:db8::/32", "AR100-RIPE", "org")
    assert got["2001:db8:1234::5"][1] == "inet6num 2001:db8:1234::/48"
    # The IANA-BLK placeholder (0.0.0.0 - 255.255.255.255) never answers nor counts as network.
    assert got["10.0.0.1"] == ("abuse@example.net", "aut-num AS64496", "AR100-RIPE", "org")
    assert rows[10]["network"] is None
    assert got["not-an-ip"] == (None, None, None, None)


def test_lookup_without_asn_and_arrow_input(data_dir):
    data = load_contacts(data_dir)
    t = lookup_contacts(data, pa.array(["198.51.100.1", "10.0.0.1", None], pa.string()))
    assert t.column("mailbox").to_pylist() == [None, None, None]
    assert t.column("network").to_pylist()[0] == "inetnum 198.51.100.0 - 198.51.100.255"
    t = lookup_contacts(data, ["10.0.0.1"], np.array([64500]))
    assert t.column("source").to_pylist() == ["aut-num AS64500"]
    with pytest.raises(ValueError):
        lookup_contacts(data, ["10.0.0.1"], [1, 2])


def test_store_manifest_and_atomic_replace(tmp_path, dumps):
    d = tmp_path / "data"
    m1 = write_contacts(d, import_dumps(dumps), now=NOW)
    assert m1["imported_at"] == "2026-12-01T08:30:00+00:00"
    assert [s["name"] for s in m1["sources"]] == [p.name for p in dumps]
    m2 = write_contacts(d, import_dumps(dumps[-1:]), now=NOW + dt.timedelta(days=1))
    gens = [p.name for p in (d / "contacts").iterdir() if p.is_dir()]
    assert gens == [m2["generation"]]  # the old generation is gone
    assert json.loads((d / "contacts" / "manifest.json").read_text())["generation"] == m2["generation"]
    assert load_contacts(d).networks.num_rows == 3


def test_load_a_named_generation_or_fail(tmp_path, dumps):
    """A Spark executor loads the generation its driver loaded; a newer import fails it."""
    d = tmp_path / "data"
    m1 = write_contacts(d, import_dumps(dumps), now=NOW)
    assert load_contacts(d, m1["generation"]).manifest["generation"] == m1["generation"]
    m2 = write_contacts(d, import_dumps(dumps[-1:]), now=NOW + dt.timedelta(days=1))
    with pytest.raises(ContactDataError, match=f"replaced by {m2['generation']}"):
        load_contacts(d, m1["generation"])
    assert load_contacts(d, m2["generation"]).networks.num_rows == 3


def test_load_without_import(tmp_path):
    with pytest.raises(ContactDataError, match="herald contacts import"):
        load_contacts(tmp_path)


def test_info_age_and_warning(data_dir):
    data = load_contacts(data_dir)
    fresh = data.info(today=dt.date(2026, 12, 1))
    assert fresh["date"] == "2026-10-01" and fresh["age_days"] == 61 and "warning" not in fresh
    old = data.info(today=dt.date(2027, 1, 1))
    assert old["age_days"] == 92 and "92 days old" in old["warning"]


def test_object_text():
    assert object_text(4, 0xC0000200, 0xC00002FF) == "inetnum 192.0.2.0 - 192.0.2.255"
    base = 0x20010DB8 << 96
    assert object_text(6, base, base | ((1 << 96) - 1)) == "inet6num 2001:db8::/32"
    assert object_text(6, base, base | 2) == "inet6num 2001:db8:: - 2001:db8::2"


# --- CLI ------------------------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path) -> Path:
    cfg = tmp_path / "herald.toml"
    cfg.write_text('[paths]\ndata = "var/data"\n')
    return cfg


def test_cli_import_lookup_info(config, dumps, capsys, monkeypatch):
    import herald.commands.contacts as cmd

    assert main(["contacts", "import", "--config", str(config), *map(str, dumps)]) == 0
    out = capsys.readouterr().out
    assert "ripe.db.inetnum.gz: inetnum 6 (dated 2026-10-01 from mtime)" in out
    assert "networks: 11 (7 with an abuse mailbox)" in out
    assert (config.parent / "var" / "data" / "contacts" / "manifest.json").exists()

    assert main(["contacts", "lookup", "--config", str(config), "192.0.2.130", "bad"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("192.0.2.130\tmailbox: abuse@example.net\tsource: inetnum 192.0.2.0 - 192.0.2.255 role AR100-RIPE")
    assert "network: inetnum 192.0.2.128 - 192.0.2.191 (EXAMPLE-CUSTOMER-B)" in out
    assert "'bad' is not an IP address" in err
    assert main(["contacts", "lookup", "--config", str(config), "--asn", "64500", "--json", "198.51.100.1"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["mailbox"] == "as-abuse@example.net" and row["source"] == "aut-num AS64500"

    monkeypatch.setattr(cmd, "today", lambda: dt.date(2026, 12, 1))
    assert main(["contacts", "info", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "date:     2026-10-01 (61 days old)" in out and err == ""
    monkeypatch.setattr(cmd, "today", lambda: dt.date(2027, 3, 1))
    assert main(["contacts", "info", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "herald: warning: abuse-contact data of 2026-10-01 is 151 days old" in err


def test_cli_errors(config, tmp_path, capsys):
    assert main(["contacts", "info", "--config", str(config)]) == 2
    assert "run 'herald contacts import'" in capsys.readouterr().err
    assert main(["contacts", "import", "--config", str(config), str(tmp_path / "missing")]) == 2
    assert "cannot read dump" in capsys.readouterr().err


def test_import_truncated_gzip(tmp_path):
    gz = gzip.compress((DATA / "ripe.db.inetnum").read_bytes() * 50)
    bad = tmp_path / "ripe.db.inetnum.gz"
    bad.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ContactImportError, match="cannot read dump"):
        import_dumps([bad])

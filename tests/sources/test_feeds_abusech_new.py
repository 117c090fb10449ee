"""abuse.ch URLhaus, ThreatFox and SSL Blacklist (issue 16): detection by content, values of the
samples in tests/data/feeds/<feed>/, quarantine of malformed variants, routing by CIDR and domain."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest

from herald.constituency.recipients import Recipient
from herald.errors import InputError
from herald.sources import sslbl, threatfox, urlhaus
from herald.sources.detect import detect_format, parse_any
from tests.feed_support import check_exact as check, routed

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
URLHAUS = DATA / "urlhaus" / "urlhaus_csv_recent.csv"
URLHAUS_FEED = DATA / "urlhaus" / "urlhaus_tld_ch.txt"
THREATFOX = DATA / "threatfox" / "threatfox_recent.csv"
SSLBL = DATA / "sslbl" / "sslipblacklist.csv"
UTC = dt.timezone.utc


def variant(tmp_path: Path, sample: Path, name: str, replace: dict[str, str] | None = None,
            extra: str = "") -> str:
    text = sample.read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    p = tmp_path / name
    p.write_text(text + extra, encoding="utf-8")
    return str(p)


@pytest.mark.parametrize("path,fmt,rtype,rows_in,n", [
    (URLHAUS, "urlhaus", "herald_malware_url", 6, 6),
    (URLHAUS_FEED, "urlhaus", "herald_malware_url", 2, 2),
    (THREATFOX, "threatfox", "herald_threat_ioc", 6, 5),
    (SSLBL, "sslbl", "herald_c2_server", 4, 4),
])
def test_samples_detected_and_counted(path, fmt, rtype, rows_in, n):
    assert detect_format(str(path)) == fmt
    p = check(parse_any(str(path)))
    assert p.report_type.name == rtype
    assert (p.rows_in, p.table.num_rows, len(p.quarantine)) == (rows_in, n, rows_in - n)


def test_detection_needs_the_header_not_the_name(tmp_path):
    # The banner alone, or a URLhaus-looking name, does not make a URLhaus file.
    p = tmp_path / "urlhaus_recent.csv"
    p.write_text("# abuse.ch URLhaus Database Dump\n1.2.3.4\n", encoding="utf-8")
    # (Detection now refuses such a file as "unsupported or ambiguous feed" rather than guess.)
    with pytest.raises(InputError, match="unsupported or ambiguous feed") as exc:
        detect_format(str(p))
    assert "resembles urlhaus" not in str(exc.value) and "; urlhaus (" not in str(exc.value)
    # Feodo Tracker's old commented header has five columns: not SSLBL.
    feodo = "# Firstseen,DstIP,DstPort,LastOnline,Malware\n2021-01-01 00:00:00,192.0.2.1,443,2021-01-02,Dridex\n"
    assert not sslbl.looks_like(feodo)
    assert sslbl.looks_like(SSLBL.read_text())
    assert not urlhaus.looks_like(THREATFOX.read_text()) and not threatfox.looks_like(URLHAUS.read_text())


# --------------------------------------------------------------------------------------------------
# URLhaus

def test_urlhaus_values():
    p = check(urlhaus.parse(str(URLHAUS)))
    rows = p.table.to_pylist()
    first = rows[0]
    assert first["url"] == "http://192.0.2.207:35491/Mozi.m"
    assert (first["ip"], first["port"], first["hostname"]) == ("192.0.2.207", 35491, None)
    assert first["timestamp"] == dt.datetime(2024, 4, 4, 10, 52, 7, tzinfo=UTC)
    assert (first["status"], first["threat"], first["tag"]) == ("online", "malware_download", "32-bit,elf,mips,Mozi")
    assert (first["source_id"], first["source_url"], first["reporter"], first["source"]) == \
        ("2803301", "https://urlhaus.abuse.ch/url/2803301/", "geenensp", "urlhaus")
    # timestamp: the later of dateadded and last_online
    assert rows[1]["timestamp"] == dt.datetime(2024, 4, 4, 10, 51, 10, tzinfo=UTC)
    assert rows[5]["timestamp"] == dt.datetime(2024, 4, 4, 1, 2, 3, tzinfo=UTC)
    # host names: lower case, final dot dropped, no ip; IPv6 literal in brackets -> ip
    assert (rows[2]["hostname"], rows[2]["ip"], rows[2]["last_seen"]) == ("files.shop.example.com", None, None)
    assert rows[5]["hostname"] == "example.org"
    assert (rows[4]["ip"], rows[4]["hostname"]) == ("2001:db8:40::7", None)


def test_urlhaus_bad_rows_are_quarantined(tmp_path):
    path = variant(tmp_path, URLHAUS, "bad.csv", {
        '"2803300","2024-04-04 10:51:06"': '"2803300","2024-02-30 10:51:06"',
        '"2803298","2024-04-04 10:46:05","http://cdn.example.net/bins/x86"':
            '"2803298","2024-04-04 10:46:05","http:///bins/x86"',
    }, extra='"1","2024-04-04 00:00:00","http://192.0.2.1:99999/x","online","","malware_download","","",""\n'
             '"2","2024-04-04 00:00:00","http://192.0.2.1/"\n')
    p = check(urlhaus.parse(path))
    assert (p.rows_in, p.table.num_rows) == (8, 4)
    got = {(q["line"], q["field"]) for q in p.quarantine.rows}
    assert got == {(11, "dateadded"), (13, "url"), (16, "port"), (17, None)}


def test_urlhaus_header_without_url_is_an_error(tmp_path):
    path = variant(tmp_path, URLHAUS, "nourl.csv", {"# id,dateadded,url,": "# id,dateadded,link,"})
    with pytest.raises(InputError, match="'url'"):
        urlhaus.parse(path)


def test_urlhaus_tld_feed_values_and_entry_count(tmp_path):
    p = check(urlhaus.parse(str(URLHAUS_FEED)))
    rows = p.table.to_pylist()
    assert [(r["hostname"], r["ip"], r["asn"], r["geo"], r["status"]) for r in rows] == [
        ("marconuenlist.ch", "62.241.37.242", 29083, "DE", "offline"),
        ("cbd-planet.ch", "83.166.138.63", 29222, "CH", "online")]
    assert rows[0]["timestamp"] == dt.datetime(2019, 2, 13, 0, 34, 42, tzinfo=UTC)
    cut = variant(tmp_path, URLHAUS_FEED, "cut.txt", {"# of entries: 2": "# of entries: 3"})
    with pytest.raises(InputError, match="says 3 entries but has 2"):
        urlhaus.parse(cut)


def test_urlhaus_routing_by_domain_and_cidr():
    p = urlhaus.parse(str(URLHAUS))
    recips = [
        Recipient(name="shop", email="a@x.example", domains=["shop.example.com"]),
        Recipient(name="org", email="b@x.example", domains=["example.org"]),
        Recipient(name="net", email="c@x.example", cidrs=[ipaddress.ip_network("192.0.2.0/24")]),
        Recipient(name="v6", email="d@x.example", cidrs=[ipaddress.ip_network("2001:db8:40::/48")]),
        Recipient(name="other", email="e@x.example", domains=["example.com.evil"]),
    ]
    got = routed(p, recips, "source_id")
    assert got == {"shop": ["2803299"], "org": ["2803296"], "net": ["2803301"], "v6": ["2803297"],
                   "other": []}


# --------------------------------------------------------------------------------------------------
# ThreatFox

def test_threatfox_values():
    p = check(threatfox.parse(str(THREATFOX)))
    rows = {r["source_id"]: r for r in p.table.to_pylist()}
    ipport = rows["1263523"]
    assert (ipport["ioc_type"], ipport["ip"], ipport["port"], ipport["hostname"], ipport["url"]) == \
        ("ip:port", "192.0.2.5", 443, None, None)
    assert (ipport["family"], ipport["malware"], ipport["malware_alias"], ipport["threat"]) == \
        ("Cobalt Strike", "win.cobalt_strike", "Agentemis,BEACON,CobaltStrike,cobeacon", "botnet_cc")
    assert (ipport["confidence"], ipport["tag"], ipport["source_url"], ipport["source"]) == \
        ("100", "c2,CobaltStrike", "https://threatfox.abuse.ch/ioc/1263523/", "threatfox")
    assert ipport["timestamp"] == dt.datetime(2024, 4, 4, 11, 0, 32, tzinfo=UTC)
    dom = rows["1263522"]
    assert (dom["hostname"], dom["ip"]) == ("c2.bad.example.com", None)
    assert dom["timestamp"] == dt.datetime(2024, 4, 4, 11, 1, 0, tzinfo=UTC)  # last_seen_utc is later
    url = rows["1263521"]
    assert (url["url"], url["ip"], url["port"]) == ("http://198.51.100.23:8080/gate.php", "198.51.100.23", 8080)
    assert rows["1263520"]["hostname"] == "login.shop.example.net"
    assert (rows["1263519"]["ip"], rows["1263519"]["port"]) == ("2001:db8:7::10", 8443)
    (q,) = p.quarantine.rows
    assert (q["line"], q["field"], q["value"]) == (15, "ioc_type", "sha256_hash")
    assert "not reportable" in q["reason"]


def test_threatfox_bad_rows_are_quarantined(tmp_path):
    path = variant(tmp_path, THREATFOX, "bad.csv", {'"192.0.2.5:443"': '"192.0.2.5"',
                                                    '"c2.bad.example.com"': '"c2 bad"'},
                   extra='"2024-04-04 00:00:00", "9", "x", "email", "botnet_cc", "", "", "", "", "", "", "", "0", "a"\n'
                         '"2024-04-04 00:00:00", "10", "x"\n')
    p = check(threatfox.parse(path))
    got = {(q["line"], q["field"]) for q in p.quarantine.rows}
    assert got == {(10, "ioc_value"), (11, "ioc_value"), (15, "ioc_type"), (16, "ioc_type"), (17, None)}
    assert p.table.num_rows == 3


def test_threatfox_newer_layout_with_is_compromised_and_none(tmp_path):
    # Exports since 2025: an is_compromised column, "None" for empty values.
    p = tmp_path / "tf.csv"
    p.write_text('# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware","malware_alias",'
                 '"malware_printable","last_seen_utc","confidence_level","is_compromised","reference","tags",'
                 '"anonymous","reporter"\n"2024-04-04 01:39:33", "7", "w.example.dev", "domain", "botnet_cc", '
                 '"php.shin_webshell", "None", "php.shin_webshell", "", "50", "True", "None", "None", "0", "xscon"\n',
                 encoding="utf-8")
    assert detect_format(str(p)) == "threatfox"
    (row,) = check(threatfox.parse(str(p))).table.to_pylist()
    assert (row["hostname"], row["malware_alias"], row["reference"], row["tag"], row["confidence"]) == \
        ("w.example.dev", None, None, None, "50")


def test_threatfox_routing_by_domain_and_cidr():
    p = threatfox.parse(str(THREATFOX))
    recips = [
        Recipient(name="bad", email="a@x.example", domains=["bad.example.com"]),
        Recipient(name="shop", email="b@x.example", domains=["example.net"]),
        Recipient(name="net", email="c@x.example", cidrs=[ipaddress.ip_network("198.51.100.0/24")]),
        Recipient(name="v6", email="d@x.example", cidrs=[ipaddress.ip_network("2001:db8::/32")]),
    ]
    assert routed(p, recips, "source_id") == {"bad": ["1263522"], "shop": ["1263520"], "net": ["1263521"],
                                              "v6": ["1263519"]}


# --------------------------------------------------------------------------------------------------
# SSL Blacklist

def test_sslbl_values():
    p = check(sslbl.parse(str(SSLBL)))
    rows = p.table.to_pylist()
    assert [(r["ip"], r["port"]) for r in rows] == [("192.0.2.61", 443), ("198.51.100.200", 8443),
                                                    ("203.0.113.9", 4443), ("198.51.100.77", 447)]
    assert rows[0]["timestamp"] == dt.datetime(2024, 4, 3, 18, 21, 44, tzinfo=UTC)
    assert {(r["source"], r["family"], r["first_seen"][:4]) for r in rows} == {("sslbl", None, "2024")}


def test_sslbl_bad_rows_and_damaged_download(tmp_path):
    bad = variant(tmp_path, SSLBL, "bad.csv", {"2024-04-02 22:15:09,203.0.113.9": "2024-04-02,203.0.113.9",
                                               "198.51.100.77,447": "198.51.100.777,447"})
    p = check(sslbl.parse(bad))
    assert {(q["line"], q["field"]) for q in p.quarantine.rows} == {(12, "Firstseen"), (13, "ip")}
    cut = variant(tmp_path, SSLBL, "cut.csv", {"2024-04-01 07:30:00,198.51.100.77,447\n": ""})
    with pytest.raises(InputError, match="says 4 entries but has 3"):
        sslbl.parse(cut)


def test_sslbl_routing_by_cidr():
    p = sslbl.parse(str(SSLBL))
    recips = [Recipient(name="net", email="a@x.example", cidrs=[ipaddress.ip_network("198.51.100.0/25")])]
    assert routed(p, recips, "ip") == {"net": ["198.51.100.77"]}

"""PhishTank, OpenPhish, Turris greylist and DShield suspicious domains (issue 16): detection by
content, values of the samples in tests/data/feeds/<feed>/, quarantine, routing by CIDR and domain.
(Conformance with IntelMQ: tests/sources/test_feed_conformance_new.py.)"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest

from herald.constituency.recipients import Recipient
from herald.errors import InputError
from herald.sources import dshield_domains, openphish, phishtank, turris
from herald.sources.detect import detect_format, parse_any
from tests.feed_support import check_exact as check, routed, write

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
PT_JSON = DATA / "phishtank" / "phishtank_online-valid.json"
PT_CSV = DATA / "phishtank" / "phishtank_online-valid.csv"
OP_IMQ = DATA / "openphish" / "openphish_feed.txt"
OP = DATA / "openphish" / "openphish_feed_herald.txt"
TURRIS = DATA / "turris" / "turris_greylist-latest.csv"
TURRIS_2019 = DATA / "turris" / "greylist-latest_2019.csv"
DOMAINS = DATA / "dshield_domains" / "suspiciousdomains_High.txt"
DOMAINS_IMQ = DATA / "dshield_domains" / "suspiciousdomains_High_intelmq.txt"
UTC = dt.timezone.utc
SEEN = "2024-04-04 06:00:00"


@pytest.mark.parametrize("path,fmt,rtype,rows_in,n", [
    (PT_JSON, "phishtank", "herald_phishing_url", 3, 3),
    (PT_CSV, "phishtank", "herald_phishing_url", 3, 3),
    (OP_IMQ, "openphish", "herald_phishing_url", 2, 2),
    (OP, "openphish", "herald_phishing_url", 5, 5),
    (TURRIS, "turris", "herald_greylist", 11, 11),
    (TURRIS_2019, "turris", "herald_greylist", 2, 2),
    (DOMAINS, "dshield_domains", "herald_suspicious_domain", 5, 4),
    (DOMAINS_IMQ, "dshield_domains", "herald_suspicious_domain", 2, 2),
])
def test_samples_detected_and_counted(path, fmt, rtype, rows_in, n):
    if fmt == "openphish":
        # Changed on purpose (merge of issue 16's branches): a bare URL list proves no feed, so it is
        # refused, naming openphish; --format openphish reads it.
        with pytest.raises(InputError, match="unsupported or ambiguous feed.*resembles openphish"):
            detect_format(str(path))
        p = check(parse_any(str(path), fmt, observed_at=SEEN))
        assert p.report_type.name == rtype
        assert (p.rows_in, p.table.num_rows, len(p.quarantine)) == (rows_in, n, rows_in - n)
        return
    assert detect_format(str(path)) == fmt
    p = check(parse_any(str(path), observed_at=SEEN))
    assert p.report_type.name == rtype
    assert (p.rows_in, p.table.num_rows, len(p.quarantine)) == (rows_in, n, rows_in - n)


def test_detection_is_by_content(tmp_path):
    # A URL list with one non-URL line is not OpenPhish; an IP list stays blocklist.de.
    assert not openphish.looks_like("http://a.example/\nnot a url\n")
    assert detect_format(write(tmp_path, "openphish.txt", "192.0.2.1\n192.0.2.2\n")) == "blocklistde"
    # The "Address,Tags" header makes a Turris file, whatever its name.
    assert detect_format(write(tmp_path, "x.csv", "Address,Tags\n192.0.2.1,http\n")) == "turris"
    # DShield's block list (also "dshield" in its banner) is not the domain list.
    assert detect_format(str(Path(__file__).resolve().parents[1] / "data" / "samples" / "feeds" / "dshield_block.txt")) == "dshield"
    assert not dshield_domains.looks_like("# dshield\nSite\nexample.com\n")
    assert phishtank.looks_like_json({"phish_id", "phish_detail_url", "url"})


def test_bare_url_list_is_refused_naming_openphish(tmp_path):
    """Any plain URL list used to be read as OpenPhish; it proves no feed, so detection refuses it
    (naming openphish and asking for --format), under any name, and --format openphish reads it."""
    path = write(tmp_path, "openphish_feed.txt", "http://a.example/x\nhttps://b.example/\n")
    with pytest.raises(InputError) as exc:
        detect_format(path)
    msg = str(exc.value)
    assert "unsupported or ambiguous feed" in msg and "resembles openphish" in msg and "--format" in msg
    with pytest.raises(InputError, match="resembles openphish"):
        parse_any(path)
    p = check(parse_any(path, "openphish", observed_at=SEEN))
    assert p.table.column("url").to_pylist() == ["http://a.example/x", "https://b.example/"]


# --------------------------------------------------------------------------------------------------
# PhishTank

def test_phishtank_json_values():
    rows = check(phishtank.parse(str(PT_JSON))).table.to_pylist()
    r = rows[0]
    assert (r["url"], r["hostname"], r["ip"], r["network"], r["asn"], r["geo"]) == \
        ("https://ardentig.top/", "ardentig.top", "204.152.210.139", "204.152.192.0/19", 8100, "US")
    assert r["timestamp"] == dt.datetime(2022, 11, 16, 14, 8, 44, tzinfo=UTC)
    assert (r["target"], r["status"], r["verified"], r["source_id"], r["source"]) == \
        ("AEON Card", "online", "yes", "7946016", "phishtank")
    assert r["source_url"] == "http://www.phishtank.com/phish_detail.php?phish_id=7946016"


def test_phishtank_csv_values():
    rows = check(phishtank.parse(str(PT_CSV))).table.to_pylist()
    assert (rows[0]["hostname"], rows[0]["ip"]) == ("secure-login.bank.example.com", None)
    assert rows[1]["url"] == "http://192.0.2.44/paypal/webscr.php?cmd=_login&a=1,2"  # quoted comma
    assert (rows[1]["ip"], rows[1]["hostname"]) == ("192.0.2.44", None)
    assert rows[2]["timestamp"] == dt.datetime(2024, 4, 4, 8, 2, 0, tzinfo=UTC)  # +02:00 -> UTC
    assert rows[2]["hostname"] == "mail.example.org"


def test_phishtank_bad_records(tmp_path):
    path = write(tmp_path, "pt.json", '[\n{"phish_id": "1", "url": "https://a.example/", "phish_detail_url": "x",\n'
                 ' "submission_time": "yesterday"},\n"text",\n{"phish_id": "2", "url": "", "submission_time":'
                 ' "2024-01-01T00:00:00+00:00"},\n{"phish_id": "3", "url": "https://b.example/",'
                 ' "submission_time": "2024-01-01T00:00:00+00:00", "details": [{"ip_address": "300.1.1.1"}]}\n]\n')
    p = check(phishtank.parse(path))
    assert {(q["line"], q["field"]) for q in p.quarantine.rows} == \
        {(2, "submission_time"), (4, None), (5, "url"), (6, "ip")}
    assert p.rows_in == 4 and p.table.num_rows == 0
    with pytest.raises(InputError, match="truncated"):
        phishtank.parse(write(tmp_path, "cut.json", '[{"phish_id": "1", "url": "https://a.exa'))
    with pytest.raises(InputError, match="'submission_time'"):
        phishtank.parse(write(tmp_path, "h.csv", "phish_id,url,phish_detail_url\n1,https://a.example/,x\n"))


def test_phishtank_routing_by_address_and_domain():
    j, c = phishtank.parse(str(PT_JSON)), phishtank.parse(str(PT_CSV))
    recips = [Recipient(name="aws", email="a@x.example", cidrs=[ipaddress.ip_network("76.223.96.0/20")]),
              Recipient(name="site", email="b@x.example", domains=["square.site"]),
              Recipient(name="bank", email="c@x.example", domains=["bank.example.com"]),
              Recipient(name="doc", email="d@x.example", cidrs=[ipaddress.ip_network("192.0.2.0/24")])]
    assert routed(j, recips, "source_id") == {"aws": ["7946013"], "site": ["7946015"], "bank": [], "doc": []}
    assert routed(c, recips, "source_id") == {"aws": [], "site": [], "bank": ["8512001"], "doc": ["8512000"]}


# --------------------------------------------------------------------------------------------------
# OpenPhish

def test_openphish_values_and_time():
    p = check(openphish.parse(str(OP), observed_at=SEEN))
    rows = p.table.to_pylist()
    assert {r["timestamp"] for r in rows} == {dt.datetime(2024, 4, 4, 6, 0, tzinfo=UTC)}
    assert [(r["hostname"], r["ip"], r["port"]) for r in rows] == [
        ("login.microsoftonline.account-verify.example.com", None, None), (None, "192.0.2.150", None),
        ("paypal.com.secure.example.net", None, 8443), (None, "2001:db8:99::2", None), ("bank.example.org", None, None)]
    assert {(r["status"], r["source"]) for r in rows} == {("online", "openphish")}


def test_openphish_bad_lines(tmp_path):
    path = write(tmp_path, "feed.txt", "https://a.example/\n# note\nhttp:///nohost\nhttps://b.example:99999/\n")
    p = check(openphish.parse(path, observed_at=SEEN))
    assert {(q["line"], q["field"]) for q in p.quarantine.rows} == {(2, "url"), (3, "url"), (4, "port")}
    assert p.table.column("url").to_pylist() == ["https://a.example/"]


def test_openphish_routing():
    p = openphish.parse(str(OP), observed_at=SEEN)
    recips = [Recipient(name="net", email="a@x.example", domains=["example.net"]),
              Recipient(name="v4", email="b@x.example", cidrs=[ipaddress.ip_network("192.0.2.128/25")]),
              Recipient(name="v6", email="c@x.example", cidrs=[ipaddress.ip_network("2001:db8:99::/48")]),
              Recipient(name="paypal", email="d@x.example", domains=["paypal.com"])]
    assert routed(p, recips, "url") == {
        "net": ["https://paypal.com.secure.example.net:8443/signin?country.x=DE"],
        "v4": ["http://192.0.2.150/wp-admin/css/dhl/index.php"], "v6": ["http://[2001:db8:99::2]/netflix/"],
        "paypal": []}


# --------------------------------------------------------------------------------------------------
# Turris greylist

def test_turris_rows_per_tag_and_unknown_tags(tmp_path):
    path = write(tmp_path, "g.csv", "# terms\nAddress,Tags\n192.0.2.1,\"haas,ftp\"\n192.0.2.300,http\n"
                 "198.51.100.2,\n")
    p = check(turris.parse(path, observed_at=SEEN))
    rows = p.table.to_pylist()
    assert [(r["ip"], r["tag"], r["category"], r["dst_port"]) for r in rows] == [
        ("192.0.2.1", "haas", None, None), ("192.0.2.1", "ftp", "brute-force", 21), ("198.51.100.2", None, None, None)]
    (q,) = p.quarantine.rows
    assert (q["line"], q["field"]) == (4, "ip")
    with pytest.raises(InputError, match="Address,Tags"):
        turris.parse(write(tmp_path, "n.csv", "IP,Tags\n192.0.2.1,http\n"))


def test_turris_2019_layout_keeps_country_and_asn():
    rows = check(turris.parse(str(TURRIS_2019), observed_at=SEEN)).table.to_pylist()
    assert [(r["ip"], r["geo"], r["asn"], r["tag"], r["category"]) for r in rows] == [
        ("1.1.1.2", "AU", 15169, "dns", None), ("1.20.96.142", "TH", 56120, "telnet", "brute-force")]


def test_turris_routing_by_cidr():
    p = turris.parse(str(TURRIS), observed_at=SEEN)
    recips = [Recipient(name="r", email="a@x.example", cidrs=[ipaddress.ip_network("152.32.236.0/24")])]
    assert routed(p, recips, "tag") == {"r": ["ftp", "http", "port_scan", "smtp", "telnet"]}


# --------------------------------------------------------------------------------------------------
# DShield suspicious domains

def test_dshield_domains_values():
    p = check(dshield_domains.parse(str(DOMAINS)))
    assert p.table.column("hostname").to_pylist() == ["malware-drop.example.com", "update.flash-player.example.net",
                                                      "paypal-verify.example.org", "cdn.bad.example.com"]
    assert set(p.table.column("timestamp").to_pylist()) == {dt.datetime(2024, 4, 4, 10, 35, 1, tzinfo=UTC)}
    assert set(p.table.column("tag").to_pylist()) == {"high"} and p.table.column("ip").null_count == 4
    (q,) = p.quarantine.rows
    assert (q["line"], q["field"], q["value"]) == (17, "Site", "exa mple.invalid")


def test_dshield_domains_as_intelmq_2_expected():
    # IntelMQ 3.5.0 has no parser; the events IntelMQ 2.x's dshield.parser_domain test expected for
    # this file (test_parser_domain.py): source.fqdn and time.source of each domain.
    expected = [("example.com", "2015-12-22T04:10:10+00:00"), ("example.org", "2015-12-22T04:10:10+00:00")]
    p = check(dshield_domains.parse(str(DOMAINS_IMQ)))
    got = [(r["hostname"], r["timestamp"].isoformat()) for r in p.table.to_pylist()]
    assert got == expected
    assert p.header == ["Site"] and set(p.table.column("tag").to_pylist()) == {"high"}


def test_dshield_domains_bad_updated_line(tmp_path):
    text = DOMAINS.read_text().replace("Thu Apr  4 10:35:01 2024 UTC", "yesterday")
    with pytest.raises(InputError, match="updated"):
        dshield_domains.parse(write(tmp_path, "s.txt", text))


def test_dshield_domains_routing_by_domain():
    p = dshield_domains.parse(str(DOMAINS))
    recips = [Recipient(name="com", email="a@x.example", domains=["bad.example.com"]),
              Recipient(name="org", email="b@x.example", domains=["example.org"]),
              Recipient(name="flash", email="c@x.example", domains=["player.example.net"])]
    assert routed(p, recips, "hostname") == {"com": ["cdn.bad.example.com"], "org": ["paypal-verify.example.org"],
                                             "flash": []}

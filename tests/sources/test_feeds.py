"""Feed parsers (herald/sources/*) on the real samples of ../tests/data/samples/feeds and on malformed
variants of them written to tmp_path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

from herald.errors import InputError
from herald.schema.registry import default_registry
from herald.sources import abusech, blocklists, ctip, cymru, shodan, spamhaus
from herald.sources.detect import detect_format, parse_any
from tests.feed_support import UTC, check, rows, ts, write

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"


# --------------------------------------------------------------------------------------------------
# Every sample: detected format, report type, counts.

SAMPLES = [
    # file, format, type, rows_in, rows
    ("abusech_feodotracker_ipblocklist.json", "abusech_feodo", "herald_c2_server", 4, 4),
    ("abusech_feodotracker_ipblocklist_2024-04-04.csv", "abusech_feodo", "herald_c2_server", 28, 28),
    ("bambenek_c2-ipmasterlist.txt", "bambenek", "herald_c2_server", 1, 1),
    ("html_table_feodotracker.html", "abusech_feodo", "herald_c2_server", 2, 2),
    ("blocklistde_imap.txt", "blocklistde", "blocklist", 6, 6),
    ("cert_eu_example.csv", "cert_eu", "herald_intelmq_event", 2, 2),
    # 35 lines; two name several destination ports (2 and 10): one event per port, as IntelMQ.
    ("cymru_certname_20190327.txt", "cymru", "herald_cymru_cap", 45, 45),
    ("cymru_infected_20171031.txt", "cymru", "herald_cymru_cap", 9, 9),
    ("dataplane_sshpwauth.txt", "dataplane", "blocklist", 3, 3),
    ("dshield_block.txt", "dshield", "blocklist", 2, 2),
    ("microsoft_ctip.txt", "ctip", "event4_microsoft_sinkhole_http", 5, 5),
    ("microsoft_ctip_azure.txt", "ctip", "event4_microsoft_sinkhole_http", 6, 6),
    ("spamhaus_asndrop.txt", "spamhaus_asndrop", "herald_drop_asn", 2, 2),
    ("spamhaus_cert.txt", "spamhaus_cert", "herald_spamhaus_cert", 19, 19),
    ("spamhaus_drop.txt", "spamhaus_drop", "herald_drop_network", 2, 2),
    ("spamhaus_drop_v4.excerpt.json", "spamhaus_drop", "herald_drop_network", 25, 25),
    ("zoneh_defacement_accepted.csv", "zoneh", "compromised_website", 2, 2),
    ("shodan_tests.json", "shodan", "herald_exposed_service", 7, 7),
]


@pytest.mark.parametrize("name,fmt,rtype,rows_in,n", SAMPLES)
def test_every_sample_parses(feeds, name, fmt, rtype, rows_in, n):
    path = str(feeds / name)
    assert detect_format(path) == fmt
    parsed = check(parse_any(path), address_required=rtype != "herald_drop_asn")
    assert parsed.report_type.name == rtype
    assert (parsed.rows_in, parsed.table.num_rows, len(parsed.quarantine)) == (rows_in, n, rows_in - n)


def test_all_sample_files_are_covered(feeds):
    covered = {s[0] for s in SAMPLES} | {"generic_sample_report.csv", "generic_invalid_sample_report.csv"}
    assert {p.name for p in feeds.iterdir() if p.name != "LICENSE.md"} == covered


def test_unsupported_formats_are_rejected_clearly(tmp_path):
    page = write(tmp_path, "page.html", "<!DOCTYPE html>\n<html><body><table></table></body></html>\n")
    with pytest.raises(InputError, match="HTML pages are not supported"):
        parse_any(page)


def test_herald_types_are_registered():
    reg = default_registry()
    for name in ("herald_c2_server", "herald_drop_network", "herald_drop_asn", "herald_spamhaus_cert",
                 "herald_cymru_cap", "herald_intelmq_event", "herald_exposed_service"):
        t = reg.get(name)
        assert t.origin == "herald" and t.columns[0] == "timestamp" and t.address_column in ("ip", "src_ip")
    assert reg.get("herald_c2_server").default_severity == "high"
    assert reg.get("herald_c2_server").taxonomy == "malicious-code"


# --------------------------------------------------------------------------------------------------
# abuse.ch Feodo Tracker

def test_feodo_csv_values(feeds):
    p = check(abusech.parse(str(feeds / "abusech_feodotracker_ipblocklist_2024-04-04.csv")))
    r = rows(p)
    assert r[0]["ip"] == "192.9.135.73" and r[0]["port"] == 1194 and r[0]["family"] == "Pikabot"
    assert r[0]["status"] == "online" and r[0]["first_seen"] == "2023-05-23 17:51:44"
    assert r[0]["last_seen"] == "2024-04-01" and r[0]["source"] == "feodotracker"
    # timestamp = max(first_seen, last_online 00:00): the last online date here ...
    assert r[0]["timestamp"] == ts(2024, 4, 1)
    # ... and first_seen when it is later than midnight of last_online (last row of the file).
    assert r[-1]["ip"] == "172.233.221.61" and r[-1]["timestamp"] == ts(2024, 4, 4, 7, 3, 3)
    assert sum(1 for x in r if x["status"] == "online") == 4


def test_feodo_json_values(feeds):
    p = check(abusech.parse(str(feeds / "abusech_feodotracker_ipblocklist.json")))
    r = {x["ip"]: x for x in rows(p)}
    assert r["51.178.161.32"]["asn"] == 16276 and r["51.178.161.32"]["geo"] == "FR"
    assert r["51.178.161.32"]["hostname"] == "srv-web.ffconsulting.com"
    # The last entry has no first_seen and a null hostname.
    last = r["1.234.21.73"]
    assert last["first_seen"] is None and last["hostname"] is None
    assert last["timestamp"] == ts(2022, 11, 15) and last["asn"] == 9318
    assert last["as_name"] == "SKB-AS SK Broadband Co Ltd" and last["family"] == "Dridex"


def test_feodo_html_browse_table(feeds, tmp_path):
    path = feeds / "html_table_feodotracker.html"
    r = rows(check(abusech.parse(str(path))))
    assert r[0] == dict(r[0], ip="94.177.255.18", family="Dridex", status="online", asn=199883,
                        as_name="ARUBACLOUDLTD-ASN", geo="GB", timestamp=ts(2021, 5, 10, 14, 56, 5))
    assert r[1] == dict(r[1], ip="203.114.109.124", status="offline", asn=131293, geo="TH")
    # A row with a cell missing is quarantined with the line of its <tr>.
    text = path.read_text(encoding="utf-8").replace('<td><img src="feodotracker_files/th.png" title="TH"> TH</td>', "")
    p = check(abusech.parse(write(tmp_path, "feodo.html", text)))
    assert p.table.num_rows == 1
    (q,) = p.quarantine.rows
    assert (q["line"], q["reason"]) == (96, "expected 6 table cells, found 5")


FEODO_HEADER = '"first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"\n'


def test_feodo_csv_bad_rows_are_quarantined(tmp_path):
    path = write(tmp_path, "feodo.csv", "# banner\n" + FEODO_HEADER +
                 '"2024-02-08 19:20:49","85.239.243.155","5000","offline","2024-03-11","Pikabot"\n'
                 '"2024-02-08 19:50:53","37.60.242.999","9785","offline","2024-03-04","Pikabot"\n'
                 '"2024-02-30 19:50:53","37.60.242.85","9785","offline","2024-03-04","Pikabot"\n'
                 '"2024-02-08 19:50:53","37.60.242.86","port","offline","2024-03-04","Pikabot"\n'
                 '"2024-02-08 19:50:53","37.60.242.87","9785","offline"\n'
                 "# END 5 entries\n")
    p = check(abusech.parse(path))
    assert [x["ip"] for x in rows(p)] == ["85.239.243.155"]
    q = {r["line"]: r for r in p.quarantine.rows}
    assert q[4]["field"] == "ip" and q[4]["reason"] == "not an IP address" and q[4]["value"] == "37.60.242.999"
    assert q[5]["field"] == "first_seen" and "not a time" in q[5]["reason"]
    assert q[6]["field"] == "port" and q[6]["reason"] == "not an integer"
    assert q[7]["reason"] == "expected 6 fields, found 4"
    assert p.rows_in == 5


def test_feodo_csv_footer_count_catches_damaged_download(tmp_path, feeds):
    lines = (feeds / "abusech_feodotracker_ipblocklist_2024-04-04.csv").read_text().splitlines()
    del lines[20]  # one entry lost; the footer still says 28
    with pytest.raises(InputError, match="says 28 entries but has 27") as exc:
        abusech.parse(write(tmp_path, "ipblocklist.csv", "\n".join(lines) + "\n"))
    assert exc.value.line == 37


def test_feodo_csv_missing_ip_column(tmp_path):
    path = write(tmp_path, "feodo.csv", '"first_seen_utc","dst_port","malware"\n"2024-01-01 00:00:00","1","X"\n')
    with pytest.raises(InputError) as exc:
        abusech.parse(path)
    assert exc.value.line == 1 and exc.value.field == "dst_ip" and "missing" in str(exc.value)


def test_feodo_json_truncated(tmp_path, feeds):
    text = (feeds / "abusech_feodotracker_ipblocklist.json").read_text()
    path = write(tmp_path, "feodo.json", text[: text.index('"malware": "Dridex"') + 5])
    with pytest.raises(InputError, match="truncated JSON|invalid JSON") as exc:
        abusech.parse(path)
    assert exc.value.line == 12


def test_feodo_old_header_in_comment(tmp_path):
    # 2019-2021 files: "# Firstseen,DstIP,DstPort,LastOnline,Malware" as a comment line.
    path = write(tmp_path, "ipblocklist.csv", "# abuse.ch Feodo Tracker\n# Firstseen,DstIP,DstPort,LastOnline,Malware\n"
                 "2019-05-27 18:04:08,103.68.169.83,443,2019-06-02,Heodo\n")
    r = rows(check(abusech.parse(path)))
    assert r == [dict(r[0], ip="103.68.169.83", port=443, family="Heodo", timestamp=ts(2019, 6, 2))]


# --------------------------------------------------------------------------------------------------
# Spamhaus

def test_spamhaus_drop_text(feeds):
    p = check(spamhaus.parse(str(feeds / "spamhaus_drop.txt")))
    r = rows(p)
    assert [(x["ip"], x["sblid"]) for x in r] == [("1.4.0.0/17", "SBL256893"), ("2a06:e480::/29", "SBL301771")]
    assert {x["timestamp"] for x in r} == {ts(2015, 9, 14, 4, 39, 22)}  # Last-Modified, GMT
    assert {x["source"] for x in r} == {"spamhaus-drop"}


def test_spamhaus_drop_json(feeds):
    p = check(spamhaus.parse(str(feeds / "spamhaus_drop_v4.excerpt.json")))
    r = rows(p)
    assert r[0] == dict(r[0], ip="1.10.16.0/20", sblid="SBL256894", rir="apnic")
    assert r[-1]["ip"] == "24.170.208.0/20" and r[-1]["rir"] == "arin"
    # The metadata line (timestamp 1744682874) is the event time and is not an event itself.
    assert {x["timestamp"] for x in r} == {ts(2025, 4, 15, 2, 7, 54)}


def test_spamhaus_asndrop(feeds):
    p = check(spamhaus.parse(str(feeds / "spamhaus_asndrop.txt")), address_required=False)
    r = rows(p)
    assert [(x["asn"], x["geo"], x["as_name"]) for x in r] == [
        (260, "AE", "XCONNECT24 - Xconnect24 Inc., US"), (10516, None, "Orb-bit Design Group")]
    assert all(x["ip"] is None for x in r)


def test_spamhaus_drop_bad_lines(tmp_path):
    path = write(tmp_path, "drop.txt", "; Last-Modified: Mon, 14 Sep 2015 04:39:22 GMT\n"
                 "1.4.0.0/17 ; SBL1\n1.4.0.0/33 ; SBL2\nnot a network\n300.1.0.0/16 ; SBL3\n")
    p = check(spamhaus.parse(path))
    assert [x["ip"] for x in rows(p)] == ["1.4.0.0/17"]
    q = {r["line"]: r for r in p.quarantine.rows}
    assert q[3]["field"] == "ip" and q[3]["reason"] == "not an IP address or CIDR network"
    assert q[4]["reason"] == "expected '<CIDR> ; <SBL id>'"
    assert q[5]["value"] == "300.1.0.0/16"


def test_spamhaus_drop_json_broken_line(tmp_path, feeds):
    lines = (feeds / "spamhaus_drop_v4.excerpt.json").read_text().splitlines()
    lines[2] = lines[2][:20]  # truncated record on line 3
    path = write(tmp_path, "drop_v4.json", "\n".join(lines) + "\n")
    p = check(spamhaus.parse(path))
    assert p.table.num_rows == 24 and p.rows_in == 25
    (q,) = p.quarantine.rows
    assert q["line"] == 3 and q["reason"].startswith("invalid JSON")


def test_spamhaus_drop_without_time_uses_observed_at(tmp_path):
    path = write(tmp_path, "drop.txt", "1.4.0.0/17 ; SBL1\n")
    p = check(spamhaus.parse(path, observed_at="2024-05-01 06:00:00"))
    assert rows(p)[0]["timestamp"] == ts(2024, 5, 1, 6)


def test_spamhaus_cert(feeds):
    p = check(spamhaus.parse(str(feeds / "spamhaus_cert.txt")))
    r = rows(p)
    assert r[0] == dict(r[0], src_ip="109.126.64.2", src_asn=12635, src_geo="AT", infection="asprox",
                        timestamp=ts(2015, 8, 31, 8, 16, 10), dst_port=25, src_port=None, protocol="tcp")
    assert r[1] == dict(r[1], domain="dxxt.sinkhole.dk", dst_ip="212.227.20.19", dst_port=80, src_port=1036)
    mirai = r[3]  # "-,?,?,?,?" placeholders are nulls
    # infection is the malware as IntelMQ names it (issue 16); the feed's word stays in botname.
    assert (mirai["botname"], mirai["infection"], mirai["domain"], mirai["dst_ip"], mirai["dst_port"],
            mirai["protocol"]) == ("iotmirai", "mirai", None, None, None, None)
    spam = next(x for x in r if x["botname"] == "l_spamlink")
    assert spam["infection"] == "darkmailer2"
    assert spam["src_port"] == 1660 and spam["dst_ip"] is None
    assert spam["detail"] == "local_port=192.168.46.8:1660:darkmailer2;remote_ip=http://example.com/"


def test_spamhaus_cert_bad_rows(tmp_path):
    path = write(tmp_path, "cert.txt", "; ip, asn, country, lastseen, botname, domain, remote_ip, remote_port, local_port, protocol\n"
                 "109.126.64.2,AS12635,AT,1441008970,asprox,,,25,,tcp\n"
                 "109.126.64.3,AS12635,AT,yesterday,asprox,,,25,,tcp\n"
                 "109.126.64.x,AS12635,AT,1441008970,asprox,,,25,,tcp\n"
                 "109.126.64.4,AS12635,AT\n; EOF\n")
    p = check(spamhaus.parse(path))
    assert [x["src_ip"] for x in rows(p)] == ["109.126.64.2"]
    q = {r["line"]: (r["field"], r["reason"]) for r in p.quarantine.rows}
    assert q == {3: ("lastseen", "not a Unix time (seconds since 1970-01-01 UTC)"),
                 4: ("src_ip", "not an IP address"), 5: (None, "expected 10 fields, found 3")}


# --------------------------------------------------------------------------------------------------
# Team Cymru CAP

def test_cymru_infected_old_layout(feeds):
    p = check(cymru.parse(str(feeds / "cymru_infected_20171031.txt")))
    r = rows(p)
    assert r[0] == dict(r[0], category="bruteforce", ip="172.16.0.21", asn=64496, as_name="Example AS Name",
                        geo=None, tag="ssh", timestamp=ts(2017, 10, 31, 10))
    assert r[3] == dict(r[3], category="proxy", port=8080, tag="HTTP CONNECT")
    assert r[5] == dict(r[5], family="Conficker", port=1337, dst_ip="172.16.0.22")
    assert r[7]["family"] == "Mirai" and r[7]["timestamp"] == ts(2018, 3, 5, 14, 18, 25)
    assert r[8]["asn"] is None  # "0" is no ASN
    assert r[8]["detail"] == "srcport 1337 mwtype malwareexample destaddr 172.16.0.22 Some Botnet"


def test_cymru_certname_new_layout(feeds):
    p = check(cymru.parse(str(feeds / "cymru_certname_20190327.txt")))
    r = rows(p)
    assert {x["geo"] for x in r} == {"AT"} and {x["as_name"] for x in r} == {"Example AS Name"}
    assert r[1] == dict(r[1], family="nivdort", dst_ip="172.16.0.22", dst_port=80, protocol="tcp")
    socks = next(x for x in r if x["detail"] == "socks4-61039;")
    assert socks == dict(socks, category="proxy", tag="socks4", port=61039)
    glued = next(x for x in r if x["detail"] == "family: http_post;hostname: sub.example.comport: 80;")
    assert glued["hostname"] == "sub.example.com" and glued["port"] == 80
    # Changed on purpose (issue 16): a port list gives one event per port, as IntelMQ does.
    many = [x for x in r if x["detail"] and "total_count:19" in x["detail"]]
    assert [x["dst_port"] for x in many] == [17875, 24526, 54449, 9314, 4903, 1568, 20749, 30524, 59316, 60704]
    assert {(x["port"], x["protocol"]) for x in many} == {(40434, "udp")}
    assert sum(1 for x in r if x["category"] == "darknet") == 8 + 1 + 9


def test_cymru_bad_lines(tmp_path):
    path = write(tmp_path, "cymru_certname_20200101.txt", "#category|address|asn|timestamp|optional_information|asninfo\n"
                 "bot|172.16.0.21|64496|2019-03-22 11:18:52|family: Conficker;|Example AS Name, AT\n"
                 "bot|172.16.0.21|64496\n"
                 "bot|172.16.0.21|64496|22/03/2019|family: Conficker;|Example AS Name, AT\n"
                 "bot|172.16.0.|64496|2019-03-22 11:18:52|family: Conficker;|Example AS Name, AT\n"
                 "bot|172.16.0.21|AS64496|2019-03-22 11:18:52|family: Conficker;|Example AS Name, AT\n")
    p = check(cymru.parse(path))
    assert p.table.num_rows == 1 and p.rows_in == 5
    q = {r["line"]: (r["field"], r["reason"]) for r in p.quarantine.rows}
    assert q[3] == (None, "expected 6 '|'-separated fields, found 3")
    assert q[4][0] == "timestamp" and "not a timestamp" in q[4][1]
    assert q[5] == ("ip", "not an IP address")
    assert q[6] == ("asn", "not an integer")


# --------------------------------------------------------------------------------------------------
# Microsoft CTIP

def test_ctip_interflow(feeds):
    p = check(ctip.parse(str(feeds / "microsoft_ctip.txt")))
    r = rows(p)
    assert r[0] == dict(r[0], src_ip="224.0.5.8", src_port=1204, src_asn=65536, dst_ip="198.18.18.18",
                        dst_port=443, dst_hostname="198.18.18.18", infection="B85-R2S", tag="botnet",
                        tlp="GREEN", confidence="20", public_source="microsoft-ctip",
                        timestamp=ts(2018, 2, 6, 9, 37, 2))
    assert r[1]["dst_hostname"] is None and r[1]["infection"] == "Conficker"
    # A destination that is not one address is kept as given (real sample).
    assert r[4]["dst_ip"] == "192.88.99.209, 192.88.99.209" and r[4]["timestamp"] == ts(2019, 3, 17, 9, 5, 50)
    assert p.table.schema.names[-2:] == ["tlp", "confidence"]


def test_ctip_azure(feeds):
    p = check(ctip.parse(str(feeds / "microsoft_ctip_azure.txt")))
    r = rows(p)
    # DateTimeReceivedUtc 132348339284870000 NT ticks = 2020-05-24 22:45:28.487 UTC.
    assert r[0] == dict(r[0], timestamp=ts(2020, 5, 24, 22, 45, 28, 487000), src_ip="224.0.5.8", src_port=65116,
                        src_asn=64496, src_geo="AT", dst_ip="198.18.18.18", dst_port=80,
                        infection="B67-SS-TINBA", family="Avalanche", tlp="AMBER", confidence="20",
                        tag="CTIP-Infected")
    assert r[1]["src_region"] == "Vienna" and r[1]["confidence"] == "100"
    last = r[5]
    assert last == dict(last, src_city="Saarbrücken", http_host="example.com", http_url="/index.php",
                        src_ip="10.0.0.15", src_geo="DE", src_asn=64496)
    assert last["http_agent"].startswith("Mozilla/5.0 (Windows NT 6.3")


def test_ctip_azure_broken_line_and_bad_time(tmp_path, feeds):
    lines = (feeds / "microsoft_ctip_azure.txt").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:200]  # truncated JSON
    lines[2] = lines[2].replace('"DateTimeReceivedUtc":132622667720000000', '"DateTimeReceivedUtc":"soon"')
    lines[3] = lines[3].replace('"SourceIp":"224.0.5.8"', '"SourceIp":"224.0.5"')
    path = write(tmp_path, "ctip_azure.json", "\n".join(lines) + "\n")
    p = check(ctip.parse(path))
    assert p.rows_in == 6 and p.table.num_rows == 3
    q = {r["line"]: (r["field"], r["reason"]) for r in p.quarantine.rows}
    assert q[2][0] is None and q[2][1].startswith("invalid JSON")
    assert q[3] == ("DateTimeReceivedUtc", "not a Windows NT time (100 ns ticks since 1601)")
    assert q[4] == ("src_ip", "not an IP address")


def test_ctip_interflow_truncated(tmp_path, feeds):
    text = (feeds / "microsoft_ctip.txt").read_text(encoding="utf-8")
    path = write(tmp_path, "ctip.json", text[:900])
    with pytest.raises(InputError, match="JSON") as exc:
        ctip.parse(path)
    assert exc.value.line is not None and exc.value.path == path


# --------------------------------------------------------------------------------------------------
# Block lists

def test_blocklistde(feeds):
    p = check(blocklists.parse(str(feeds / "blocklistde_imap.txt"), observed_at="2024-04-04 00:00:00"))
    r = rows(p)
    assert [x["ip"] for x in r] == ["192.0.2.4", "192.0.2.45", "198.51.100.34", "198.51.100.80",
                                    "203.0.113.34", "203.0.113.254"]
    assert {(x["source"], x["reason"], x["timestamp"]) for x in r} == {("blocklist.de", "imap", ts(2024, 4, 4))}


def test_blocklistde_without_time_uses_mtime(tmp_path):
    path = write(tmp_path, "ssh.txt", "192.0.2.4\n192.0.2.400\n\n2001:DB8::1\n")
    import os
    os.utime(path, (1700000000, 1700000000))
    p = check(blocklists.parse(path, variant="blocklistde"))
    assert [x["ip"] for x in rows(p)] == ["192.0.2.4", "2001:db8::1"]  # IPv6 canonical (RFC 5952)
    assert rows(p)[0]["timestamp"] == ts(2023, 11, 14, 22, 13, 20) and rows(p)[0]["reason"] == "ssh"
    (q,) = p.quarantine.rows
    assert (q["line"], q["field"], q["value"]) == (2, "ip", "192.0.2.400")


def test_dshield(feeds):
    r = rows(check(blocklists.parse(str(feeds / "dshield_block.txt"))))
    assert r[0] == dict(r[0], ip="43.229.53.0/24", geo="JP", reason="788 targets scanned (3 days)",
                        source="dshield", timestamp=ts(2015, 12, 15, 15, 33, 38))
    assert r[1]["ip"] == "194.63.140.0/24" and r[1]["geo"] is None


def test_dataplane(feeds):
    r = rows(check(blocklists.parse(str(feeds / "dataplane_sshpwauth.txt"))))
    assert [(x["asn"], x["ip"], x["timestamp"]) for x in r] == [
        (None, "170.239.104.183", ts(2016, 12, 1, 4, 26, 48)),   # ASN "NA"
        (4134, "117.21.224.121", ts(2016, 12, 6, 2, 35, 38)),
        (1, "1.2.3.4", ts(2024, 4, 2, 12)),                       # AS name containing " | "
    ]
    assert {x["reason"] for x in r} == {"sshpwauth"} and {x["source"] for x in r} == {"dataplane.org"}


def test_bambenek(feeds):
    (r,) = rows(check(blocklists.parse(str(feeds / "bambenek_c2-ipmasterlist.txt"))))
    assert r == dict(r, ip="213.247.47.190", family="bebloh", source="bambenek",  # as IntelMQ
                     timestamp=ts(2016, 11, 12, 18, 2),
                     source_url="http://osint.bambenekconsulting.com/manual/bebloh.txt",
                     detail="IP used by shiotob/urlzone/bebloh C&C")


def test_bambenek_bad_rows(tmp_path):
    path = write(tmp_path, "c2-ipmasterlist.txt", "## Bambenek Consulting\n"
                 "213.247.47.190,IP used by x C&C,2016-11-12 18:02,http://a\n"
                 "213.247.47.191,IP used by x C&C,12/11/2016,http://a\n"
                 "213.247.47.192,only two\n")
    p = check(blocklists.parse(path))
    q = {r["line"]: (r["field"], r["reason"][:14]) for r in p.quarantine.rows}
    assert p.table.num_rows == 1 and q == {3: ("timestamp", "not a timestam"), 4: (None, "expected 4 com")}


# --------------------------------------------------------------------------------------------------
# Shodan

def test_shodan(feeds):
    r = rows(check(shodan.parse(str(feeds / "shodan_tests.json"))))
    assert r[0] == dict(r[0], ip="240.15.82.82", port=21, protocol="tcp", hostname="mail.example.at", asn=64496,
                        geo="AT", application="ftp", org="Example Org 1",
                        timestamp=ts(2018, 6, 19, 13, 2, 37, 371273))
    assert r[2] == dict(r[2], port=500, protocol="udp", tag="vpn", region="32", city="Example City")
    ssh = r[6]
    assert ssh == dict(ssh, product="OpenSSH", version="7.4", cpe="cpe:/a:openbsd:openssh:7.4",
                       vulns="CVE-2017-15906;CVE-2018-15919", tag="cloud", asn=14618, geo="US")


def test_shodan_bad_banners(tmp_path, feeds):
    lines = (feeds / "shodan_tests.json").read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace('"ip_str": "240.15.82.82"', '"ip_str": "240.15.82"')
    lines[1] = lines[1][:100]
    path = write(tmp_path, "shodan.json", "\n".join(lines) + "\n")
    p = check(shodan.parse(path))
    assert p.table.num_rows == 5
    q = {r["line"]: (r["field"], r["reason"][:12]) for r in p.quarantine.rows}
    assert q == {1: ("ip", "not an IP ad"), 2: (None, "invalid JSON")}


# --------------------------------------------------------------------------------------------------
# Presets, detection, errors common to all formats

def test_zoneh_and_cert_eu_presets(feeds):
    z = rows(check(parse_any(str(feeds / "zoneh_defacement_accepted.csv"))))
    assert z[0] == dict(z[0], ip="203.0.113.1", url="http://defaced.example.com", system="Win 2008",
                        server="IIS/7.5", tag="defacement", timestamp=ts(2016, 1, 1, 11, 56), attacker="L33tz")
    c = rows(check(parse_any(str(feeds / "cert_eu_example.csv"))))
    assert c[0] == dict(c[0], src_ip="109.125.93.10", src_port=80, src_asn=65536, src_geo="AT",
                        classification_type="malware url", timestamp=ts(2019, 4, 1, 3, 13, 20), tlp="amber")
    assert c[1]["src_hostname"] == "example.com" and c[1]["timestamp"] == ts(2019, 3, 31, 23, 5, 41)


def test_shadowserver_samples_are_detected(data_dir):
    paths = sorted((data_dir / "samples" / "shadowserver").glob("*.csv"))
    assert len(paths) >= 70
    assert {detect_format(str(p)) for p in paths} == {"shadowserver"}
    p = parse_any(str(data_dir / "samples" / "shadowserver" / "blocklist.csv"))
    assert p.report_type.name == "blocklist" and p.table.num_rows == 3


@pytest.mark.parametrize("fmt", ["abusech_feodo", "spamhaus_drop", "spamhaus_cert", "cymru", "ctip",
                                 "blocklistde", "dshield", "dataplane", "bambenek", "intelmq"])
@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file_is_an_error(tmp_path, fmt, content):
    path = write(tmp_path, "feed.txt", content)
    with pytest.raises(InputError, match="file is empty") as exc:
        parse_any(path, fmt)
    assert exc.value.path == path


def test_missing_file_and_unknown_content(tmp_path):
    with pytest.raises(InputError, match="cannot read file"):
        parse_any(str(tmp_path / "nope.txt"))
    path = write(tmp_path, "mystery.dat", "hello world\n")
    with pytest.raises(InputError, match="cannot tell the file's format"):
        detect_format(path)


def test_detection_ignores_misleading_names(tmp_path, feeds):
    # Content decides: a Cymru file named like a DShield list is still Cymru.
    path = tmp_path / "dshield.txt"
    path.write_bytes((feeds / "cymru_infected_20171031.txt").read_bytes())
    assert detect_format(str(path)) == "cymru"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
                          st.text(alphabet="0123456789.:xz", min_size=1, max_size=12)), min_size=1, max_size=30))
def test_counts_reconcile_for_any_list(tmp_path_factory, entries):
    path = tmp_path_factory.mktemp("bl") / "imap.txt"
    path.write_text("\n".join(entries) + "\n")
    p = blocklists.parse(str(path), variant="blocklistde", observed_at="2024-01-01")
    assert p.rows_in == len(entries) == p.table.num_rows + len(p.quarantine)
    import ipaddress
    valid = []
    for e in entries:
        try:
            a = ipaddress.ip_address(e)
            # IPv4-mapped IPv6 is stored as the IPv4 address (issue 12, docs/input.md)
            valid.append(str(getattr(a, "ipv4_mapped", None) or a))
        except ValueError:
            pass
    assert p.table.column("ip").to_pylist() == valid


# --------------------------------------------------------------------------------------------------
# CLI

def test_cli_ingest_writes_parquet(tmp_path, feeds, capsys):
    from herald.cli import main

    out = tmp_path / "out"
    mystery = write(tmp_path, "mystery.dat", "hello\n")
    rc = main(["ingest", str(feeds / "spamhaus_cert.txt"), mystery,
               str(feeds / "microsoft_ctip_azure.txt"), "--out", str(out)])
    assert rc == 1  # the unknown file fails; the others are written
    text = capsys.readouterr()
    assert "format=spamhaus_cert\ttype=herald_spamhaus_cert\trows=19\tquarantined=0" in text.out
    # Message changed on purpose (issue 16): one "unsupported or ambiguous feed" refusal.
    assert "mystery.dat: unsupported or ambiguous feed: cannot tell the file's format" in text.err
    t = pq.read_table(out / "spamhaus_cert.herald_spamhaus_cert.parquet")
    assert t.schema.names == default_registry().get("herald_spamhaus_cert").arrow_schema.names
    assert t.num_rows == 19 and t.column("src_ip")[0].as_py() == "109.126.64.2"
    assert (out / "microsoft_ctip_azure.event4_microsoft_sinkhole_http.parquet").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_ingest_mapping_and_quarantine_file(tmp_path, feeds, capsys):
    from herald.cli import main

    out = tmp_path / "out"
    rc = main(["ingest", str(feeds / "generic_invalid_sample_report.csv"), "--mapping",
               str(DATA / "generic_invalid_sample_report.toml"), "--out", str(out)])
    assert rc == 0
    assert "format=generic_csv\ttype=blocklist\trows=2\tquarantined=2" in capsys.readouterr().out
    q = pq.read_table(out / "generic_invalid_sample_report.quarantine.parquet").to_pylist()
    assert [(r["line"], r["field"]) for r in q] == [(3, "ip"), (4, "hostname")]


_CYMRU_GOOD = st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 4_000_000_000),
                        st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2030, 1, 1)))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(_CYMRU_GOOD, st.text(alphabet="abc xyz0123456789.:;", min_size=1, max_size=30)
                          .filter(str.strip)), min_size=1, max_size=25))
def test_cymru_counts_reconcile_and_order_is_kept(tmp_path_factory, entries):
    lines, expected = [], []
    for e in entries:
        if isinstance(e, tuple):
            ip, asn, when = e
            lines.append(f"bot|{ip}|{asn}|{when:%Y-%m-%d %H:%M:%S}|family: x;|Example AS, AT")
            expected.append((ip, asn or None, when.replace(microsecond=0, tzinfo=UTC)))
        else:
            lines.append(e)  # no '|': never a record
    path = tmp_path_factory.mktemp("cymru") / "cymru_certname_20240101.txt"
    path.write_text("#category|address|asn|timestamp|optional_information|asninfo\n" + "\n".join(lines) + "\n")
    p = cymru.parse(str(path))
    assert p.rows_in == len(entries) == p.table.num_rows + len(p.quarantine)
    assert [(r["ip"], r["asn"], r["timestamp"]) for r in rows(p)] == expected
    assert sorted(q["line"] for q in p.quarantine.rows) == [
        i + 2 for i, e in enumerate(entries) if not isinstance(e, tuple)]

"""Real feed layouts that used to lose data (issue 16), on IntelMQ's own parser test files
(``tests/data/feeds/<feed>/``, AGPL-3.0-or-later, see LICENSE.md there) and small variants."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from herald.errors import InputError
from herald.sources import blocklists, cymru, spamhaus
from herald.sources.detect import parse_any
from herald.sources.dshield import unpad_ipv4

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "feeds"
UTC = dt.timezone.utc


def ts(*a) -> dt.datetime:
    return dt.datetime(*a, tzinfo=UTC)


def reconciles(p) -> list[dict]:
    assert p.rows_in == p.table.num_rows + len(p.quarantine)
    return p.table.to_pylist()


# DataPlane ---------------------------------------------------------------------------------------

def test_dataplane_six_fields_keep_the_row():
    """proto41 lists first and last seen: the time was taken as the address and the row lost."""
    p = parse_any(str(FEEDS / "dataplane" / "proto41.txt"))
    (r,) = reconciles(p)
    assert not p.quarantine.rows
    assert (r["asn"], r["ip"], r["timestamp"], r["first_seen"], r["reason"]) == (
        1, "45.6.192.1", ts(2021, 8, 28, 5, 0, 18), "2021-08-28 05:00:18", "proto41")


def test_dataplane_five_fields_unchanged_and_bad_first_seen(tmp_path):
    r = reconciles(parse_any(str(FEEDS / "dataplane" / "sshpwauth.txt")))
    assert {x["first_seen"] for x in r} == {None}
    assert [x["as_name"] for x in r] == [None, "CHINANET-BACKBONE No.31,Jin-ro", "TEST-AS company | With | pipe"]
    path = tmp_path / "proto41.txt"
    path.write_text("# DataPlane.org\n"
                    "1  |  AS  |  192.0.2.1  |  yesterday  |  2021-08-28 05:00:18  |  proto41\n"
                    "1  |  AS | with | pipe  |  192.0.2.2  |  2021-08-27 05:00:18  |  "
                    "2021-08-28 05:00:18  |  proto41\n")
    p = blocklists.parse(str(path), variant="dataplane")
    (r,) = reconciles(p)
    assert r["ip"] == "192.0.2.2" and r["first_seen"] == "2021-08-27 05:00:18"
    (q,) = p.quarantine.rows
    assert (q["line"], q["field"], q["value"]) == (2, "first_seen", "yesterday")


# DShield -----------------------------------------------------------------------------------------

def test_dshield_as_details_with_zero_padded_octets():
    p = parse_any(str(FEEDS / "dshield" / "asdetailsascii.html"), asn=64496)
    assert p.report_type.name == "blocklist"
    r = reconciles(p)
    assert [(x["ip"], x["timestamp"], x["asn"]) for x in r] == [
        ("109.230.148.140", ts(2015, 12, 22, 11, 9, 7), 64496),
        ("109.230.155.61", ts(2015, 12, 14, 12, 40, 59), 64496)]   # 061 read as 61, as IntelMQ
    assert r[0]["reason"] == "85 reports, 56 targets, last seen 2015-12-22"
    # The REUSE header IntelMQ added to its copy is not data: accounted for, not dropped silently.
    assert [q["line"] for q in p.quarantine.rows] == [1, 2, 4, 5]


def test_dshield_block_zero_padded_start(tmp_path):
    path = tmp_path / "block.txt"
    path.write_text("#    updated: Tue Dec 15 15:33:38 2015 UTC\nStart\tEnd\tNetblock\tAttacks\tName\tCountry\temail\n"
                    "043.229.053.000\t043.229.053.255\t24\t788\tJapan Inet\tJP\tadmin@example.net\n")
    (r,) = reconciles(parse_any(str(path)))
    assert r["ip"] == "43.229.53.0/24"


def test_zero_padding_is_dshield_only(tmp_path):
    assert unpad_ipv4("109.230.155.061") == "109.230.155.61"
    assert unpad_ipv4("1.2.3.256") == "1.2.3.256" and unpad_ipv4("2001:db8::1") == "2001:db8::1"
    path = tmp_path / "imap.txt"
    path.write_text("109.230.155.061\n192.0.2.1\n")
    p = blocklists.parse(str(path), variant="blocklistde", observed_at="2024-01-01")
    assert [x["ip"] for x in reconciles(p)] == ["192.0.2.1"]
    assert p.quarantine.rows[0]["value"] == "109.230.155.061"


# Team Cymru CAP ----------------------------------------------------------------------------------

def test_cymru_ports_conficker_and_port_lists():
    p = cymru.parse(str(FEEDS / "cymru" / "certname_20190327.txt"))
    r = reconciles(p)
    scanned = [x for x in r if x["detail"] == "ports_scanned: 55756;protocol: 17;"]
    assert [(x["dst_port"], x["protocol"]) for x in scanned] == [(55756, "udp")]
    (conf,) = [x for x in r if x["category"] == "conficker"]
    assert conf["family"] == "conficker" and conf["port"] == 1997 and conf["dst_ip"] == "172.16.0.22"
    two = [x for x in r if x["detail"] == "darknet_port: 23, 2323;protocol: 182;"]
    assert [x["dst_port"] for x in two] == [23, 2323]   # one event per port, as IntelMQ


# Spamhaus ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("botname,ctype,ident,app,infection", [
    ("asprox", "infected-system", None, None, "asprox"),
    ("openrelay", "vulnerable-system", "openrelay", "smtp", None),
    ("sshauth", "brute-force", "ssh", "ssh", None),
    ("wpscanner", "scanner", "wordpress-vulnerabilities", "http", None),
    ("iotscan", "scanner", "telnet", "telnet", None),        # remote port 23
    ("iotmirai", "infected-system", "mirai", None, "mirai"),
    ("auto", "infected-system", None, None, "s_other"),
    ("l_spamlink", "spam", "spamlink", None, "darkmailer2"),
    ("misc", "spam", "spam", "smtp", None),                 # remote port 25
])
def test_spamhaus_cert_classified_by_infection(botname, ctype, ident, app, infection):
    r = reconciles(spamhaus.parse(str(FEEDS / "spamhaus" / "cert.txt")))
    row = next(x for x in r if x["botname"] == botname)
    assert (row["classification_type"], row["classification_identifier"], row["application"],
            row["infection"]) == (ctype, ident, app, infection)
    assert row["taxonomy"] == {"infected-system": "malicious-code", "vulnerable-system": "vulnerable",
                               "brute-force": "intrusion-attempts", "scanner": "information-gathering",
                               "spam": "abusive-content"}[ctype]


def test_edrop_network_loses_host_bits(tmp_path):
    path = tmp_path / "edrop.txt"
    path.write_text("; Spamhaus EDROP List\n; Last-Modified: Mon, 14 Sep 2015 04:39:22 GMT\n"
                    "1.1.1.1/24 ; SBL1\n2001:DB8::1/32 ; SBL2\n5.6.7.0/24 ; SBL3\n")
    p = parse_any(str(path))
    assert [x["ip"] for x in reconciles(p)] == ["1.1.1.0/24", "2001:db8::/32", "5.6.7.0/24"]
    assert {x["source"] for x in p.table.to_pylist()} == {"spamhaus-edrop"}


# Bambenek ----------------------------------------------------------------------------------------

def test_bambenek_family_from_manual_page(tmp_path):
    (r,) = reconciles(parse_any(str(FEEDS / "bambenek" / "c2-ipmasterlist.txt")))
    assert r["family"] == "bebloh" and r["detail"] == "IP used by shiotob/urlzone/bebloh C&C"
    path = tmp_path / "c2-ipmasterlist.txt"
    path.write_text("## Bambenek Consulting\n192.0.2.1,IP used by cryptolocker C&C,2016-11-12 18:02,"
                    "http://osint.bambenekconsulting.com/manual/cl.txt\n")
    (r,) = reconciles(parse_any(str(path)))
    assert r["family"] == "cryptolocker"   # IntelMQ's MALWARE_NAME_MAP


def test_forcing_a_domain_list_as_bambenek_quarantines_with_the_reason():
    p = blocklists.parse(str(FEEDS / "bambenek" / "c2-dommasterlist.txt"), variant="bambenek")
    assert p.table.num_rows == 0 and p.quarantine.rows
    assert {q["field"] for q in p.quarantine.rows} == {"ip"}


def test_unknown_variant_is_an_error(tmp_path):
    with pytest.raises(InputError, match="not a known block list"):
        blocklists.parse(str(FEEDS / "abusech" / "zeusips.txt"))


def test_cymru_rows_classified_by_category_as_intelmq():
    r = reconciles(cymru.parse(str(FEEDS / "cymru" / "certname_20190327.txt")))

    def cls(detail, category):
        x = next(x for x in r if x["detail"] == detail and x["category"] == category)
        return x["taxonomy"], x["classification_type"], x["classification_identifier"], x["application"]

    assert cls("ssh;", "bruteforce") == ("intrusion-attempts", "brute-force", "ssh", "ssh")
    assert cls("ports_scanned: 55756;protocol: 17;", "darknet") == ("information-gathering", "scanner", "darknet", None)
    assert cls(None, "openresolvers") == ("vulnerable", "vulnerable-system", "dns-open-resolver", "dns")
    assert cls("family: nivdort;dest_addr: 172.16.0.22; dest_port: 80;protocol: 6;", "bot") == (
        "malicious-code", "infected-system", "nivdort", None)
    assert cls("socks4-61039;", "proxy") == ("other", "proxy", "openproxy", "socks4")
    old = reconciles(cymru.parse(str(FEEDS / "cymru" / "infected_20171031.txt")))
    assert {x["classification_type"] for x in old if x["category"] == "bots"} == {"infected-system"}


def test_dshield_block_keeps_network_name_and_contact():
    r = reconciles(parse_any(str(FEEDS / "dshield" / "block.txt")))
    assert [(x["network_name"], x["abuse_contact"]) for x in r] == [("Japan Inet", "admin@v6nic.net"), (None, None)]


def test_spamhaus_cert_c2_host_name_and_spam_url():
    r = reconciles(spamhaus.parse(str(FEEDS / "spamhaus" / "cert.txt")))
    named = [(x["botname"], x["dst_hostname"], x["src_url"]) for x in r if x["dst_hostname"] or x["src_url"]]
    # An address (216.66.15.109) or "ip:port" in domain is no host name; IntelMQ agrees.
    assert named == [("patcher", "dxxt.sinkhole.dk", None), ("l_spamlink", None, "http://example.com/")]

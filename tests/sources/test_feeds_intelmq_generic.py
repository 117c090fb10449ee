"""Herald's readers of IntelMQ events and of generic CSV files with a mapping (moved out of
``tests/test_feeds.py``, which was over 600 lines; the tests are unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herald.errors import ConfigError, InputError
from herald.sources import abusech, generic_csv, intelmq_json
from herald.sources.detect import detect_format, parse_any
from tests.feed_support import check, rows, ts, write
from herald.sources.shadowserver_csv import read_file

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"


# --------------------------------------------------------------------------------------------------
# IntelMQ events

def test_intelmq_real_output_back_to_its_type(data_dir):
    """IntelMQ 3.5.0's own output for the blocklist sample comes back equal to Herald's CSV reading."""
    events = data_dir / "conformance" / "intelmq" / "blocklist.intelmq.jsonl"
    p = check(intelmq_json.parse(str(events), report_type="blocklist"))
    s = read_file(data_dir / "samples" / "shadowserver" / "blocklist.csv")
    for col in ("timestamp", "ip", "hostname", "source", "reason", "asn", "geo", "region", "city", "naics"):
        assert p.table.column(col).to_pylist() == s.table.column(col).to_pylist(), col


def test_intelmq_default_type_and_invalid_address(data_dir):
    # feed.name is "x" in the conformance files: no type matches, so the generic type is used.
    path = data_dir / "conformance" / "intelmq" / "event4_honeypot_ddos_amp.intelmq.jsonl"
    p = check(intelmq_json.parse(str(path)))
    assert p.report_type.name == "herald_intelmq_event"
    assert p.rows_in == 5 and p.table.num_rows == 4
    (q,) = p.quarantine.rows
    # IntelMQ itself moved the invalid address to extra.src_ip; without source.ip the event is quarantined.
    assert (q["line"], q["field"], q["reason"]) == (5, "src_ip", "missing IP address")
    r = rows(p)[0]
    assert r["taxonomy"] == "availability" and r["classification_type"] == "ddos" and r["feed_name"] == "x"


def test_intelmq_feed_name_picks_type_and_roundtrip(tmp_path, feeds):
    from herald.schema.intelmq import to_intelmq

    c2 = abusech.parse(str(feeds / "abusech_feodotracker_ipblocklist.json"))
    path = tmp_path / "c2.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in to_intelmq(c2.table, c2.report_type)))
    p = check(intelmq_json.parse(str(path)))
    assert p.report_type.name == "herald_c2_server"  # feed.name "Botnet-C2-Server" is its title
    for col in ("timestamp", "ip", "port", "asn", "as_name", "geo", "hostname", "first_seen", "status"):
        assert p.table.column(col).to_pylist() == c2.table.column(col).to_pylist(), col
    # IntelMQ's malware.name is a lower-case field (harmonization LowercaseString).
    assert p.table.column("family").to_pylist() == ["dridex"] * 4


def test_intelmq_time_offsets_and_bad_values(tmp_path):
    events = [
        {"time.source": "2024-01-01T12:00:00+02:00", "source.ip": "192.0.2.1", "feed.name": "A"},
        {"time.observation": "2024-01-01T10:00:00+00:00", "source.network": "192.0.2.0/24", "feed.name": "B"},
        {"time.source": "yesterday", "source.ip": "192.0.2.2"},
        {"time.source": "2024-01-01T12:00:00+00:00", "source.ip": "192.0.2.3", "source.port": "http"},
    ]
    path = write(tmp_path, "events.jsonl", "\n".join(json.dumps(e) for e in events) + "\n{\"time.source\": \n")
    p = check(intelmq_json.parse(path))
    assert p.report_type.name == "herald_intelmq_event"
    assert [(x["src_ip"], x["timestamp"]) for x in rows(p)] == [
        ("192.0.2.1", ts(2024, 1, 1, 10)), ("192.0.2.0/24", ts(2024, 1, 1, 10))]
    q = {r["line"]: (r["field"], r["reason"][:12]) for r in p.quarantine.rows}
    assert q == {3: ("time.source", "not an ISO 8"), 4: ("src_port", "not an integ"), 5: (None, "invalid JSON")}


# --------------------------------------------------------------------------------------------------
# Generic CSV with a mapping

def test_generic_sample(feeds):
    p = check(generic_csv.parse(str(feeds / "generic_sample_report.csv"),
                                mapping=DATA / "generic_sample_report.toml"))
    assert p.report_type.name == "malware_url"
    r = rows(p)
    assert [(x["ip"], x["timestamp"]) for x in r] == [("198.105.221.5", ts(2015, 12, 14, 4, 19)),
                                                      ("198.105.221.161", ts(2016, 12, 14, 4, 19))]
    assert r[0] == dict(r[0], hostname="mail5.bulls.unisonplatform.com", tag="Testing",
                        url="www.cennoworld.com/Payment_Confirmation/Payment_Confirmation.zip",
                        description="Really bad actor site comment", comment="just another comment",
                        source="generic-sample")
    assert p.table.schema.names[-2:] == ["description", "comment"]


def test_generic_invalid_sample_is_quarantined(feeds):
    p = check(generic_csv.parse(str(feeds / "generic_invalid_sample_report.csv"),
                                mapping=DATA / "generic_invalid_sample_report.toml"))
    # +0200 in the file: 09:49:41 local is 07:49:41 UTC.
    assert [(x["ip"], x["hostname"], x["timestamp"]) for x in rows(p)] == [
        ("127.0.0.1", None, ts(2018, 8, 1, 7, 49, 41)), ("127.0.0.1", "example.com", ts(2018, 8, 1, 7, 49, 41))]
    q = sorted((r["line"], r["field"], r["reason"], r["value"]) for r in p.quarantine.rows)
    assert q == [(3, "ip", "missing IP address", ""), (4, "hostname", "not a DNS host name", ".")]


def test_generic_header_mode_and_errors(tmp_path):
    path = write(tmp_path, "partner.csv", "When;Addr;Note\n2024-01-02 03:04:05;192.0.2.1;x\n"
                 "2024-01-02;192.0.2.2;y\n2024-01-02 03:04:05;192.0.2.3\n")
    mapping = {"report_type": "blocklist", "header": True, "delimiter": ";", "time_format": "%Y-%m-%d %H:%M:%S",
               "timezone": "Europe/Vienna", "columns": {"When": "timestamp", "Addr": "ip", "Note": "reason"}}
    p = check(generic_csv.parse(path, mapping=mapping))
    assert [(x["ip"], x["timestamp"], x["reason"]) for x in rows(p)] == [("192.0.2.1", ts(2024, 1, 2, 2, 4, 5), "x")]
    q = {r["line"]: (r["field"], r["reason"]) for r in p.quarantine.rows}
    assert q == {3: ("timestamp", "not a time in the format '%Y-%m-%d %H:%M:%S'"),
                 4: (None, "expected 3 fields, found 2")}
    with pytest.raises(InputError) as exc:
        generic_csv.parse(path, mapping=dict(mapping, columns={"When": "timestamp", "IP": "ip"}))
    assert (exc.value.line, exc.value.field) == (1, "IP")


@pytest.mark.parametrize("bad,message", [
    ({"columns": ["timestamp", "ip", "nosuchcolumn"]}, "has no column 'nosuchcolumn'"),
    ({"columns": ["ip", "reason"]}, "no column is mapped to 'timestamp'"),
    ({"report_type": None}, "'report_type' is required"),
    ({"delimiter": ";;"}, "one character"),
    ({"colums": []}, "unknown mapping keys: colums"),
])
def test_generic_mapping_errors(tmp_path, bad, message):
    path = write(tmp_path, "x.csv", "2024-01-01 00:00:00,192.0.2.1,r\n")
    mapping = {"report_type": "blocklist", "columns": ["timestamp", "ip", "reason"], **bad}
    with pytest.raises(ConfigError, match=message):
        generic_csv.parse(path, mapping={k: v for k, v in mapping.items() if v is not None})


def test_generic_mapping_beside_file(tmp_path):
    write(tmp_path, "feed.toml", 'report_type = "blocklist"\ncolumns = ["ip", "timestamp"]\ntime_format = "epoch"\n')
    path = write(tmp_path, "feed.csv", "192.0.2.9,1700000000\n")
    assert detect_format(path) == "generic_csv"
    assert rows(check(parse_any(path)))[0]["timestamp"] == ts(2023, 11, 14, 22, 13, 20)

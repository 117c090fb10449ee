"""Conformance of ``herald parse --format intelmq`` with IntelMQ 3.5.0's Shadowserver parser.

For every sample ``tests/data/samples/shadowserver/X.csv`` the export is compared with
``tests/data/conformance/intelmq/X.intelmq.jsonl`` (IntelMQ's own output), following
``tests/data/conformance/README.md``:

- same events, same order, same keys, same values;
- ``feed.name``, ``feed.provider``, ``feed.accuracy``, ``feed.code``, ``feed.url``,
  ``time.observation`` may differ or be absent; ``raw`` may be present;
- a number may stand for a string holding the same number only where IntelMQ writes a string.

Plus one allowance of Herald's own, documented in ``docs/intelmq.md``: where a
``convert_date_utc`` column is empty, IntelMQ writes midnight of the day it ran (an artefact of
dateutil's fuzzy parsing of ``"+00:00"``); Herald writes nothing.  The test checks that this is
exactly what happened: the CSV value is empty, IntelMQ's value is a midnight, Herald has no key.

``X.rejected-lines.txt``: IntelMQ rejected rows for a missing required column; Herald accepts
them (the column is optional in Herald) and the test checks every row comes out, without that
field.  ``X.error.txt``: IntelMQ refused the file; Herald must fail with a clear error and still
print the other files of the same call.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA
from herald.cli import main
from herald.schema.registry import default_registry

SAMPLES_DIR = DATA / "samples" / "shadowserver"
CONFORMANCE_DIR = DATA / "conformance" / "intelmq"
#: Every sample, found at collection time; an empty list fails test_samples_are_present.
SAMPLES = sorted(p.name[: -len(".csv")] for p in SAMPLES_DIR.glob("*.csv")) if SAMPLES_DIR.is_dir() else []

#: Keys that may differ or be absent (conformance/README.md).
MAY_DIFFER = frozenset({"feed.name", "feed.provider", "feed.accuracy", "feed.code", "feed.url",
                        "time.observation"})
_MIDNIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}T00:00:00\+00:00$")


def _run(capsys, *paths: Path) -> tuple[int, list[dict[str, Any]], str]:
    """Run ``herald parse PATHS --format intelmq``; return (exit status, events, stderr)."""
    status = main(["parse", *map(str, paths), "--format", "intelmq"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    return status, events, err


def _csv_rows(name: str) -> list[dict[str, str]]:
    with open(SAMPLES_DIR / f"{name}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _same_value(got: Any, expected: Any) -> bool:
    """Equal and of the same JSON type; a number may stand for a numeric string of IntelMQ's."""
    if isinstance(expected, str) and isinstance(got, (int, float)) and not isinstance(got, bool):
        try:
            return float(expected) == float(got)
        except ValueError:
            return False
    if type(got) is not type(expected):
        return False
    return got == expected


def _date_utc_keys(name: str) -> dict[str, str]:
    """``IntelMQ key -> column`` of the type's ``convert_date_utc`` fields (intelmq.json)."""
    rtype = default_registry().get(name)
    out = {}
    for item in (rtype.intelmq or {}).get("optional_fields", []):
        if len(item) > 2 and item[2] == "convert_date_utc":
            out["extra." + item[1] if item[0] == "extra." else item[0]] = item[1]
    return out


def _compare(name: str, got_events: list[dict], expected_events: list[dict]) -> None:
    rows = _csv_rows(name)
    date_utc = _date_utc_keys(name)
    assert len(got_events) == len(expected_events), (
        f"{name}: Herald gave {len(got_events)} events, IntelMQ {len(expected_events)}")
    for i, (got, exp) in enumerate(zip(got_events, expected_events)):
        got = {k: v for k, v in got.items() if k not in MAY_DIFFER}
        exp = {k: v for k, v in exp.items() if k not in MAY_DIFFER}
        if "raw" in got:
            # raw may be present: base64 of the CSV line, as IntelMQ writes it.
            base64.b64decode(got.pop("raw"), validate=True)
        for key, col in date_utc.items():
            if key in exp and rows[i].get(col, "") == "":
                assert _MIDNIGHT.match(exp[key]), f"{name} event {i}: {key} {exp[key]!r}"
                assert key not in got, f"{name} event {i}: Herald invented {key}={got[key]!r}"
                del exp[key]
        assert sorted(got) == sorted(exp), (
            f"{name} event {i}: keys only in Herald {sorted(set(got) - set(exp))}, "
            f"only in IntelMQ {sorted(set(exp) - set(got))}")
        bad = {k: (got[k], exp[k]) for k in exp if not _same_value(got[k], exp[k])}
        assert not bad, f"{name} event {i}: (Herald, IntelMQ) differ: {bad}"


def test_samples_are_present(data_dir):
    """The parameter list below is built from the folder: make sure it is the full set."""
    assert SAMPLES_DIR == data_dir / "samples" / "shadowserver"
    assert len(SAMPLES) == 70, SAMPLES
    for name in SAMPLES:
        kinds = [p for p in (CONFORMANCE_DIR / f"{name}.intelmq.jsonl", CONFORMANCE_DIR / f"{name}.error.txt")
                 if p.exists()]
        assert kinds, f"no conformance data for sample {name}"


@pytest.mark.parametrize("name", SAMPLES)
def test_sample(name, data_dir, capsys):
    """``herald parse X.csv --format intelmq`` gives IntelMQ's events (README rules)."""
    path = data_dir / "samples" / "shadowserver" / f"{name}.csv"
    error_file = CONFORMANCE_DIR / f"{name}.error.txt"
    rejected_file = CONFORMANCE_DIR / f"{name}.rejected-lines.txt"
    status, events, err = _run(capsys, path)

    if error_file.exists():
        # IntelMQ refused the file (retired report type).  Herald: a clear error naming the file
        # and the type, a non-zero exit status, no events.
        assert "Could not get a config for" in error_file.read_text()
        assert status != 0
        assert events == []
        assert str(path) in err
        assert f"unknown report type {name!r}" in err
        return

    assert status == 0, err
    assert "quarantined" not in err, err
    expected = [json.loads(line) for line in
                (CONFORMANCE_DIR / f"{name}.intelmq.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]

    if rejected_file.exists():
        # IntelMQ rejected these rows: required column 'port' is missing from this older file.
        # Herald's rule: port is optional, the rows are accepted without source.port.
        n_rejected = int(re.match(r"(\d+) lines rejected", rejected_file.read_text()).group(1))
        rows = _csv_rows(name)
        assert expected == [] and n_rejected == len(rows) > 0
        assert "port" not in rows[0]
        rtype = default_registry().get(name)
        assert ["source.port", "port", "convert_int"] in rtype.intelmq["required_fields"]
        assert len(events) == len(rows)
        url_key = next(item[0] for item in rtype.intelmq["optional_fields"] if item[1] == "url")
        for event, row in zip(events, rows):
            assert "source.port" not in event and "extra.port" not in event
            assert event["time.source"] == row["timestamp"].replace(" ", "T") + "+00:00"
            assert event["source.ip"] == row["ip"]
            assert event[url_key] == row["url"]
            assert event["classification.identifier"] == rtype.intelmq["constant_fields"]["classification.identifier"]
        return

    _compare(name, events, expected)


def test_unknown_type_does_not_stop_other_files(data_dir, capsys):
    """A file of an unknown type fails the call (exit 1) but the files around it are printed."""
    phish = data_dir / "samples" / "shadowserver" / "phish_url.csv"
    first = data_dir / "samples" / "shadowserver" / "scan_http.csv"
    last = data_dir / "samples" / "shadowserver" / "blocklist.csv"
    status, events, err = _run(capsys, first, phish, last)
    assert status == 1
    assert f"{phish}" in err and "unknown report type 'phish_url'" in err
    n_first = len((CONFORMANCE_DIR / "scan_http.intelmq.jsonl").read_text().splitlines())
    _compare("scan_http", events[:n_first], [json.loads(x) for x in
                                             (CONFORMANCE_DIR / "scan_http.intelmq.jsonl").read_text().splitlines()])
    _compare("blocklist", events[n_first:], [json.loads(x) for x in
                                             (CONFORMANCE_DIR / "blocklist.intelmq.jsonl").read_text().splitlines()])


def test_number_allowance_is_one_way():
    """The comparison accepts a number for IntelMQ's numeric string, never a string for a number."""
    assert _same_value(737401, "737401")
    assert not _same_value("518111", 518111)
    assert not _same_value(True, 1)
    assert not _same_value(1.0, 1)
    assert not _same_value(2, "3")


# ---------------------------------------------------------------------------------------------
# Harmonization rules the samples do not exercise.  Each case changes one column of the first
# row of scan_http.csv; the expected fields were checked against IntelMQ 3.5.0's
# ShadowserverParserBot run on the same row.  ``present``: fields and values that must be in the
# event; ``absent``: fields that must not.
# ---------------------------------------------------------------------------------------------

HARMONIZATION_CASES = [
    # An optional value invalid for its field: the raw column goes to extra.  (An invalid
    # country code such as "USA" is quarantined by Herald's source: see
    # test_invalid_country_code_is_quarantined_not_exported.)
    ({"geo": "us"}, {"source.geolocation.cc": "US"}, ["extra.geo"]),
    ({"hostname": "Example.COM."}, {"source.reverse_dns": "example.com"}, ["extra.hostname"]),
    ({"hostname": "1.2.3.4"}, {"extra.hostname": "1.2.3.4"}, ["source.reverse_dns"]),
    ({"hostname": "bücher.example"}, {"source.reverse_dns": "xn--bcher-kva.example"}, ["extra.hostname"]),
    ({"hostname": "a" * 64 + ".example"}, {"extra.hostname": "a" * 64 + ".example"}, ["source.reverse_dns"]),
    ({"protocol": "TCP"}, {"protocol.transport": "tcp"}, ["extra.protocol"]),
    ({"protocol": "tcpx"}, {"extra.protocol": "tcpx"}, ["protocol.transport"]),
    ({"city": " Miami "}, {"source.geolocation.city": "Miami"}, ["extra.city"]),
    # invalidate_zero, and the values IntelMQ ignores ("-", "N/A"): no field at all.
    ({"asn": "0"}, {}, ["source.asn", "extra.asn"]),
    ({"region": "-"}, {}, ["source.geolocation.region", "extra.region"]),
    ({"city": "N/A"}, {}, ["source.geolocation.city", "extra.city"]),
    # ... but only for harmonization fields: extra keeps them.
    ({"server": "-"}, {"extra.server": "-"}, []),
    ({"sic": " 737401 "}, {"extra.sic": " 737401 "}, []),
    # Conversion functions.
    ({"tag": "cve-2021-1234;x;cve-2020-1"},
     {"product.vulnerabilities": "cve-2020-1;cve-2021-1234", "extra.tag": "cve-2021-1234;x;cve-2020-1"}, []),
    ({"http_date": "Mon, 10 Jan 2022 00:01:44 +0100"}, {"extra.http_date": "2022-01-09T23:01:44+00:00"}, []),
    ({"http_date": "not a date"}, {}, ["extra.http_date"]),
    ({"http_code": ""}, {}, ["extra.http_code"]),
    # validate_ip of a required field: no source.ip, the raw column goes to extra.
    ({"ip": "0.0.0.0"}, {"extra.ip": "0.0.0.0"}, ["source.ip"]),
]


def _one_row_file(tmp_path: Path, changes: dict[str, str]) -> Path:
    with open(SAMPLES_DIR / "scan_http.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        row = next(reader)
        header = reader.fieldnames
    row.update(changes)
    path = tmp_path / "2018-04-19-scan_http-test.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, header, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)
    return path


@pytest.mark.parametrize("changes,present,absent", HARMONIZATION_CASES,
                         ids=[json.dumps(c[0], ensure_ascii=False)[:40] for c in HARMONIZATION_CASES])
def test_harmonization_rule(tmp_path, capsys, changes, present, absent):
    status, events, err = _run(capsys, _one_row_file(tmp_path, changes))
    assert status == 0, err
    assert len(events) == 1
    event = events[0]
    for key, value in present.items():
        assert key in event and _same_value(event[key], value) and _same_value(value, event[key]), (key, event.get(key))
    for key in absent:
        assert key not in event, (key, event[key])
    # The fields the change does not touch keep their values.
    assert event["time.source"] == "2018-04-19T00:02:26+00:00"
    assert event["classification.identifier"] == "accessible-http"


def test_out_of_range_port_is_quarantined_not_dropped(tmp_path, capsys):
    """IntelMQ drops a row whose port is 123456 (longer than source.port allows) without a trace;
    Herald's source quarantines it with file, line, field and reason (docs/input.md), so the
    export has no event for it and says why on stderr."""
    status, events, err = _run(capsys, _one_row_file(tmp_path, {"port": "123456"}))
    assert status == 0, err
    assert events == []
    assert "quarantined" in err and "'port'" in err and "out of range (0..65535)" in err


def test_invalid_country_code_is_quarantined_not_exported(tmp_path, capsys):
    """IntelMQ moves a ``geo`` that is not a country code (``USA``) to ``extra.geo``; Herald's
    source quarantines the row (issue 11: only ISO 3166-1 codes are ever stored, docs/input.md),
    so the export has no event for it and says why on stderr.  Changed on purpose."""
    status, events, err = _run(capsys, _one_row_file(tmp_path, {"geo": "USA"}))
    assert status == 0, err
    assert events == []
    assert "quarantined" in err and "'geo'" in err and "not an ISO 3166-1 alpha-2 country code" in err


def test_fuzzy_dates_are_not_guessed(tmp_path, capsys):
    """IntelMQ's dateutil fuzzy parser turns "2" into the 2nd of the current month; Herald gives
    no value for text that is not a date in a known format (docs/intelmq.md)."""
    status, events, err = _run(capsys, _one_row_file(tmp_path, {"http_date": "2"}))
    assert status == 0, err
    assert "extra.http_date" not in events[0]


def test_herald_type_generic_mapping():
    """A Herald type (no intelmq.json entry) maps its well-known columns; 'blocklist' becomes
    IntelMQ's 'blacklist'; other columns go to extra."""
    import datetime as dt

    import pyarrow as pa

    from herald.schema.intelmq import to_intelmq

    rtype = default_registry().get("herald_drop_network")
    assert rtype.intelmq is None and rtype.classification_type == "blocklist"
    row = {c: None for c in rtype.columns}
    row.update(timestamp=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), ip="192.0.2.0/24",
               asn=64500, geo="nl", sblid="SBL1")
    table = pa.Table.from_pylist([row], schema=rtype.arrow_schema)
    (event,) = list(to_intelmq(table, rtype))
    assert event["classification.type"] == "blacklist"
    assert event["classification.identifier"] == "herald_drop_network"
    assert event["source.network"] == "192.0.2.0/24" and "source.ip" not in event
    assert event["source.asn"] == 64500 and event["source.geolocation.cc"] == "NL"
    assert event["extra.sblid"] == "SBL1"
    assert event["time.source"] == "2026-01-02T03:04:05+00:00"

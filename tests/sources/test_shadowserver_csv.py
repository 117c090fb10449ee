"""The Shadowserver CSV source on real samples and on each form of real-world mess."""

from __future__ import annotations

import csv
import glob
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from herald.errors import InputError, UnknownReportType
from herald.sources.shadowserver_csv import read_file, type_from_filename

HEADER = '"timestamp","ip","protocol","port","hostname","tag","asn","geo","region","city","naics","sic"'


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return p


def test_every_sample_reads_and_counts_reconcile(data_dir):
    samples = sorted(glob.glob(str(data_dir / "samples/shadowserver/*.csv")))
    assert len(samples) == 70
    for path in samples:
        if path.endswith("phish_url.csv"):
            continue
        parsed = read_file(path)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            records = list(csv.reader(fh))[1:]
        assert parsed.rows_in == len(records), path
        assert parsed.table.num_rows + len(parsed.quarantine) == parsed.rows_in, path
        # the type's columns come first, in schema order, with the registry's Arrow types
        schema = parsed.report_type.arrow_schema
        assert parsed.table.schema.names[:len(schema)] == schema.names
        for f in schema:
            assert parsed.table.schema.field(f.name).type == f.type, (path, f.name)


def test_values_are_typed(data_dir):
    parsed = read_file(data_dir / "samples/shadowserver/scan_http.csv")
    row = parsed.table.to_pylist()[0]
    assert row["timestamp"] == datetime(2018, 4, 19, 0, 2, 26, tzinfo=timezone.utc)
    assert row["ip"] == "75.74.78.113"
    assert row["port"] == 8080 and row["asn"] == 7922 and row["naics"] == 518111
    assert row["geo"] == "US"
    assert row["sic"] == "737401"  # not a schema column: kept as a string after the schema columns
    assert row["connection"] is None  # empty -> null


def test_type_from_filename():
    assert type_from_filename("2024-07-04-scan_http-123-sample-asn.csv") == ("scan_http", "2024-07-04")
    assert type_from_filename("scan_http.csv") == ("scan_http", None)
    assert type_from_filename("/x/y/notes.txt") == (None, None)


def test_unknown_type_names_file_and_type(data_dir):
    with pytest.raises(UnknownReportType) as exc:
        read_file(data_dir / "samples/shadowserver/phish_url.csv")
    assert "phish_url" in str(exc.value) and "phish_url.csv" in str(exc.value)


def test_bom_crlf_quoted_commas_and_newlines_ipv6(tmp_path):
    text = ("\ufeff" + HEADER + "\r\n"
            '"2024-01-02 03:04:05","2001:DB8:0:0:0:0:0:1","tcp",443,"a,b","x\r\ny",64496,"AT",,,0,0\r\n'
            '"2024-01-02T03:04:06Z","192.0.2.1","tcp",80,,,64496,"AT",,,0,0\r\n')
    p = write(tmp_path, "2024-01-02-scan_http-test.csv", text)
    parsed = read_file(p)
    rows = parsed.table.to_pylist()
    assert len(rows) == 2 and len(parsed.quarantine) == 0
    assert rows[0]["ip"] == "2001:db8::1"  # RFC 5952 form
    assert rows[0]["hostname"] == "a,b" and rows[0]["tag"] == "x\r\ny"
    assert rows[1]["timestamp"] == datetime(2024, 1, 2, 3, 4, 6, tzinfo=timezone.utc)
    assert parsed.report_date == "2024-01-02"


def test_empty_and_header_only_files(tmp_path):
    empty = read_file(write(tmp_path, "scan_http.csv", ""))
    assert empty.rows_in == 0 and empty.table.num_rows == 0
    header_only = read_file(write(tmp_path, "scan_ssl.csv", HEADER + "\n"))
    assert header_only.rows_in == 0 and header_only.table.num_rows == 0


def test_column_order_extra_and_missing_optional_columns(tmp_path):
    text = ('"ip","timestamp","brand_new_column","port"\n'
            '"192.0.2.7","2024-05-06 07:08:09","hello",8080\n')
    parsed = read_file(write(tmp_path, "scan_http.csv", text))
    row = parsed.table.to_pylist()[0]
    assert row["ip"] == "192.0.2.7" and row["port"] == 8080
    assert row["asn"] is None and row["geo"] is None  # missing optional columns are null
    assert row["brand_new_column"] == "hello"
    assert parsed.table.schema.names[-1] == "brand_new_column"


def test_missing_timestamp_column_is_a_clear_error(tmp_path):
    p = write(tmp_path, "scan_http.csv", '"ip","port"\n"192.0.2.1",80\n')
    with pytest.raises(InputError) as exc:
        read_file(p)
    assert exc.value.field == "timestamp" and exc.value.line == 1 and str(p) in str(exc.value)


def test_bad_rows_are_quarantined_with_file_line_field_and_reason(tmp_path):
    text = (HEADER + "\n"
            '"2024-01-02 03:04:05","192.0.2.1","tcp",80,,,64496,"AT",,,0,0\n'       # line 2 ok
            '"2024-01-02 03:04:05","192.0.2.2","tcp","eighty",,,64496,"AT",,,0,0\n'  # line 3 bad port
            '"yesterday","192.0.2.3","tcp",80,,,64496,"AT",,,0,0\n'                  # line 4 bad time
            '"2024-01-02 03:04:05","192.0.2.4","tcp",80,"multi\nline",,64496,"AT",,,0,0,EXTRA\n'  # 5-6
            ',"192.0.2.5","tcp",80,,,64496,"AT",,,0,0\n'                             # line 7 no time
            '"2024-01-02 03:04:05","192.0.2.6","tcp",80,,,64496,"AT",,,0,0\n')      # line 8 ok
    p = write(tmp_path, "scan_http.csv", text)
    parsed = read_file(p)
    assert parsed.rows_in == 6
    assert [r["ip"] for r in parsed.table.to_pylist()] == ["192.0.2.1", "192.0.2.6"]
    q = {r["line"]: r for r in parsed.quarantine.rows}
    assert set(q) == {3, 4, 5, 7}
    assert q[3]["field"] == "port" and q[3]["reason"] == "not an integer" and q[3]["value"] == "eighty"
    assert q[4]["field"] == "timestamp" and "not a timestamp" in q[4]["reason"]
    assert q[5]["field"] is None and q[5]["reason"] == "13 fields, header has 12"
    assert "multi\nline" in q[5]["raw"]
    assert q[7]["reason"] == "missing timestamp"
    assert all(r["file"] == str(p) for r in parsed.quarantine.rows)
    assert parsed.table.num_rows + len(parsed.quarantine) == parsed.rows_in


def test_short_rows_are_read_with_missing_trailing_columns_empty(data_dir):
    parsed = read_file(data_dir / "samples/shadowserver/scan_rdp.csv")
    assert parsed.rows_in == 2 and parsed.table.num_rows == 2 and len(parsed.quarantine) == 0
    assert [r["ip"] for r in parsed.table.to_pylist()] == ["198.123.245.178", "198.123.245.233"]


def test_a_short_row_among_full_rows_is_quarantined(tmp_path):
    # Changed on purpose (issue 12): a short row among full rows is quarantined, not padded.
    text = (HEADER + "\n"
            '"2024-01-02 03:04:05","192.0.2.1","tcp",80,,,64496,"AT",,,0,0\n'
            '"2024-01-02 03:04:05","192.0.2.2","tcp",80,,,64496,"AT"\n'
            '"2024-01-02 03:04:05","192.0.2.3","tcp",80,,,64496,"AT",,,0,0\n')
    parsed = read_file(write(tmp_path, "scan_http.csv", text))
    assert [r["ip"] for r in parsed.table.to_pylist()] == ["192.0.2.1", "192.0.2.3"]
    assert [(r["line"], r["field"], r["reason"]) for r in parsed.quarantine.rows] == [
        (3, None, "8 fields, header has 12")]
    assert parsed.quarantine.rows[0]["raw"].startswith('"2024-01-02 03:04:05","192.0.2.2"')
    assert parsed.rows_in == 3


def test_invalid_address_is_kept_as_given(data_dir):
    # IntelMQ keeps such events (the address goes to extra.src_ip); Herald keeps them unroutable.
    parsed = read_file(data_dir / "samples/shadowserver/event4_honeypot_ddos_amp.csv")
    assert "37.120.178.9.10" in parsed.table.column("src_ip").to_pylist()


def test_not_utf8_row_is_quarantined_naming_line_and_field(tmp_path):
    # Changed on purpose (issue 12): the row is quarantined, the file's other rows are kept.
    p = write(tmp_path, "scan_http.csv", (HEADER + '\n"2024-01-02 03:04:05","192.0.2.1","tcp",80,"\xff\xfe",,1,"AT",,,0,0\n'
                                          '"2024-01-02 03:04:05","192.0.2.2","tcp",80,,,1,"AT",,,0,0\n').encode("latin-1"))
    parsed = read_file(p)
    assert [r["ip"] for r in parsed.table.to_pylist()] == ["192.0.2.2"]
    [q] = parsed.quarantine.rows
    assert (q["file"], q["line"], q["field"]) == (str(p), 2, "hostname")
    assert q["reason"] == "not UTF-8: byte 0xff on line 2" and q["value"] == "\\xff\\xfe"


def test_impossible_dates_are_quarantined_not_rolled_over(tmp_path):
    text = (HEADER + "\n"
            '"2024-02-30 19:50:53","192.0.2.1","tcp",80,,,1,"AT",,,0,0\n'
            '"2024-02-29 19:50:53","192.0.2.2","tcp",80,,,1,"AT",,,0,0\n'
            '"2023-02-29 00:00:00","192.0.2.3","tcp",80,,,1,"AT",,,0,0\n'
            '"2024-04-10 24:00:00","192.0.2.4","tcp",80,,,1,"AT",,,0,0\n')
    parsed = read_file(write(tmp_path, "scan_http.csv", text))
    assert [r["ip"] for r in parsed.table.to_pylist()] == ["192.0.2.2"]
    assert sorted(r["line"] for r in parsed.quarantine.rows) == [2, 4, 5]


def test_out_of_range_ports_and_asns_and_leap_seconds_are_quarantined(tmp_path):
    text = (HEADER + "\n"
            '"2024-01-02 03:04:05","192.0.2.1","tcp",65536,,,1,"AT",,,0,0\n'
            '"2024-01-02 03:04:05","192.0.2.2","tcp",-1,,,1,"AT",,,0,0\n'
            '"2024-01-02 03:04:05","192.0.2.3","tcp",80,,,4294967296,"AT",,,0,0\n'
            '"2016-12-31 23:59:60","192.0.2.4","tcp",80,,,1,"AT",,,0,0\n'
            '"2024-01-02 03:04:05","192.0.2.5","tcp",65535,,,4294967295," at ",,,0,0\n')
    parsed = read_file(write(tmp_path, "scan_http.csv", text))
    rows = parsed.table.to_pylist()
    assert [r["ip"] for r in rows] == ["192.0.2.5"] and rows[0]["geo"] == "AT"  # upper case (issue 11)
    q = {r["line"]: (r["field"], r["reason"]) for r in parsed.quarantine.rows}
    assert q == {2: ("port", "out of range (0..65535)"), 3: ("port", "out of range (0..65535)"),
                 4: ("asn", "out of range (0..4294967295)"),
                 5: ("timestamp", "not a timestamp (expected YYYY-MM-DD HH:MM:SS, UTC)")}


def test_header_edge_cases(tmp_path):
    # only a BOM; a header without a line end; a stray CR in the header; a 200 KiB header field
    assert read_file(write(tmp_path, "scan_http.csv", b"\xef\xbb\xbf")).rows_in == 0
    assert read_file(write(tmp_path, "scan_ssl.csv", '"timestamp","ip"')).rows_in == 0
    # a lone CR ends a line (old Mac files): "x" is a short row, quarantined for its timestamp
    cr = read_file(write(tmp_path, "scan_dns.csv", '"timestamp","ip"\r"x"\n"2024-01-02 03:04:05","192.0.2.1"\n'))
    assert cr.rows_in == 2 and cr.table.num_rows == 1 and len(cr.quarantine) == 1
    big = '"timestamp","' + "x" * 200_000 + '"\n"2024-01-02 03:04:05","y"\n'
    parsed = read_file(write(tmp_path, "scan_ftp.csv", big))
    assert parsed.rows_in == 1


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError) as exc:
        read_file(tmp_path / "scan_http.csv")
    assert "file not found" in str(exc.value)

"""X-ARF v4: one validated report per event, mapped from the report type's taxonomy, and attached
to the messages of recipients with ``xarf = true``."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import xarf

from herald.deliver.outbox import enqueue_reports
from herald.deliver.xarf import XarfError, reports_for_csv, validate, xarf_kind
from herald.schema.registry import default_registry
from herald.store.db import open_db
from tests.deliver_support import DAY, RECIPIENTS, make_report, make_settings


@pytest.mark.parametrize("type_name, expected", [
    ("scan_http", ("vulnerability", "open_service")),
    ("event4_sinkhole", ("infrastructure", "botnet")),
    ("event4_sinkhole_http", ("infrastructure", "botnet")),
    ("event4_honeypot_brute_force", ("connection", "login_attack")),
    ("compromised_website", ("infrastructure", "compromised_server")),
    ("blocklist", ("reputation", "blocklist")),
    ("scan_ssl_poodle", ("vulnerability", "open_service")),
])
def test_one_valid_report_per_event(tmp_path, type_name, expected):
    rtype = default_registry().get(type_name)
    assert xarf_kind(rtype) == expected
    rep = make_report(tmp_path, "Example Cable ISP", type_name, rows=3)
    data = Path(rep["path"]).read_bytes()
    docs = reports_for_csv(rtype, data, recipient_slug="example_cable_isp", reporter_org="Herald",
                           contact="reports@herald.example", day=DAY)
    assert len(docs) == 3
    for i, doc in enumerate(docs):
        # independently re-validated with the xarf package, strictly typed
        result = xarf.parse(json.loads(json.dumps(doc)))
        assert result.errors == [] and result.report is not None
        assert (doc["category"], doc["type"]) == expected
        assert doc["source_identifier"] == f"192.0.2.{i + 1}"
        assert doc["timestamp"] == f"{DAY}T01:02:{i:02d}Z"
    # deterministic: the same events give the same report ids
    again = reports_for_csv(rtype, data, recipient_slug="example_cable_isp", reporter_org="Herald",
                            contact="reports@herald.example", day=DAY)
    assert [d["report_id"] for d in again] == [d["report_id"] for d in docs]
    assert len({d["report_id"] for d in docs}) == 3


def test_malware_url_maps_to_content_malware_with_the_url(tmp_path):
    rtype = default_registry().get("malware_url")
    cols = list(rtype.columns)
    row = {"timestamp": f"{DAY} 10:00:00", "url": "http://bad.example/x.exe", "ip": "192.0.2.9",
           "hostname": "bad.example", "tag": "emotet"}
    data = (",".join(cols) + "\n" + ",".join(row.get(c, "") for c in cols) + "\n").encode()
    docs = reports_for_csv(rtype, data, recipient_slug="x", reporter_org="Herald",
                           contact="reports@herald.example", day=DAY)
    assert len(docs) == 1 and docs[0]["category"] == "content" and docs[0]["type"] == "malware"
    assert docs[0]["url"] == "http://bad.example/x.exe"


def test_invalid_document_is_refused():
    with pytest.raises(XarfError, match="invalid X-ARF report"):
        validate({"xarf_version": "4.2.0", "category": "vulnerability", "type": "open_service",
                  "report_id": "not-a-uuid", "timestamp": "yesterday"})


def test_recipient_with_xarf_gets_a_jsonl_attachment(tmp_path):
    recips = [dict(r) for r in RECIPIENTS]
    recips[0]["xarf"] = True
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    settings, _ = make_settings(tmp_path, db_url, smtp={"port": 25}, recipients=recips)
    db = open_db(db_url)
    with_x = make_report(tmp_path, "Example Cable ISP", "event4_sinkhole", rows=4)
    without = make_report(tmp_path, "CERT.at", "event4_sinkhole", rows=4)
    enqueue_reports(db, settings, [with_x, without], DAY)
    from herald.deliver.outbox import list_outbox
    rows = {r.recipient: r for r in list_outbox(db)}
    msg = message_from_bytes(Path(rows["Example Cable ISP"].path).read_bytes(), policy=policy.default)
    names = [a.get_filename() for a in msg.iter_attachments()]
    assert names == [Path(with_x["path"]).name, Path(with_x["path"]).name.replace(".csv", ".xarf.jsonl")]
    lines = next(a for a in msg.iter_attachments() if a.get_filename().endswith(".jsonl")
                 ).get_payload(decode=True).decode().splitlines()
    assert len(lines) == 4
    for line in lines:
        doc = json.loads(line)
        assert xarf.parse(doc).errors == [] and doc["malware_family"] == "virut"
    assert "4 X-ARF report(s)" in msg.get_body(("plain",)).get_content()
    other = message_from_bytes(Path(rows["CERT.at"].path).read_bytes(), policy=policy.default)
    assert [a.get_filename() for a in other.iter_attachments()] == [Path(without["path"]).name]
    db.dispose()

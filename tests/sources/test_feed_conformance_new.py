"""Conformance of Herald's PhishTank, OpenPhish, Turris and URLhaus (per-TLD/country/ASN feed) parsers
with IntelMQ 3.5.0's parser bots (URLhaus: the generic CSV parser configured as IntelMQ's feeds.yaml).

The expected events, ``tests/data/feeds/<feed>/<sample>.intelmq.jsonl``, are IntelMQ's own output,
made by ``scripts/intelmq_feed_conformance.py`` (without ``time.observation``).  For every sample:

- Herald's rows and IntelMQ's events are the same in number and order;
- every IntelMQ key is compared with a Herald column (table :data:`FIELDS`), both ways: a key
  IntelMQ has must hold the Herald value, a Herald value must appear under its IntelMQ key;
- ``classification.type`` equals the Herald type's classification (or, for Turris, its ``category``);
- ``raw`` is IntelMQ's copy of the input record: for OpenPhish it must decode to the URL, for
  PhishTank to the same JSON object as the file's record, for URLhaus to the data line; Turris's raw
  (header plus line) is not compared.

Documented exception (docs/feeds.md, Turris): Herald keeps rows for Turris tags IntelMQ drops
(``haas``...); they are compared as absent from IntelMQ's output.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from herald.sources.detect import parse_any

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"


def _iso(ts) -> str:
    return ts.isoformat()


#: feed -> IntelMQ key -> (Herald column, conversion of the Herald value to IntelMQ's).
FIELDS = {
    "phishtank": {
        "source.url": ("url", str), "source.ip": ("ip", str), "source.network": ("network", str),
        "source.asn": ("asn", int), "source.geolocation.cc": ("geo", str), "time.source": ("timestamp", _iso),
        "status": ("status", str), "event_description.url": ("source_url", str),
        "event_description.target": ("target", str), "extra.phishtank.phish_id": ("source_id", str),
        "extra.phishtank.verified": ("verified", str),
        "extra.phishtank.verification_time": ("verification_time", str),
    },
    "openphish": {"source.url": ("url", str)},
    "urlhaus": {
        "source.url": ("url", str), "source.fqdn": ("hostname", str), "source.ip": ("ip", str),
        "source.asn": ("asn", int), "source.geolocation.cc": ("geo", str), "status": ("status", str),
        "time.source": ("timestamp", _iso),
    },
    "turris": {
        "source.ip": ("ip", str), "protocol.transport": ("protocol", str),
        "protocol.application": ("application", str), "destination.port": ("dst_port", int),
        "classification.type": ("category", str),
    },
}

SAMPLES = [
    ("phishtank", "phishtank/phishtank_online-valid.json"),
    ("openphish", "openphish/openphish_feed.txt"),
    ("openphish", "openphish/openphish_feed_herald.txt"),
    ("turris", "turris/turris_greylist-latest.csv"),
    ("turris", "turris/greylist-latest_2019.csv"),
    ("urlhaus", "urlhaus/urlhaus_tld_ch.txt"),
]


def _expected(sample: Path) -> list[dict]:
    path = sample.with_name(sample.name.rsplit(".", 1)[0] + ".intelmq.jsonl")
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


@pytest.mark.parametrize("feed,rel", SAMPLES)
def test_same_events_as_intelmq(feed, rel):
    sample = FEEDS / rel
    # A bare URL list proves no feed: OpenPhish is read with --format openphish (docs/feeds.md).
    parsed = parse_any(str(sample), "openphish" if feed == "openphish" else None, observed_at="2024-04-04 00:00:00")
    assert len(parsed.quarantine) == 0
    rows = parsed.table.to_pylist()
    if feed == "turris":
        rows = [r for r in rows if r["category"]]  # tags IntelMQ drops: see the module docstring
    expected = _expected(sample)
    assert len(rows) == len(expected) > 0
    fields = FIELDS[feed]
    for i, (row, ev) in enumerate(zip(rows, expected)):
        allowed = set(fields) | {"raw", "classification.type", "__type"}
        assert set(ev) <= allowed, f"event {i}: IntelMQ keys without a Herald column: {set(ev) - allowed}"
        for key, (col, conv) in fields.items():
            got = None if row[col] is None else conv(row[col])
            assert got == ev.get(key), f"event {i}, {key} <- {col}"
        if feed != "turris":
            assert ev["classification.type"] == parsed.report_type.classification_type
        raw = base64.b64decode(ev["raw"]).decode("utf-8")
        if feed == "openphish":
            assert raw == row["url"]
        elif feed == "phishtank":
            records = json.loads(sample.read_text(encoding="utf-8"))
            assert json.loads(raw) == [records[i]]
        elif feed == "urlhaus":
            data = [ln for ln in sample.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
            assert raw.rstrip("\n") == data[i]


def test_expected_outputs_exist_for_every_sample():
    """Every sample has its IntelMQ output, and every output of this naming is compared here."""
    # Outputs named <stem>.intelmq.jsonl (no file <stem>) are this test's; <file>.intelmq.jsonl are
    # tests/test_feed_conformance.py's (scripts/make_feed_conformance.py).
    stems = {str(p.relative_to(FEEDS))[: -len(".intelmq.jsonl")] for p in FEEDS.rglob("*.intelmq.jsonl")}
    assert {s for s in stems if not (FEEDS / s).exists()} == {rel.rsplit(".", 1)[0] for _, rel in SAMPLES}
    # Regenerate with scripts/intelmq_feed_conformance.py when a sample changes.
    for _, rel in SAMPLES:
        assert _expected(FEEDS / rel)

"""Conformance of ``herald parse FILE --format intelmq`` with IntelMQ 3.5.0's feed parsers.

For IntelMQ's own parser test files (``tests/data/feeds/<feed>/``), Herald's IntelMQ export is
compared event by event, key by key, with IntelMQ's output ``<file>.intelmq.jsonl`` (made by
``scripts/make_feed_conformance.py``).  Same number of events in the same order; every key that
differs, or that only one side has, must be an allowed difference of :data:`ALLOWED` (the table of
``docs/feeds.md``, section "Conformance with IntelMQ"); all other keys (addresses, networks, times,
ASNs, ports, malware names, countries, ...) must be equal.  Lines IntelMQ's bot sent to its error
queue (``<file>.intelmq-error.txt``) must be quarantined by Herald, as many of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from herald.cli import main

FEEDS = Path(__file__).parent / "data" / "feeds"

#: Keys that may differ or be absent everywhere (as for Shadowserver, tests/data/conformance/README.md);
#: ``raw`` may be present.  Herald always writes ``classification.taxonomy`` (IntelMQ's parsers
#: leave it to the taxonomy expert).
ANYWHERE = frozenset({"feed.name", "feed.provider", "feed.accuracy", "feed.code", "feed.url",
                      "feed.documentation", "time.observation", "raw"})
HERALD_ONLY_ANYWHERE = frozenset({"classification.taxonomy"})

#: feed -> {"+": keys only Herald writes, "-": keys only IntelMQ writes, "~": keys whose values
#: differ}.  Each entry is explained in docs/feeds.md ("Conformance with IntelMQ").
_BLOCKLIST_TYPE = {"+": {"classification.identifier", "extra.reason", "extra.source_name"},
                   "~": {"classification.type"}}
ALLOWED: dict[str, dict[str, set[str]]] = {
    "blocklistde": {"+": _BLOCKLIST_TYPE["+"] | {"time.source"},
                    "-": {"event_description.text", "protocol.application"}, "~": {"classification.type"}},
    "dataplane": {"+": _BLOCKLIST_TYPE["+"], "-": {"event_description.text", "protocol.application",
                                                   "source.as_name"},
                  "~": {"classification.type", "extra.first_seen"}},
    "dshield": {"+": _BLOCKLIST_TYPE["+"], "-": {"extra.attacks", "extra.network_name", "source.abuse_contact"},
                "~": set()},
    "dshield_asn": {"+": _BLOCKLIST_TYPE["+"], "-": {"extra.last_seen", "extra.reports", "extra.targets",
                                                     "source.asn"},
                    "~": {"classification.type"}},
    "bambenek": {"+": {"classification.identifier", "extra.detail", "extra.source", "extra.source_url"},
                 "-": {"event_description.text", "event_description.url", "status"}, "~": set()},
    "spamhaus_drop": {"+": {"classification.identifier", "extra.sblid", "extra.source"},
                      "-": {"extra.blocklist"}, "~": {"classification.type"}},
    "spamhaus_asndrop": {"+": {"classification.identifier", "extra.source"}, "-": set(),
                         "~": {"classification.type"}},
    "cymru": {"+": {"classification.identifier", "extra.category", "extra.detail", "extra.source", "extra.tag",
                    "extra.hostname", "extra.protocol", "source.port", "source.reverse_dns"},
              "-": {"extra.protocol.transport", "extra.source.asns", "extra.source_port", "source.account",
                    "source.fqdn", "event_description.text", "extra.request"},
              "~": {"classification.identifier", "malware.name"}},
    "spamhaus_cert": {"+": {"classification.identifier", "extra.botname", "extra.detail", "extra.domain",
                            "extra.source", "source.port"},
                      "-": {"destination.fqdn", "event_description.url", "extra.source.local_port",
                            "extra.spam_ip", "malware.version", "source.url"}, "~": set()},
}

#: file (relative to tests/data/feeds) -> the format (``herald parse --input``).
CASES = {
    "blocklistde/imap.txt": "blocklistde",
    "bambenek/c2-ipmasterlist.txt": "bambenek",
    "dshield/block.txt": "dshield",
    "dshield/asdetailsascii.html": "dshield_asn",
    "spamhaus/drop.txt": "spamhaus_drop",
    "spamhaus/asndrop.txt": "spamhaus_asndrop",
    "spamhaus/cert.txt": "spamhaus_cert",
    "cymru/certname_20190327.txt": "cymru",
    "cymru/infected_20171031.txt": "cymru",
    **{f"dataplane/{n}.txt": "dataplane" for n in (
        "dnsrd", "dnsrdany", "dnsversion", "proto41", "sipinvitation", "sipquery", "sipregistration",
        "smtpdata", "smtpgreet", "sshclient", "sshpwauth", "telnetlogin", "vncrfb")},
}


#: Lines Herald quarantines that IntelMQ drops without a word: DShield AS details lines with fewer than
#: six fields (here the REUSE comment IntelMQ added on top of its copy of the file).
QUARANTINED_SILENTLY_BY_INTELMQ = {"dshield/asdetailsascii.html": 4}


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_generated_reference_is_checked():
    """Each ``.intelmq.jsonl`` is compared here."""
    made = {str(p.relative_to(FEEDS))[: -len(".intelmq.jsonl")] for p in FEEDS.rglob("*.intelmq.jsonl")}
    assert made == set(CASES)


@pytest.mark.parametrize("rel", sorted(CASES))
def test_conforms_to_intelmq(rel, tmp_path, capsys):
    fmt = CASES[rel]
    src = FEEDS / rel
    path = tmp_path / src.name
    shutil.copy(src, path)
    os.utime(path, (1700000000, 1700000000))   # blocklist.de has no time: fixed, never "now"
    status = main(["parse", str(path), "--input", fmt, "--format", "intelmq"])
    out, err = capsys.readouterr()
    got = _events(out)
    want = _events(src.with_name(src.name + ".intelmq.jsonl").read_text(encoding="utf-8"))
    assert status == 0, err
    errors = src.with_name(src.name + ".intelmq-error.txt")
    n_err = int(re.search(r"sent (\d+) message", errors.read_text())[1]) if errors.exists() else 0
    n_err += QUARANTINED_SILENTLY_BY_INTELMQ.get(rel, 0)
    assert len(re.findall(r"^herald: quarantined: ", err, re.M)) == n_err, err
    assert len(got) == len(want), f"Herald {len(got)} events, IntelMQ {len(want)}"
    allowed = ALLOWED[fmt]
    for i, (g, w) in enumerate(zip(got, want)):
        only_h = {k for k in set(g) - set(w) if k not in ANYWHERE | HERALD_ONLY_ANYWHERE}
        only_i = {k for k in set(w) - set(g) if k not in ANYWHERE}
        differ = {k for k in set(g) & set(w) if k not in ANYWHERE and g[k] != w[k]}
        assert only_h <= allowed["+"], f"event {i}: only in Herald {sorted(only_h - allowed['+'])}"
        assert only_i <= allowed["-"], f"event {i}: only in IntelMQ {sorted(only_i - allowed['-'])}"
        assert differ <= allowed["~"], (
            f"event {i}: differ {[(k, g[k], w[k]) for k in sorted(differ - allowed['~'])]}")
        if "time.source" in w:
            assert g["time.source"] == w["time.source"]
    if fmt == "blocklistde":   # Herald's time: the file's (fixed) modification time
        assert {g["time.source"] for g in got} == {"2023-11-14T22:13:20+00:00"}

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

import fnmatch
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from herald.cli import main

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"

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
    "dataplane": {"+": _BLOCKLIST_TYPE["+"] | {"extra.as_name"}, "-": {"event_description.text", "protocol.application",
                                                   "source.as_name"},
                  "~": {"classification.type", "extra.first_seen"}},
    "dshield": {"+": _BLOCKLIST_TYPE["+"] | {"extra.abuse_contact"}, "-": {"extra.attacks", "source.abuse_contact"},
                "~": set()},
    "dshield_asn": {"+": _BLOCKLIST_TYPE["+"], "-": {"extra.last_seen", "extra.reports", "extra.targets"},
                    "~": {"classification.type"}},
    "bambenek": {"+": {"classification.identifier", "extra.detail", "extra.source", "extra.source_url"},
                 "-": {"event_description.text", "event_description.url"}, "~": set()},
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
                      "-": {"event_description.url", "extra.source.local_port", "extra.spam_ip",
                            "malware.version"}, "~": set()},
    # Herald's time is max(first seen, last online), the latest moment the C2 is known active.
    "abusech_feodo": {"+": {"classification.identifier", "extra.first_seen", "extra.last_seen", "extra.source",
                            "source.asn"},
                      "-": {"extra.last_online"}, "~": {"time.source", "source.as_name", "status"}},
    "ctip": {"+": {"classification.identifier", "extra.confidence", "extra.dst_hostname", "extra.http_agent",
                   "extra.public_source", "extra.tag", "extra.tlp", "extra.family", "protocol.application",
                   "destination.fqdn", "destination.url"},
             "-": {"destination.ip", "destination.fqdn", "event_description.text", "extra.additionalmetadata",
                   "extra.ispartnershareable", "extra.isproductlicensed", "extra.user_agent", "tlp",
                   "extra.custom_field*", "extra.http.*", "extra.malware", "extra.payload.*",
                   "extra.source.connection_type", "extra.source.geolocation.*", "extra.total_encounters",
                   "source.as_name", "source.geolocation.latitude", "source.geolocation.longitude"},
             "~": {"time.source"}},
    "shodan": {"+": {"extra.cpe", "extra.org", "extra.source", "extra.tag", "protocol.application",
                     "source.geolocation.region"},
               "-": {"event_description.target", "extra.*", "source.fqdn", "source.geolocation.latitude",
                     "source.geolocation.longitude"},
               "~": {"classification.identifier", "classification.type", "extra.vulns", "protocol.application"}},
    "cert_eu": {"+": {"classification.identifier", "extra.classification_type", "extra.confidence",
                      "extra.observation_time", "extra.tag", "extra.tlp", "source.geolocation.cc", "source.port"},
                "-": {"event_description.target", "extra.*", "source.as_name", "source.geolocation.*", "tlp"},
                "~": {"classification.type"}},
    "zoneh": {"+": {"extra.*"}, "-": {"extra.*", "protocol.application", "source.fqdn"},
              "~": {"classification.type", "event_description.text"}},
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
    "abusech/feodotracker.json": "abusech_feodo",
    "html_table/feodotracker.html": "abusech_feodo",
    "microsoft/ctip.txt": "ctip",
    "microsoft/ctip_azure.txt": "ctip",
    "shodan/tests.json": "shodan",
    "cert_eu/example.csv": "cert_eu",
    "zoneh/defacement_accepted.csv": "zoneh",
    **{f"dataplane/{n}.txt": "dataplane" for n in (
        "dnsrd", "dnsrdany", "dnsversion", "proto41", "sipinvitation", "sipquery", "sipregistration",
        "smtpdata", "smtpgreet", "sshclient", "sshpwauth", "telnetlogin", "vncrfb")},
}


#: Lines Herald quarantines that IntelMQ drops without a word: DShield AS details lines with fewer than
#: six fields (here the REUSE comment IntelMQ added on top of its copy of the file).
QUARANTINED_SILENTLY_BY_INTELMQ = {"dshield/asdetailsascii.html": 4}


def _iso(text: str):
    import datetime as dt

    return dt.datetime.fromisoformat(text)


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


#: References of the feeds added for issue 16 (``<sample stem>.intelmq.jsonl``, made by
#: ``scripts/intelmq_feed_conformance.py``): compared with Herald's tables by
#: ``tests/test_feed_conformance_new.py``, not here.
CHECKED_BY_TEST_FEED_CONFORMANCE_NEW = frozenset({
    "phishtank/phishtank_online-valid", "openphish/openphish_feed", "openphish/openphish_feed_herald",
    "turris/turris_greylist-latest", "turris/greylist-latest_2019", "urlhaus/urlhaus_tld_ch"})


def test_every_generated_reference_is_checked():
    """Each ``.intelmq.jsonl`` is compared here, or (the new feeds') in test_feed_conformance_new.py."""
    made = {str(p.relative_to(FEEDS))[: -len(".intelmq.jsonl")] for p in FEEDS.rglob("*.intelmq.jsonl")}
    assert made == set(CASES) | CHECKED_BY_TEST_FEED_CONFORMANCE_NEW


@pytest.mark.parametrize("rel", sorted(CASES))
def test_conforms_to_intelmq(rel, tmp_path, capsys):
    fmt = CASES[rel]
    src = FEEDS / rel
    path = tmp_path / src.name
    shutil.copy(src, path)
    os.utime(path, (1700000000, 1700000000))   # blocklist.de has no time: fixed, never "now"
    # IntelMQ reads the AS of the AS details list from the report's URL (?as=1): Herald from --asn.
    asn = ["--asn", "1"] if fmt == "dshield_asn" else []
    status = main(["parse", str(path), "--input", fmt, "--format", "intelmq", *asn])
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

    def not_allowed(keys: set[str], kind: str) -> list[str]:
        return sorted(k for k in keys if not any(fnmatch.fnmatchcase(k, pat) for pat in allowed[kind]))

    for i, (g, w) in enumerate(zip(got, want)):
        only_h = {k for k in set(g) - set(w) if k not in ANYWHERE | HERALD_ONLY_ANYWHERE}
        only_i = {k for k in set(w) - set(g) if k not in ANYWHERE}
        differ = {k for k in set(g) & set(w) if k not in ANYWHERE and g[k] != w[k]}
        assert not not_allowed(only_h, "+"), f"event {i}: only in Herald {not_allowed(only_h, '+')}"
        assert not not_allowed(only_i, "-"), f"event {i}: only in IntelMQ {not_allowed(only_i, '-')}"
        assert not not_allowed(differ, "~"), (
            f"event {i}: differ {[(k, g[k], w[k]) for k in not_allowed(differ, '~')]}")
    if fmt == "ctip":   # IntelMQ's float rounding of the Azure ticks: within a microsecond
        for g, w in zip(got, want):
            assert abs(_iso(g["time.source"]) - _iso(w["time.source"])).total_seconds() <= 1e-6
    if fmt == "blocklistde":   # Herald's time: the file's (fixed) modification time
        assert {g["time.source"] for g in got} == {"2023-11-14T22:13:20+00:00"}


def test_parse_reads_a_feed_named_like_a_csv_report(capsys):
    """``herald parse`` without --input: a CSV whose name is no Shadowserver type is detected."""
    assert main(["parse", str(FEEDS / "cert_eu" / "example.csv")]) == 0
    assert len(_events(capsys.readouterr().out)) == 2

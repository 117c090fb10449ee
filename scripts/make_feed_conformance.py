"""Regenerate ``tests/data/feeds/<feed>/<file>.intelmq.jsonl``: IntelMQ 3.5.0's parser output for
IntelMQ's own parser test files, the reference of ``tests/sources/test_feed_conformance.py``.

Run it with the Python of a virtual environment that has IntelMQ (outside the repository; it is not
part of the test suite)::

    python3 -m venv /tmp/intelmq-venv && /tmp/intelmq-venv/bin/pip install intelmq==3.5.0
    /tmp/intelmq-venv/bin/python scripts/make_feed_conformance.py [FILE...]   # FILE: relative to tests/data/feeds

Each file is fed to its parser bot in library mode (``BotLibSettings``, ``bot.process_message()``,
IntelMQ's "Running IntelMQ as Library"), as one report with the ``feed.url`` IntelMQ's own tests use
(some parsers choose the layout by URL).  ``raw``, ``time.observation`` and ``__type`` are removed
and ``feed.name`` is set to ``x``; keys are sorted.  A file the bot fails on gets
``<file>.intelmq-error.txt`` with the bot's error instead.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT / "tests" / "data" / "feeds"

#: file (relative to tests/data/feeds) -> (bot module:class, feed.url of the report[, bot parameters]).
CASES: dict[str, tuple] = {
    "blocklistde/imap.txt": ("blocklistde.parser:BlockListDEParserBot",
                             "https://lists.blocklist.de/lists/imap.txt"),
    "bambenek/c2-ipmasterlist.txt": ("bambenek.parser:BambenekParserBot",
                                     "http://osint.bambenekconsulting.com/feeds/c2-ipmasterlist.txt"),
    "dshield/block.txt": ("dshield.parser_block:DshieldBlockParserBot", "https://www.dshield.org/block.txt"),
    "dshield/asdetailsascii.html": ("dshield.parser_asn:DShieldASNParserBot",
                                    "https://dshield.org/asdetailsascii.html?as=1"),
    "spamhaus/drop.txt": ("spamhaus.parser_drop:SpamhausDropParserBot", "https://www.spamhaus.org/drop/drop.txt"),
    "spamhaus/asndrop.txt": ("spamhaus.parser_drop:SpamhausDropParserBot",
                             "https://www.spamhaus.org/drop/asndrop.txt"),
    "spamhaus/cert.txt": ("spamhaus.parser_cert:SpamhausCERTParserBot",
                          "https://portal.spamhaus.org/cert/api.php?cert=<CERTNAME>&key=<APIKEY>"),
    "cymru/certname_20190327.txt": ("cymru.parser_cap_program:CymruCAPProgramParserBot", ""),
    "cymru/infected_20171031.txt": ("cymru.parser_cap_program:CymruCAPProgramParserBot", ""),
    **{f"dataplane/{name}.txt": ("dataplane.parser:DataplaneParserBot", f"https://dataplane.org/{name}.txt")
       for name in ("dnsrd", "dnsrdany", "dnsversion", "proto41", "sipinvitation", "sipquery",
                    "sipregistration", "smtpdata", "smtpgreet", "sshclient", "sshpwauth", "telnetlogin",
                    "vncrfb")},
    "abusech/feodotracker.json": ("abusech.parser_feodotracker:AbusechFeodoTrackerParserBot",
                                  "https://feodotracker.abuse.ch/downloads/ipblocklist.json"),
    # The parameters of IntelMQ's own test (tests/bots/parsers/html_table/test_feodotracker.py).
    "html_table/feodotracker.html": ("html_table.parser:HTMLTableParserBot", "https://feodotracker.abuse.ch/browse",
                                     {"columns": "time.source,source.ip,malware.name,status,source.as_name,"
                                                 "source.geolocation.cc",
                                      "type": "c2-server", "ignore_values": ",,,,,", "skip_table_head": True}),
    "microsoft/ctip.txt": ("microsoft.parser_ctip:MicrosoftCTIPParserBot", ""),
    "microsoft/ctip_azure.txt": ("microsoft.parser_ctip:MicrosoftCTIPParserBot", ""),
    # One banner per report, as IntelMQ's test and its stream collector feed them.
    "shodan/tests.json": ("shodan.parser:ShodanParserBot", "", {"_per_line": True}),
    "cert_eu/example.csv": ("cert_eu.parser_csv:CertEUCSVParserBot", "https://www.cert-eu.eu"),
    "zoneh/defacement_accepted.csv": ("zoneh.parser:ZoneHParserBot", "", {"feedname": "Compromised-Website"}),
}

DROP = ("raw", "time.observation", "__type")


def _bot(spec: str, params: dict):
    from intelmq.lib.bot import BotLibSettings

    module, cls = spec.split(":")
    bot_cls = getattr(importlib.import_module(f"intelmq.bots.parsers.{module}"), cls)
    return bot_cls(f"conformance-{cls.lower()}", settings=BotLibSettings | {"logging_level": "ERROR"} | params)


def run(rel: str, spec: str, url: str, params: dict | None = None) -> None:
    """Parse ``tests/data/feeds/<rel>`` with ``spec`` and write its ``.intelmq.jsonl`` (or error)."""
    path = FEEDS / rel
    params = dict(params or {})
    chunks = path.read_bytes().splitlines() if params.pop("_per_line", False) else [path.read_bytes()]
    bot = _bot(spec, params)
    queues: dict[str, list] = {"output": [], "error": []}
    for chunk in chunks:
        report = {"__type": "Report", "raw": base64.b64encode(chunk).decode(), "feed.name": "x"}
        if url:
            report["feed.url"] = url
        result = bot.process_message(report)
        for name in queues:
            queues[name] += result.get(name, [])
    errors = queues["error"]
    out = path.with_name(path.name + ".intelmq.jsonl")
    err = path.with_name(path.name + ".intelmq-error.txt")
    events = []
    for ev in queues.get("output", []):
        ev = {k: v for k, v in dict(ev).items() if k not in DROP}
        ev["feed.name"] = "x"
        events.append(json.dumps(ev, sort_keys=True, ensure_ascii=False))
    out.write_text("".join(e + "\n" for e in events), encoding="utf-8")
    if errors:
        err.write_text(f"IntelMQ 3.5.0 {spec} sent {len(errors)} message(s) to its error queue\n")
    elif err.exists():
        err.unlink()
    print(f"{rel}: {len(events)} events, {len(errors)} errors")


def main() -> int:
    """Regenerate every case of :data:`CASES`."""
    os.environ.setdefault("INTELMQ_ROOT_DIR", tempfile.mkdtemp(prefix="intelmq-root-"))
    root = Path(os.environ["INTELMQ_ROOT_DIR"])
    for sub in ("etc", "var/log", "var/run", "var/lib/bots"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])
    for rel, case in CASES.items():
        if not only or rel in only:
            run(rel, *case)
    return 0


if __name__ == "__main__":
    sys.exit(main())

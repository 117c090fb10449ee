"""Regenerate IntelMQ 3.5.0's output for the feed samples that IntelMQ has a parser for.

    python scripts/intelmq_feed_conformance.py [--venv /tmp/intelmq-venv2]

For each sample below, IntelMQ's parser bot runs in library mode (``BotLibSettings``, as
``bench/compare_intelmq.py`` runs the Shadowserver parser) in the IntelMQ venv (created with
``pip install intelmq==3.5.0`` when missing, outside the repository: IntelMQ is AGPL and not a Herald
dependency), with the whole file as one report.  Its events are written, one JSON object per line
with sorted keys and without ``time.observation`` (the time of the run), to
``tests/data/feeds/<feed>/<sample stem>.intelmq.jsonl``.  ``tests/sources/test_feed_conformance_new.py``
compares Herald's tables with them field by field.

The URLhaus per-TLD/country/ASN feed is read with IntelMQ's generic CSV parser and the parameters
of IntelMQ's ``feeds.yaml``.  Feeds without an IntelMQ 3.5.0 parser (URLhaus CSV dump, ThreatFox,
SSLBL, PhishTank CSV, DShield suspicious domains) have no expected output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT / "tests" / "data" / "feeds"

#: The URLhaus feed's parser parameters, as in IntelMQ 3.5.0's ``etc/feeds.yaml`` ("URLhaus").
URLHAUS_FEED = {
    "skip_header": False, "default_url_protocol": "http://", "delimiter": ",",
    "type_translation": {"malware_download": "malware-distribution"},
    "columns": ["time.source", "source.url", "status", "classification.type|__IGNORE__",
                "source.fqdn|__IGNORE__", "source.ip", "source.asn", "source.geolocation.cc"],
}

#: sample (relative to tests/data/feeds) -> (IntelMQ parser bot "module:Class", bot parameters).
SAMPLES = {
    "phishtank/phishtank_online-valid.json": ("intelmq.bots.parsers.phishtank.parser:PhishTankParserBot", {}),
    "openphish/openphish_feed.txt": ("intelmq.bots.parsers.openphish.parser:OpenPhishParserBot", {}),
    "openphish/openphish_feed_herald.txt": ("intelmq.bots.parsers.openphish.parser:OpenPhishParserBot", {}),
    "turris/turris_greylist-latest.csv": ("intelmq.bots.parsers.turris.parser:TurrisGreylistParserBot", {}),
    "turris/greylist-latest_2019.csv": ("intelmq.bots.parsers.turris.parser:TurrisGreylistParserBot", {}),
    "urlhaus/urlhaus_tld_ch.txt": ("intelmq.bots.parsers.generic.parser_csv:GenericCsvParserBot", URLHAUS_FEED),
}

CHILD = r'''
import base64, importlib, json, sys
from intelmq.lib.bot import BotLibSettings
path, ref, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
mod, cls = ref.split(":")
bot = getattr(importlib.import_module(mod), cls)("parser", settings=BotLibSettings | {"logging_level": "ERROR"}
                                                 | params)
raw = open(path, "rb").read()
q = bot.process_message({"__type": "Report", "raw": base64.b64encode(raw).decode()})
if q.get("error"):
    sys.exit(f"IntelMQ reported errors for {path}: {q['error']}")
for ev in q.get("output", []):
    ev = dict(ev)
    ev.pop("time.observation", None)
    print(json.dumps(ev, sort_keys=True, ensure_ascii=False))
'''


def ensure_intelmq(venv: Path) -> Path:
    """The venv's python, with ``intelmq==3.5.0`` installed first when needed."""
    py = venv / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import intelmq, sys; "
                                         "sys.exit(intelmq.__version__ != '3.5.0')"],
                                        capture_output=True).returncode == 0
    if not ok:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "intelmq==3.5.0"], check=True)
    return py


def run(py: Path, sample: Path, ref: str, params: dict) -> list[str]:
    """IntelMQ's events for ``sample`` as JSON lines (raises on a bot failure)."""
    root = Path(tempfile.mkdtemp(prefix="intelmq-root-"))
    try:
        for sub in ("etc", "var/lib/bots", "var/log", "var/run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, INTELMQ_ROOT_DIR=str(root))
        res = subprocess.run([str(py), "-c", CHILD, str(sample), ref, json.dumps(params)],
                             capture_output=True, text=True, env=env, cwd=root)
        if res.returncode:
            raise RuntimeError(f"IntelMQ failed on {sample}: {res.stderr[-2000:]}")
        return [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Write every ``<sample>.intelmq.jsonl``; print one line per sample."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, default=Path("/tmp/intelmq-venv2"))
    args = ap.parse_args(argv)
    py = ensure_intelmq(args.venv)
    for rel, (ref, params) in SAMPLES.items():
        sample = FEEDS / rel
        events = run(py, sample, ref, params)
        out = sample.with_name(sample.name.rsplit(".", 1)[0] + ".intelmq.jsonl")
        out.write_text("".join(e + "\n" for e in events), encoding="utf-8")
        print(f"{out.relative_to(ROOT)}: {len(events)} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tell an input file's format and parse it: the single entry point for every inbox file.

:func:`detect_format` reads a file as a format only when its first 64 KiB prove it (JSON keys;
header lines, comment banners and the data lines' shape, judged by :mod:`herald.sources.sniffers`);
anything else is refused as an "unsupported or ambiguous feed", naming the formats the file
resembles.  The file name is never evidence.  :func:`parse_any` dispatches to the format's parser.

Format names (``--format`` of ``herald ingest``):

=================  ================================================  ===============================
format             parser                                            report type
=================  ================================================  ===============================
shadowserver       :mod:`herald.sources.shadowserver_csv`            from the file name / --type
abusech_feodo      :mod:`herald.sources.abusech` (CSV, JSON, HTML)   herald_c2_server
spamhaus_drop      :mod:`herald.sources.spamhaus` (text and JSON)    herald_drop_network
spamhaus_asndrop   :mod:`herald.sources.spamhaus` (text and JSON)    herald_drop_asn
spamhaus_cert      :mod:`herald.sources.spamhaus`                    herald_spamhaus_cert
cymru              :mod:`herald.sources.cymru` (both layouts)        herald_cymru_cap
ctip               :mod:`herald.sources.ctip` (Interflow and Azure)  event4_microsoft_sinkhole_http
blocklistde        :mod:`herald.sources.blocklists`                  blocklist
dshield            :mod:`herald.sources.blocklists`                  blocklist
dshield_asn        :mod:`herald.sources.blocklists`                  blocklist
dataplane          :mod:`herald.sources.blocklists`                  blocklist
bambenek           :mod:`herald.sources.blocklists`                  herald_c2_server
intelmq            :mod:`herald.sources.intelmq_json`                by feed.name, else
                                                                     herald_intelmq_event
generic_csv        :mod:`herald.sources.generic_csv` + mapping       the mapping's report_type
zoneh              generic_csv + ``mappings/zoneh.toml``             compromised_website
cert_eu            generic_csv + ``mappings/cert_eu.toml``           herald_intelmq_event
shodan             :mod:`herald.sources.shodan`                      herald_exposed_service
urlhaus            :mod:`herald.sources.urlhaus`                     herald_malware_url
threatfox          :mod:`herald.sources.threatfox`                   herald_threat_ioc
sslbl              :mod:`herald.sources.sslbl`                       herald_c2_server
phishtank          :mod:`herald.sources.phishtank` (JSON and CSV)    herald_phishing_url
openphish          :mod:`herald.sources.openphish` (``--format``     herald_phishing_url
                   only: a bare URL list proves no feed)
turris             :mod:`herald.sources.turris`                      herald_greylist
dshield_domains    :mod:`herald.sources.dshield_domains`             herald_suspicious_domain
=================  ================================================  ===============================

Module names are accepted as aliases (``abusech``, ``spamhaus``, ``blocklists``): the module then
tells the variant itself.  HTML pages other than Feodo Tracker's browse table are recognised and
rejected with an :class:`~herald.errors.InputError` that says so.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from herald.errors import InputError
from herald.sources import abusech, blocklists, ctip, cymru, generic_csv, intelmq_json, shodan, spamhaus
from herald.sources import shadowserver_csv, sniffers
from herald.sources import dshield_domains, openphish, phishtank, sslbl, threatfox, turris, urlhaus
from herald.sources.shadowserver_csv import ParsedFile

#: Every format name :func:`detect_format` can return.
FORMATS = ("shadowserver", "abusech_feodo", "spamhaus_drop", "spamhaus_asndrop", "spamhaus_cert", "cymru",
           "ctip", "blocklistde", "dshield", "dshield_asn", "dataplane", "bambenek", "intelmq", "generic_csv",
           "zoneh", "cert_eu", "shodan", "urlhaus", "threatfox", "sslbl", "phishtank", "openphish", "turris",
           "dshield_domains")

#: Formats whose module's ``parse(path, **opts)`` reads them (added for issue 16).
NEW_PARSERS = {"urlhaus": urlhaus, "threatfox": threatfox, "sslbl": sslbl, "phishtank": phishtank,
               "openphish": openphish, "turris": turris, "dshield_domains": dshield_domains}

#: Accepted by :func:`parse_any` besides :data:`FORMATS`.
ALIASES = {"abusech": "abusech_feodo", "feodo": "abusech_feodo", "spamhaus": "spamhaus",
           "blocklists": "blocklists", "microsoft_ctip": "ctip", "intelmq_json": "intelmq",
           "generic": "generic_csv", "shadowserver_csv": "shadowserver"}

#: Recognised but unsupported (see docs/feeds.md).
UNSUPPORTED = {"html": "HTML pages are not supported (except Feodo Tracker's browse table); "
                       "use the feed's CSV or JSON download"}

_SNIFF = 64 << 10


def _json_keys(text: str) -> set[str]:
    """Keys of the first JSON object of ``text`` (array or JSON lines); empty when unreadable."""
    s = text.lstrip()
    if s.startswith("["):
        s = s[1:].lstrip()
    if not s.startswith("{"):
        return set()
    try:
        obj, _ = json.JSONDecoder().raw_decode(s)
    except ValueError:
        # A sniffed prefix may cut the object: take the keys that are visible.
        return set(re.findall(r'"([^"\\]{1,80})"\s*:', s[:4096]))
    return set(obj) if isinstance(obj, dict) else set()


def _from_json(keys: set[str]) -> list[sniffers.Clue]:
    """Clues from the keys of a JSON document's first record (each key set below proves its format)."""
    def proof(fmt: str, why: str) -> list[sniffers.Clue]:
        return [sniffers.Clue(fmt, True, why)]

    if phishtank.looks_like_json(keys):
        return proof("phishtank", "PhishTank JSON keys 'phish_id', 'phish_detail_url'")
    if "ip_address" in keys and keys & {"malware", "last_online", "as_number"}:
        return proof("abusech_feodo", "Feodo Tracker JSON keys")
    if keys & {"networksourceipv4", "indicatorthreattype", "DataFeed", "DateTimeReceivedUtc"}:
        return proof("ctip", "Microsoft CTIP keys")
    if "cidr" in keys and "sblid" in keys:
        return proof("spamhaus_drop", "Spamhaus DROP JSON keys")
    if "asn" in keys and ({"asname", "rir", "domain"} & keys) and "ip" not in keys:
        return proof("spamhaus_asndrop", "Spamhaus ASN-DROP JSON keys")
    if any(k.startswith(("source.", "time.", "classification.", "feed.")) for k in keys) or \
            {"classification", "time"} <= keys:  # hierarchical IntelMQ output: nested objects
        return proof("intelmq", "IntelMQ field names")
    if {"hash", "ip", "port", "data"} <= keys or "_shodan" in keys:
        return proof("shodan", "Shodan banner keys")
    return []


def _refusal(clues: list[sniffers.Clue]) -> str:
    """The message of an unsupported or ambiguous file, naming what it resembles."""
    proven = [c for c in clues if c.proven]
    if len(proven) > 1:
        what = "its content matches several formats: " + "; ".join(f"{c.fmt} ({c.why})" for c in proven)
    elif clues:
        what = "cannot tell the file's format from its content; it resembles " + \
            "; ".join(f"{c.fmt} ({c.why})" for c in clues)
    else:
        what = "cannot tell the file's format from its content; it resembles no supported format"
    return (f"unsupported or ambiguous feed: {what}; pass --format if you know the format "
            f"(`herald parse --input`; one of {', '.join(FORMATS)}), or --mapping for a generic CSV")


def detect_format(path: str) -> str:
    """The format of ``path``: one of :data:`FORMATS` (or ``html`` for an HTML page that is not
    Feodo Tracker's, which :func:`parse_any` rejects).

    The file's first 64 KiB must *prove* exactly one format (JSON keys, or a text sniffer of
    :mod:`herald.sources.sniffers`: header lines, comment banners together with the data lines'
    shape).  The file name is never evidence.  A ``<stem>.toml`` mapping beside a file that proves
    nothing means ``generic_csv``.

    Raises:
        InputError: the file cannot be read or is empty; or "unsupported or ambiguous feed": no
            format or several are proven (the message lists the formats the file resembles and
            asks for ``--format``).
    """
    path = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF)
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path) from exc
    text = head.decode("utf-8-sig", errors="replace")
    stripped = text.lstrip()
    if not stripped:
        raise InputError("file is empty", path)
    clues = _from_json(_json_keys(stripped)) if stripped[:1] in ("[", "{") else []
    if not clues:
        clues = sniffers.sniff_text(text, truncated=len(head) == _SNIFF)
    proven = {c.fmt for c in clues if c.proven}
    if len(proven) == 1:
        return proven.pop()
    if not proven and Path(path).with_suffix(".toml").exists():
        return "generic_csv"  # a mapping beside the file (generic_csv.parse finds it)
    raise InputError(_refusal(clues), path)


def _preset(name: str) -> Path:
    return Path(str(resources.files("herald.sources").joinpath("mappings", f"{name}.toml")))


def parse_any(path: str, fmt: str | None = None, **opts: Any) -> ParsedFile:
    """Parse ``path`` in format ``fmt`` (detected when ``None``; a ``mapping`` option alone means
    ``generic_csv``).

    Args:
        fmt: a name of :data:`FORMATS` or :data:`ALIASES`.
        opts: passed to the parser: ``registry``, ``report_type`` (Shadowserver, IntelMQ),
            ``mapping`` (generic CSV), ``observed_at`` (lists without times), ``variant``, ``asn``
            (DShield AS details).

    Returns:
        :class:`ParsedFile`: a table of exactly the report type's Arrow schema (plus any extra string
        columns) and the quarantine; ``rows_in == table.num_rows + len(quarantine)``.

    Raises:
        InputError: unreadable, empty or unrecognised file, an unsupported format, or a file the
            parser cannot read at all (with line and field where known).
        ConfigError: an invalid generic-CSV mapping.
    """
    path = str(path)
    if fmt is None:
        fmt = "generic_csv" if opts.get("mapping") else detect_format(path)
    fmt = ALIASES.get(fmt, fmt)
    if fmt in UNSUPPORTED:
        raise InputError(UNSUPPORTED[fmt], path)
    registry = opts.get("registry")
    if fmt == "shadowserver":
        return shadowserver_csv.read_file(path, opts.get("report_type"), registry)
    if fmt == "abusech_feodo":
        return abusech.parse(path, **opts)
    if fmt in ("spamhaus", "spamhaus_drop", "spamhaus_asndrop", "spamhaus_cert"):
        if fmt != "spamhaus" and "variant" not in opts:
            v = spamhaus.detect_variant(path)
            want = {"spamhaus_drop": ("drop", "drop_json"), "spamhaus_asndrop": ("asndrop", "asndrop_json"),
                    "spamhaus_cert": ("cert",)}[fmt]
            opts["variant"] = v if v in want else want[0]
        return spamhaus.parse(path, **opts)
    if fmt == "cymru":
        return cymru.parse(path, **opts)
    if fmt == "ctip":
        return ctip.parse(path, **opts)
    if fmt in ("blocklists", "blocklistde", "dshield", "dshield_asn", "dataplane", "bambenek"):
        if fmt != "blocklists":
            opts.setdefault("variant", fmt)
        return blocklists.parse(path, **opts)
    if fmt == "intelmq":
        return intelmq_json.parse(path, **opts)
    if fmt in ("zoneh", "cert_eu"):
        opts.setdefault("mapping", _preset(fmt))
        return generic_csv.parse(path, **opts)
    if fmt == "generic_csv":
        return generic_csv.parse(path, **opts)
    if fmt == "shodan":
        return shodan.parse(path, **opts)
    if fmt in NEW_PARSERS:
        return NEW_PARSERS[fmt].parse(path, **opts)
    raise InputError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})", path)

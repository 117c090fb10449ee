"""Plain-text block lists: blocklist.de, DataPlane.org, Bambenek C2 IP list; DShield's lists are read
by :mod:`herald.sources.dshield` (variants ``dshield`` and ``dshield_asn`` of this module's :func:`parse`).

Sources and formats (``#`` starts a comment in all):

- blocklist.de (https://lists.blocklist.de/lists/<service>.txt; IntelMQ
  ``intelmq.bots.parsers.blocklistde.parser``): one IP address per line, no comment, no time at all.
  -> ``blocklist``: ip, source ``blocklist.de``, reason <- the list name from the file name
  (``imap.txt`` or ``blocklistde_imap.txt`` -> ``imap``).  Event time: the ``observed_at`` option,
  else the file's modification time (UTC).  A file with comment lines is not a blocklist.de list
  (abuse.ch's legacy IP lists look the same under a banner) and is refused.
- DataPlane.org (https://dataplane.org/*.txt; IntelMQ ``intelmq.bots.parsers.dataplane.parser``):
  ``ASN | ASname | ipaddr | lastseen | category`` or, for ``proto41``, ``ASN | ASname | ipaddr |
  firstseen | lastseen | category``; fields separated by ``|`` with at least two spaces on either
  side (the AS name may itself contain `` | ``).  -> ``blocklist``: asn (``NA`` -> null), ip,
  timestamp <- lastseen (UTC), reason <- category, source ``dataplane.org``, and the extra string
  columns ``first_seen`` (empty for five-field lines) and ``as_name`` (``NA`` -> empty).
- Bambenek C2 IP master list (``c2-ipmasterlist.txt``; IntelMQ ``intelmq.bots.parsers.bambenek.parser``):
  ``ip,description,YYYY-MM-DD HH:MM,manual URL`` (times in UTC per the banner).
  -> ``herald_c2_server``: ip, timestamp, family <- the manual URL's file name (``.../bebloh.txt`` ->
  ``bebloh``; ``cl`` -> ``cryptolocker`` and the other names of :data:`BAMBENEK_FAMILIES`, as IntelMQ),
  detail <- description, source_url <- URL, status ``online`` (the banner: "known, active and
  non-sinkholed C&Cs"; IntelMQ sets the same), source ``bambenek``.

These are line formats with per-feed quirks, so they are read line by line in Python.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import dshield, feed_files, feed_table, sniffers, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

VARIANTS = ("blocklistde", "dshield", "dshield_asn", "dataplane", "bambenek")

#: Bambenek manual-page names that are not the family's name (IntelMQ's ``MALWARE_NAME_MAP``).
BAMBENEK_FAMILIES = {"cl": "cryptolocker", "p2pgoz": "p2p goz", "ptgoz": "pt goz", "volatile": "volatile cedar"}

_DP_SPLIT = re.compile(r"\s{2,}\|\s{2,}")
_DP_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def detect_variant(path: str, lines: list[str] | None = None) -> str | None:
    """Which list ``path`` holds (one of :data:`VARIANTS`), when its content proves it
    (:mod:`herald.sources.sniffers`); ``None`` otherwise.  The file name is not evidence."""
    lines = lines if lines is not None else feed_files.read_lines(path, allow_empty=True)
    proven = {c.fmt for c in sniffers.sniff_text("\n".join(lines[:400]) + "\n") if c.proven}
    found = proven & set(VARIANTS)
    return found.pop() if len(found) == 1 and len(proven) == 1 else None


def parse(path: str, *, registry: Registry | None = None, variant: str | None = None,
          observed_at=None, list_name: str | None = None, asn: int | str | None = None,
          **_opts) -> ParsedFile:
    """Parse one of the block lists (``variant`` from :func:`detect_variant` unless given).

    Args:
        observed_at: event time (``datetime``/text, UTC) for lists without one (blocklist.de; DShield
            without an ``updated`` line).
        list_name: blocklist.de list name, default from the file name.
        asn: the AS of a DShield AS details list (its URL's ``?as=``).

    Returns:
        :class:`ParsedFile` of ``blocklist`` (``herald_c2_server`` for Bambenek).

    Raises:
        InputError: unreadable or empty file, a list of unknown kind, or a file that is not the
            variant asked for (a blocklist.de list with comment lines, a DShield file that is not a
            block list).
    """
    path = str(path)
    lines = feed_files.read_lines(path)
    variant = variant or detect_variant(path, lines)
    if variant == "blocklistde":
        return _blocklistde(path, lines, registry, observed_at, list_name)
    if variant == "dshield":
        return dshield.parse_block(path, lines, registry=registry, observed_at=observed_at)
    if variant == "dshield_asn":
        return dshield.parse_asn(path, lines, registry=registry, asn=asn)
    if variant == "dataplane":
        return _dataplane(path, lines, registry)
    if variant == "bambenek":
        return _bambenek(path, lines, registry)
    raise InputError(f"not a known block list (expected one of {', '.join(VARIANTS)})", path)


def _time(path: str, observed_at) -> str:
    return timestamps.observed_text(observed_at) if observed_at is not None else feed_files.file_mtime_utc(path)


def _blocklistde(path, lines, registry, observed_at, list_name) -> ParsedFile:
    rtype = feed_table.get_type("blocklist", registry, path)
    for no, line in enumerate(lines, 1):
        if line.strip().startswith("#"):
            raise InputError("not a blocklist.de list: blocklist.de lists have no comment lines "
                             f"(this one has: {line.strip()[:60]!r}; an abuse.ch list?)", path, no)
    rows = text_lists.data_lines(lines)
    n = len(rows)
    name = list_name or re.sub(r"^(blocklist[_-]?de[_-]?)", "", Path(path).stem, flags=re.I)
    cols = {
        "ip": pa.array([t.strip() for _, t in rows], pa.string()),
        "timestamp": feed_table.const(_time(path, observed_at), n),
        "source": feed_table.const("blocklist.de", n),
        "reason": feed_table.const(name, n),
    }
    return feed_table.finish(path, rtype, cols, np.array([no for no, _ in rows], dtype=np.int64),
                        [t for _, t in rows], Quarantine(path))


def _dataplane_fields(text: str) -> list[str] | None:
    """``[asn, asname, ip, first_seen, last_seen, category]`` of a DataPlane line (``first_seen`` empty
    for the five-field layout), or ``None`` when the line has too few fields.  Fields are split at
    ``|`` with two spaces either side; when that does not give five or six, the AS name contains
    `` | ``: the first field is the ASN, the last three (or four, when the two before the category
    are both times) are the rest, and what lies between is the AS name."""
    strict = [p.strip() for p in _DP_SPLIT.split(text.strip())]
    if len(strict) == 5:
        return [*strict[:3], "", *strict[3:]]
    if len(strict) == 6:
        return strict
    loose = [p.strip() for p in text.split("|")]
    six = len(loose) >= 6 and bool(_DP_TIME.match(loose[-3]) and _DP_TIME.match(loose[-2]))
    tail = 4 if six else 3
    if len(loose) < tail + 2:
        return None
    rest = loose[-tail:] if six else [loose[-3], "", *loose[-2:]]
    return [loose[0], "|".join(loose[1:-tail]).strip(), *rest]


def _dataplane(path, lines, registry) -> ParsedFile:
    rtype = feed_table.get_type("blocklist", registry, path)
    q = Quarantine(path)
    cols = {c: [] for c in ("asn", "ip", "timestamp", "reason", "first_seen", "as_name")}
    keep_lines, raws = [], []
    for no, text in text_lists.data_lines(lines):
        parts = _dataplane_fields(text)
        if parts is None:
            q.add(no, None, f"expected 5 or 6 '|'-separated fields, found {text.count('|') + 1}", None, text)
            continue
        asn, asname, ip, first, last, category = parts
        keep_lines.append(no)
        raws.append(text)
        cols["asn"].append("" if asn.upper() == "NA" else asn)
        cols["ip"].append(ip)
        cols["timestamp"].append(last)
        cols["reason"].append(category)
        cols["first_seen"].append(first)
        cols["as_name"].append("" if asname.upper() == "NA" else asname)
    n = len(keep_lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["source"] = feed_table.const("dataplane.org", n)
    # first_seen must be a time when present (a bad one would otherwise pass silently).
    fs = out["first_seen"]
    bad_first = np.array([bool(v) and not _DP_TIME.match(v) for v in cols["first_seen"]], dtype=bool)
    checks = [feed_table.Check(bad_first, "first_seen", "not a time 'YYYY-MM-DD HH:MM:SS'", fs)]
    return feed_table.finish(path, rtype, out, np.array(keep_lines, dtype=np.int64), raws, q,
                             checks=checks, extra_cols=["first_seen", "as_name"])


def _bambenek(path, lines, registry) -> ParsedFile:
    rtype = feed_table.get_type("herald_c2_server", registry, path)
    q = Quarantine(path)
    cols = {c: [] for c in ("ip", "detail", "timestamp", "source_url", "family")}
    keep_lines, raws = [], []
    for no, text in text_lists.data_lines(lines):
        f = [x.strip() for x in text.split(",")]
        if len(f) != 4:
            q.add(no, None, f"expected 4 comma-separated fields, found {len(f)}", None, text)
            continue
        ip, desc, ts, url = f
        keep_lines.append(no)
        raws.append(text)
        # The list gives minutes only ("2016-11-12 18:02").
        if re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", ts):
            ts += ":00"
        page = url.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
        for c, v in (("ip", ip), ("detail", desc), ("timestamp", ts), ("source_url", url),
                     ("family", BAMBENEK_FAMILIES.get(page, page))):
            cols[c].append(v)
    n = len(keep_lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["source"] = feed_table.const("bambenek", n)
    out["status"] = feed_table.const("online", n)  # the list holds active C&Cs (its banner; IntelMQ too)
    return feed_table.finish(path, rtype, out, np.array(keep_lines, dtype=np.int64), raws, q)

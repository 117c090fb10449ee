"""Plain-text block lists: blocklist.de, DShield block list, DataPlane.org, Bambenek C2 IP list.

Sources and formats (``#`` starts a comment in all four):

- blocklist.de (https://lists.blocklist.de/lists/<service>.txt): one IP address per line, no time
  at all.  -> ``blocklist``: ip, source ``blocklist.de``, reason <- the list name from the file name
  (``imap.txt`` or ``blocklistde_imap.txt`` -> ``imap``).  Event time: the ``observed_at`` option,
  else the file's modification time (UTC).
- DShield recommended block list (https://feeds.dshield.org/block.txt): tab-separated
  ``Start End Netblock Attacks Name Country email`` after a header line; ``# updated: <ctime> UTC``
  comment.  -> ``blocklist``: ip <- ``<Start>/<Netblock>`` (a /24 network), geo <- Country,
  reason ``<Attacks> targets scanned (3 days)``, source ``dshield``; time <- ``updated``.
- DataPlane.org (https://dataplane.org/*.txt, for example ``sshpwauth.txt``): ``ASN | ASname | ipaddr
  | lastseen | category``, fields separated by ``|`` with at least two spaces on either side (the AS
  name may itself contain `` | ``).  -> ``blocklist``: asn (``NA`` -> null), ip, timestamp <- lastseen
  (UTC), reason <- category, source ``dataplane.org``.
- Bambenek C2 IP master list (``c2-ipmasterlist.txt``): ``ip,description,YYYY-MM-DD HH:MM,manual URL``
  (times in UTC per the banner). -> ``herald_c2_server``: ip, timestamp, family <- the name in
  ``IP used by <family> C&C``, detail <- description, source_url <- URL, source ``bambenek``.

These are line formats with per-feed quirks, so they are read line by line in Python.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

VARIANTS = ("blocklistde", "dshield", "dataplane", "bambenek")

_DP_SPLIT = re.compile(r"\s{2,}\|\s{2,}")
_BAMBENEK_FAMILY = re.compile(r"^IP used by (?P<family>.+?) C&C\s*$", re.I)


def detect_variant(path: str, lines: list[str] | None = None) -> str | None:
    """Which list ``path`` holds (one of :data:`VARIANTS`), from its banner or first data line;
    ``None`` when nothing matches."""
    lines = lines if lines is not None else feed_files.read_lines(path, allow_empty=True)
    head = "\n".join(lines[:80]).lower()
    if "bambenek" in head:
        return "bambenek"
    if "dshield" in head:
        return "dshield"
    if "dataplane" in head:
        return "dataplane"
    for _, line in text_lists.data_lines(lines):
        s = line.strip()
        if s.startswith("Start\t"):
            return "dshield"
        if _DP_SPLIT.search(s):
            return "dataplane"
        if s.count(",") == 3:
            return "bambenek"
        if re.fullmatch(r"[0-9A-Fa-f:.]+", s):
            return "blocklistde"
        break
    name = Path(path).name.lower()
    for v in VARIANTS:
        if v in name.replace("_", "").replace("-", ""):
            return v
    return None


def parse(path: str, *, registry: Registry | None = None, variant: str | None = None,
          observed_at=None, list_name: str | None = None, **_opts) -> ParsedFile:
    """Parse one of the block lists (``variant`` from :func:`detect_variant` unless given).

    Args:
        observed_at: event time (``datetime``/text, UTC) for lists without one (blocklist.de; DShield
            without an ``updated`` line).
        list_name: blocklist.de list name, default from the file name.

    Raises:
        InputError: unreadable or empty file, or a list of unknown kind.
    """
    path = str(path)
    lines = feed_files.read_lines(path)
    variant = variant or detect_variant(path, lines)
    if variant == "blocklistde":
        return _blocklistde(path, lines, registry, observed_at, list_name)
    if variant == "dshield":
        return _dshield(path, lines, registry, observed_at)
    if variant == "dataplane":
        return _dataplane(path, lines, registry)
    if variant == "bambenek":
        return _bambenek(path, lines, registry)
    raise InputError(f"not a known block list (expected one of {', '.join(VARIANTS)})", path)


def _time(path: str, observed_at) -> str:
    return timestamps.observed_text(observed_at) if observed_at is not None else feed_files.file_mtime_utc(path)


def _blocklistde(path, lines, registry, observed_at, list_name) -> ParsedFile:
    rtype = feed_table.get_type("blocklist", registry, path)
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


def _dshield(path, lines, registry, observed_at) -> ParsedFile:
    rtype = feed_table.get_type("blocklist", registry, path)
    q = Quarantine(path)
    stamp = None
    for no, line in enumerate(lines, 1):
        m = re.match(r"^#\s*updated:\s*(.+?)\s*$", line, re.I)
        if m:
            try:
                stamp = dt.datetime.strptime(m.group(1).replace(" UTC", "").strip(),
                                             "%a %b %d %H:%M:%S %Y").strftime("%Y-%m-%d %H:%M:%S")
            except ValueError:
                raise InputError(f"'updated' time {m.group(1)!r} is not '<Day> <Mon> DD HH:MM:SS YYYY UTC'",
                                 path, no, "updated") from None
            break
    stamp = stamp or _time(path, observed_at)
    rows = [(no, t) for no, t in text_lists.data_lines(lines) if not t.startswith("Start\t")]
    cols = {c: [] for c in ("ip", "reason", "geo")}
    keep_lines, raws, bad_attacks = [], [], []
    for no, text in rows:
        f = text.split("\t")
        if len(f) < 4:
            q.add(no, None, f"expected 7 tab-separated fields, found {len(f)}", None, text)
            continue
        f += [""] * (7 - len(f))
        start, _end, bits, attacks = (x.strip() for x in f[:4])
        keep_lines.append(no)
        raws.append(text)
        cols["ip"].append(f"{start}/{bits}" if start and bits else start)
        cols["geo"].append(f[5].strip().upper())
        cols["reason"].append(f"{attacks} targets scanned (3 days)")
        bad_attacks.append(not attacks.isdigit())
    n = len(keep_lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["timestamp"] = feed_table.const(stamp, n)
    out["source"] = feed_table.const("dshield", n)
    checks = [feed_table.Check(np.array(bad_attacks, dtype=bool), "Attacks", "not an integer count",
                          pa.array([r.split("\t")[3] if r.count("\t") >= 3 else "" for r in raws]))]
    return feed_table.finish(path, rtype, out, np.array(keep_lines, dtype=np.int64), raws, q,
                        address="network", checks=checks)


def _dataplane(path, lines, registry) -> ParsedFile:
    rtype = feed_table.get_type("blocklist", registry, path)
    q = Quarantine(path)
    cols = {c: [] for c in ("asn", "ip", "timestamp", "reason")}
    keep_lines, raws = [], []
    for no, text in text_lists.data_lines(lines):
        parts = [p.strip() for p in _DP_SPLIT.split(text.strip())]
        if len(parts) != 5:
            # The AS name may contain " | ": take the first field and the last three.
            loose = [p.strip() for p in text.split("|")]
            if len(loose) < 5:
                q.add(no, None, f"expected 5 '|'-separated fields, found {len(loose)}", None, text)
                continue
            parts = [loose[0], "|".join(loose[1:-3]), *loose[-3:]]
        asn, _asname, ip, ts, category = parts
        keep_lines.append(no)
        raws.append(text)
        cols["asn"].append("" if asn.upper() == "NA" else asn)
        cols["ip"].append(ip)
        cols["timestamp"].append(ts)
        cols["reason"].append(category)
    n = len(keep_lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["source"] = feed_table.const("dataplane.org", n)
    return feed_table.finish(path, rtype, out, np.array(keep_lines, dtype=np.int64), raws, q)


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
        m = _BAMBENEK_FAMILY.match(desc)
        for c, v in (("ip", ip), ("detail", desc), ("timestamp", ts), ("source_url", url),
                     ("family", m["family"] if m else "")):
            cols[c].append(v)
    n = len(keep_lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["source"] = feed_table.const("bambenek", n)
    return feed_table.finish(path, rtype, out, np.array(keep_lines, dtype=np.int64), raws, q)

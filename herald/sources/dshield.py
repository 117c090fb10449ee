"""DShield (SANS Internet Storm Center) lists: the recommended block list and the AS details list.

Sources and formats (``#`` starts a comment in both):

- Block list (https://feeds.dshield.org/block.txt; IntelMQ ``intelmq.bots.parsers.dshield.parser_block``):
  tab-separated ``Start End Netblock Attacks Name Country email`` after a header line ``Start<TAB>End
  <TAB>Netblock...``; ``# updated: <ctime> UTC`` comment.  -> ``blocklist``: ip <- ``<Start>/<Netblock>``
  (a /24 network), geo <- Country, reason ``<Attacks> targets scanned (3 days)``, source ``dshield``,
  extra string columns network_name <- Name, abuse_contact <- email; time <- ``updated``.
- AS details (https://dshield.org/asdetailsascii.html?as=<ASN>; IntelMQ
  ``intelmq.bots.parsers.dshield.parser_asn``): tab-separated ``source IP, Reports, Targets, First
  Seen, Last Seen, Updated`` (the banner says so), the address zero-padded to three digits per
  octet.  -> ``blocklist``: ip, timestamp <- Updated (UTC), asn <- the ``asn`` option (the file does
  not name its AS; IntelMQ takes it from the download URL's ``?as=``), reason ``<Reports> reports,
  <Targets> targets, last seen <Last Seen>``, source ``dshield``.

Zero-padded octets (``109.230.155.061``) are read as decimal (``109.230.155.61``), as IntelMQ does.
This holds for DShield only: DShield documents the padding ("Source IP is 0 padded so each byte is
three digits long"); everywhere else Herald rejects leading zeros (they are octal to some readers).
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pyarrow as pa

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

_PADDED = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def unpad_ipv4(text: str) -> str:
    """``text`` with DShield's zero padding removed from each octet (``109.230.155.061`` ->
    ``109.230.155.61``); any other text unchanged (an octet over 255 stays, to be rejected)."""
    s = text.strip()
    if not _PADDED.match(s):
        return text
    parts = [int(x) for x in s.split(".")]
    return ".".join(map(str, parts)) if max(parts) <= 255 else text


def _time(path: str, observed_at) -> str:
    return timestamps.observed_text(observed_at) if observed_at is not None else feed_files.file_mtime_utc(path)


def parse_block(path: str, lines: list[str], *, registry: Registry | None = None,
                observed_at=None) -> ParsedFile:
    """Parse DShield's ``block.txt`` (see the module docstring) into ``blocklist``.

    Args:
        lines: the file's lines (:func:`herald.sources.feed_files.read_lines`).
        observed_at: event time when the file has no ``# updated:`` comment.

    Raises:
        InputError: the ``updated`` time is malformed; or the file has neither the ``Start<TAB>End``
            header nor any tab-separated line (not a block list: the suspicious-domains lists, for
            example).
    """
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
    data = text_lists.data_lines(lines)
    if not any(t.startswith("Start\t") or t.count("\t") >= 3 for _, t in data):
        raise InputError("not DShield's block list: no 'Start<TAB>End<TAB>Netblock' header and no "
                         "tab-separated line (a DShield suspicious-domains list?)", path)
    stamp = stamp or _time(path, observed_at)
    rows = [(no, t) for no, t in data if not t.startswith("Start\t")]
    cols = {c: [] for c in ("ip", "reason", "geo", "network_name", "abuse_contact")}
    keep_lines, raws, bad_attacks = [], [], []
    for no, text in rows:
        f = text.split("\t")
        if len(f) < 4:
            q.add(no, None, f"expected 7 tab-separated fields, found {len(f)}", None, text)
            continue
        f += [""] * (7 - len(f))
        start, _end, bits, attacks = (x.strip() for x in f[:4])
        start = unpad_ipv4(start)
        keep_lines.append(no)
        raws.append(text)
        cols["ip"].append(f"{start}/{bits}" if start and bits else start)
        cols["geo"].append(f[5].strip().upper())
        cols["reason"].append(f"{attacks} targets scanned (3 days)")
        cols["network_name"].append(f[4].strip())
        cols["abuse_contact"].append(f[6].strip())
        bad_attacks.append(not attacks.isdigit())
    n = len(keep_lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["timestamp"] = feed_table.const(stamp, n)
    out["source"] = feed_table.const("dshield", n)
    checks = [feed_table.Check(np.array(bad_attacks, dtype=bool), "Attacks", "not an integer count",
                               pa.array([r.split("\t")[3] if r.count("\t") >= 3 else "" for r in raws]))]
    return feed_table.finish(path, rtype, out, np.array(keep_lines, dtype=np.int64), raws, q,
                             address="network", checks=checks, extra_cols=["network_name", "abuse_contact"])


def parse_asn(path: str, lines: list[str], *, registry: Registry | None = None,
              asn: int | str | None = None) -> ParsedFile:
    """Parse DShield's AS details list (``asdetailsascii.html``, see the module docstring) into
    ``blocklist``.

    Every data line is accounted for: lines without six tab-separated fields are quarantined
    (``expected 6 tab-separated fields``; IntelMQ skips them silently), as are non-integer
    ``Reports``/``Targets`` and bad addresses or times.

    Args:
        asn: the AS the list was downloaded for (``?as=`` of its URL); ``None`` leaves ``asn`` null.
    """
    rtype = feed_table.get_type("blocklist", registry, path)
    q = Quarantine(path)
    cols = {c: [] for c in ("ip", "timestamp", "reason")}
    keep_lines, raws, bad_counts, counts = [], [], [], []
    for no, text in text_lists.data_lines(lines):
        f = text.split("\t")
        if len(f) < 6:
            q.add(no, None, f"expected 6 tab-separated fields, found {len(f)}", None, text)
            continue
        ip, reports, targets, _first, last, updated = (x.strip() for x in f[:6])
        keep_lines.append(no)
        raws.append(text)
        cols["ip"].append(unpad_ipv4(ip))
        cols["timestamp"].append(updated)
        cols["reason"].append(f"{reports} reports, {targets} targets, last seen {last}")
        bad_counts.append(not (reports.isdigit() and targets.isdigit()))
        counts.append(f"{reports}\t{targets}")
    n = len(keep_lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["source"] = feed_table.const("dshield", n)
    out["asn"] = feed_table.const("" if asn is None else str(asn), n)
    checks = [feed_table.Check(np.array(bad_counts, dtype=bool), "Reports", "Reports and Targets must be "
                               "integer counts", pa.array(counts, pa.string()))]
    return feed_table.finish(path, rtype, out, np.array(keep_lines, dtype=np.int64), raws, q, checks=checks)

"""SANS ISC / DShield suspicious domain lists into ``herald_suspicious_domain``.

Source: https://isc.sans.edu/suspicious_domains.html (``https://isc.sans.edu/feeds/
suspiciousdomains_High.txt``, ``_Medium.txt``, ``_Low.txt``).  IntelMQ 3.5.0 has no parser for them
(IntelMQ 2.x's ``intelmq.bots.parsers.dshield.parser_domain`` was removed), so there is no
conformance test.

Layout: a ``#`` comment banner (after a blank line) naming the "DShield.org Suspicious Domain List",
with the sensitivity level (``High Level Sensitivity``) and ``# updated: <Day> <Mon> DD HH:MM:SS YYYY
UTC``; the header line ``Site``; one domain per line followed by a tab ("tab delimited", one column);
a ``#`` statistics trailer.

Detection (:func:`looks_like`): the banner says "suspicious domain" and the first data line is
``Site``.

Mapping: hostname <- the domain (lower case, final dot removed), tag <- the sensitivity
(``high``, ``medium``, ``low``; empty when the banner does not say), source = ``dshield``,
timestamp <- the ``updated`` time, else the ``observed_at`` option, else the file's modification
time (UTC).  ``ip`` stays null: the list routes by the recipients' ``domains`` filters only.

Quarantined: lines that are not a DNS name.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_suspicious_domain"

_LEVEL = re.compile(r"\b(high|medium|low)\s+level\s+sensitivity", re.I)
_UPDATED = re.compile(r"^#\s*updated:\s*(.+?)\s*$", re.I)


def looks_like(head: str) -> bool:
    """Whether ``head`` (the first lines of a file) is a suspicious domain list: a comment line
    says "suspicious domain" and the first data line is ``Site``."""
    lines = head.splitlines()[:60]
    rows = text_lists.data_lines(lines)
    banner = " ".join(ln.lower() for ln in lines if ln.lstrip().startswith("#"))
    return "suspicious domain" in banner and bool(rows) and rows[0][1].strip().lower() == "site"


def parse(path: str, *, registry: Registry | None = None, observed_at=None, **_opts) -> ParsedFile:
    """Parse a suspicious domain list (see the module docstring).

    Returns:
        :class:`ParsedFile` of ``herald_suspicious_domain``.

    Raises:
        InputError: unreadable or empty file, an ``updated`` time that is not
            ``<Day> <Mon> DD HH:MM:SS YYYY [UTC]`` (its line, field ``updated``).
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    lines = feed_files.read_lines(path)
    stamp, level = None, ""
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("#"):
            break
        m = _LEVEL.search(line)
        if m and not level:
            level = m.group(1).lower()
        m = _UPDATED.match(line.strip())
        if m and stamp is None:
            text = " ".join(m.group(1).replace(" UTC", "").split())
            try:
                stamp = dt.datetime.strptime(text, "%a %b %d %H:%M:%S %Y").strftime("%Y-%m-%d %H:%M:%S")
            except ValueError:
                raise InputError(f"'updated' time {m.group(1)!r} is not '<Day> <Mon> DD HH:MM:SS YYYY UTC'",
                                 path, no, "updated") from None
    if stamp is None:
        stamp = timestamps.observed_text(observed_at) if observed_at is not None else \
            feed_files.file_mtime_utc(path)
    rows = text_lists.data_lines(lines)
    header = []
    if rows and rows[0][1].strip().lower() == "site":
        header = [rows.pop(0)[1].strip()]
    n = len(rows)
    # Tab-delimited with one column: the real lists end each domain with a tab.
    host = pc.utf8_lower(pc.utf8_trim_whitespace(pa.array([t.split("\t", 1)[0] for _, t in rows], pa.string())))
    host = pc.replace_substring_regex(host, r"\.$", "")
    bad = ~feed_table.is_valid_hostname(host) | pc.equal(pc.utf8_length(host), 0).to_numpy(zero_copy_only=False)
    cols = {"timestamp": feed_table.const(stamp, n), "hostname": host, "tag": feed_table.const(level, n),
            "source": feed_table.const("dshield", n)}
    return feed_table.finish(path, rtype, cols, np.array([no for no, _ in rows], dtype=np.int64),
                             [t for _, t in rows], Quarantine(path), address="optional",
                             checks=[feed_table.Check(bad, "Site", "not a domain name", host)], header=header)

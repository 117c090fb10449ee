"""abuse.ch SSL Blacklist (SSLBL) botnet C2 IP list into ``herald_c2_server``.

Source: https://sslbl.abuse.ch/blacklist/ (``sslipblacklist.csv``; the ``_aggressive`` variant has
the same layout).  IntelMQ 3.5.0 has no parser for it, so there is no conformance test.

Layout: a ``#`` banner, the commented header ``# Firstseen,DstIP,DstPort`` (exactly these three
columns: Feodo Tracker's old list had five, ``Firstseen,DstIP,DstPort,LastOnline,Malware``), one
unquoted record per line, and possibly a ``# END <n> entries`` trailer (checked when present: a
different number of records means a damaged download).

Mapping: first_seen <- Firstseen, ip <- DstIP, port <- DstPort, timestamp <- Firstseen (UTC; the
list has no last-seen time), source = ``sslbl``, source_url = ``https://sslbl.abuse.ch/blacklist/``.
The list names no malware family: ``family`` stays null.

Quarantined: wrong field counts, a missing or bad Firstseen, an invalid address or port.
"""

from __future__ import annotations

import re

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import abusech_csv, feed_files, feed_table
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_c2_server"

#: The list's columns, lower case, in order.
COLUMNS = ("firstseen", "dstip", "dstport")


def looks_like(head: str) -> bool:
    """Whether ``head`` (the first lines of a file) is the SSLBL IP list: the commented header is
    exactly ``Firstseen,DstIP,DstPort``."""
    found = abusech_csv.commented_header(head.splitlines()[:60], "firstseen")
    return found is not None and tuple(found[1]) == COLUMNS


def parse(path: str, *, registry: Registry | None = None, **_opts) -> ParsedFile:
    """Parse the SSLBL IP list (see the module docstring).

    Returns:
        :class:`ParsedFile` of ``herald_c2_server``.

    Raises:
        InputError: unreadable or empty file, no ``# Firstseen,DstIP,DstPort`` header, or an
            ``# END <n> entries`` count that differs from the records (line of the trailer).
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    lines = feed_files.read_lines(path)
    q = Quarantine(path)
    dump = abusech_csv.read_dump(path, lines, "firstseen", COLUMNS, q)
    n = len(dump.lines)
    for no in range(len(lines), 0, -1):
        m = re.match(r"^#\s*END\s+(\d+)\s+entries", lines[no - 1].strip(), re.I)
        if m:
            if int(m.group(1)) != n + len(q):
                raise InputError(f"the file says {m.group(1)} entries but has {n + len(q)} data lines "
                                 "(damaged or edited download)", path, no)
            break
    first = dump.cols["firstseen"]
    cols = {
        "timestamp": first, "first_seen": first, "ip": dump.cols["dstip"], "port": dump.cols["dstport"],
        "source": feed_table.const("sslbl", n),
        "source_url": feed_table.const("https://sslbl.abuse.ch/blacklist/", n),
    }
    checks = [abusech_csv.time_check(first, "Firstseen", required=True)]
    return feed_table.finish(path, rtype, cols, dump.lines, dump.raws, q, checks=checks, header=dump.header)

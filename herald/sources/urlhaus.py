"""abuse.ch URLhaus CSV dump into ``herald_malware_url``.

Source: https://urlhaus.abuse.ch/api/#csv (``https://urlhaus.abuse.ch/downloads/csv_recent/``,
``csv_online``, and the zipped full dump ``csv``; all the same layout).  IntelMQ 3.5.0 has no parser
module for this dump (its ``feeds.yaml`` reads URLhaus's per-country/ASN feeds, another layout, with
``intelmq.bots.parsers.generic.parser_csv``), so there is no conformance test.

Layout: a ``#`` banner naming "abuse.ch URLhaus", the commented header
``# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter`` and one quoted record
per line.  ``last_online`` is empty for URLs never seen online by URLhaus.

Mapping: url, hostname/ip/port <- the URL's host and port (:mod:`herald.sources.urls`: an IP literal
is ``ip``, a name is ``hostname``), status <- url_status, threat, tag <- tags (comma-separated, as
given), first_seen <- dateadded, last_seen <- last_online, reporter, source_id <- id, source_url <-
urlhaus_link, source = ``urlhaus``.  ``timestamp`` is ``max(dateadded, last_online)`` (UTC), the
latest moment the URL is known to be active, as for Feodo Tracker.

Quarantined (file, line, field, reason): records with a wrong number of fields, ``dateadded``
missing or not ``YYYY-MM-DD HH:MM:SS``, a bad ``last_online``, an empty URL or a URL without a host,
a non-numeric port.
"""

from __future__ import annotations

import pyarrow.compute as pc

from herald.schema.registry import Registry
from herald.sources import abusech_csv, feed_files, feed_table, urls
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_malware_url"

#: The first column of the commented header (detection and reading).
HEADER_START = "id,dateadded,url,url_status"


def looks_like(head: str) -> bool:
    """Whether the first lines ``head`` of a file are a URLhaus CSV dump: the commented header
    ``# id,dateadded,url,url_status,...`` (the banner alone does not decide)."""
    for line in head.splitlines()[:40]:
        s = line.strip()
        if s.startswith("#") and s.lstrip("#").strip().replace('"', "").lower().startswith(HEADER_START):
            return True
    return False


def parse(path: str, *, registry: Registry | None = None, **_opts) -> ParsedFile:
    """Parse a URLhaus CSV dump (see the module docstring for layout and mapping).

    Returns:
        :class:`ParsedFile` of ``herald_malware_url``; ``ip`` is null for URLs whose host is a name.

    Raises:
        InputError: unreadable or empty file, no commented header, or header without ``url`` or
            ``dateadded`` (with the header's line and the column).
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    lines = feed_files.read_lines(path)
    q = Quarantine(path)
    dump = abusech_csv.read_dump(path, lines, "id", ("url", "dateadded"), q)
    n = len(dump.lines)
    get = lambda c: feed_table.get(dump.cols, c, n)  # noqa: E731
    url = get("url")
    parts = urls.split_urls(url)
    first, last = get("dateadded"), get("last_online")
    url_empty = pc.equal(pc.utf8_length(url), 0).to_numpy(zero_copy_only=False)
    checks = [
        abusech_csv.time_check(first, "dateadded", required=True),
        abusech_csv.time_check(last, "last_online"),
        feed_table.Check(url_empty, "url", "missing URL", url),
        feed_table.Check(parts.no_host, "url", "URL without a host", url),
    ]
    cols = {
        "timestamp": abusech_csv.latest(first, last),
        "url": url, "hostname": parts.hostname, "ip": parts.ip, "port": parts.port,
        "status": pc.utf8_lower(get("url_status")), "threat": get("threat"), "tag": get("tags"),
        "first_seen": first, "last_seen": last, "reporter": get("reporter"),
        "source_id": get("id"), "source_url": get("urlhaus_link"),
        "source": feed_table.const("urlhaus", n),
    }
    return feed_table.finish(path, rtype, cols, dump.lines, dump.raws, q, address="optional",
                             checks=checks, header=dump.header)

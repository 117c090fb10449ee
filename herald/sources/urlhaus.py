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

The per-TLD/country/ASN feeds (https://urlhaus.abuse.ch/feeds/, ``/feeds/tld/<TLD>/``,
``/feeds/country/<CC>/``, ``/feeds/asn/<ASN>/``) have another layout: the commented header
``# Dateadded (UTC),URL,URL_status,Threat,Host,IPaddress,ASnumber,Country``, unquoted records and a
``# of entries: <n>`` trailer (checked when present).  IntelMQ reads them with
``intelmq.bots.parsers.generic.parser_csv`` configured as in its ``feeds.yaml``;
``tests/sources/test_feed_conformance_new.py`` compares Herald with it field by field.  Mapping as above, plus
ip <- IPaddress (the address the host resolved to; else an IP-literal URL host), asn <- ASnumber,
geo <- Country; timestamp and first_seen <- Dateadded (the feed has no last-online time).

Quarantined (file, line, field, reason): records with a wrong number of fields, ``dateadded``
missing or not ``YYYY-MM-DD HH:MM:SS``, a bad ``last_online``, an empty URL or a URL without a host,
a non-numeric port.
"""

from __future__ import annotations

import re

import pyarrow.compute as pc

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import abusech_csv, feed_files, feed_table, urls
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_malware_url"

#: The start of the commented header of the dumps and of the per-TLD/country/ASN feeds.
HEADER_START = "id,dateadded,url,url_status"
FEED_HEADER_START = "dateadded (utc),url,url_status,threat,host,ipaddress"


def looks_like(head: str) -> bool:
    """Whether the first lines ``head`` of a file are a URLhaus CSV dump or feed: the commented
    header ``# id,dateadded,url,url_status,...`` or ``# Dateadded (UTC),URL,URL_status,Threat,Host,
    IPaddress,...`` (the banner alone does not decide)."""
    return _variant(head.splitlines()[:40]) is not None


def _variant(lines: list[str]) -> str | None:
    for line in lines:
        s = line.strip()
        if not s.startswith("#"):
            continue
        h = s.lstrip("#").strip().replace('"', "").lower()
        if h.startswith(HEADER_START):
            return "dump"
        if h.startswith(FEED_HEADER_START):
            return "feed"
    return None


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
    if _variant(lines[:200]) == "feed":
        dump = abusech_csv.read_dump(path, lines, "dateadded (utc)", ("url", "dateadded (utc)"), q)
        _check_entries(path, lines, len(dump.lines) + len(q))
        dump.cols["dateadded"] = dump.cols.pop("dateadded (utc)")
    else:
        dump = abusech_csv.read_dump(path, lines, "id", ("url", "dateadded"), q)
    n = len(dump.lines)
    get = lambda c: feed_table.get(dump.cols, c, n)  # noqa: E731
    url = get("url")
    parts = urls.split_urls(url)
    first, last = get("dateadded"), get("last_online")
    resolved = get("ipaddress")
    url_empty = pc.equal(pc.utf8_length(url), 0).to_numpy(zero_copy_only=False)
    checks = [
        abusech_csv.time_check(first, "dateadded", required=True),
        abusech_csv.time_check(last, "last_online"),
        feed_table.Check(url_empty, "url", "missing URL", url),
        feed_table.Check(parts.no_host, "url", "URL without a host", url),
    ]
    cols = {
        "timestamp": abusech_csv.latest(first, last),
        "url": url, "hostname": parts.hostname, "port": parts.port,
        "ip": pc.if_else(pc.greater(pc.utf8_length(resolved), 0), resolved, parts.ip),
        "asn": get("asnumber"), "geo": pc.utf8_upper(get("country")),
        "status": pc.utf8_lower(get("url_status")), "threat": get("threat"), "tag": get("tags"),
        "first_seen": first, "last_seen": last, "reporter": get("reporter"),
        "source_id": get("id"), "source_url": get("urlhaus_link"),
        "source": feed_table.const("urlhaus", n),
    }
    return feed_table.finish(path, rtype, cols, dump.lines, dump.raws, q, address="optional",
                             checks=checks, header=dump.header)


def _check_entries(path: str, lines: list[str], records: int) -> None:
    """``# of entries: <n>`` closes a complete feed download; a different count is a damaged file."""
    for no in range(len(lines), 0, -1):
        m = re.match(r"^#\s*of entries:\s*(\d+)", lines[no - 1].strip(), re.I)
        if m:
            if int(m.group(1)) != records:
                raise InputError(f"the file says {m.group(1)} entries but has {records} data lines "
                                 "(damaged or edited download)", path, no)
            return

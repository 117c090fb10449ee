"""OpenPhish community feed (a plain list of phishing URLs) into ``herald_phishing_url``.

Source: https://openphish.com/phishing_feeds.html (``https://openphish.com/feed.txt``, the free
community feed): one URL per line, nothing else: no header, no comments, no times.  IntelMQ parser:
``intelmq.bots.parsers.openphish.parser`` (``tests/sources/test_feed_conformance_new.py`` compares Herald with
it field by field).

Detection: none.  A bare list of URLs proves no feed (any URL list has this layout, and the feed has
no banner or header), so :func:`herald.sources.detect.detect_format` refuses it, naming ``openphish``
as a resemblance (:func:`herald.sources.sniffers.url_list`); read it with ``--format openphish``.
:func:`looks_like` (every non-blank line an ``http://`` or ``https://`` URL without white space)
tells whether a file has the layout.  Any plain URL list read this way has the ``source`` column
``openphish`` unless the ``source`` option names another list.

Mapping: url <- the line, hostname/ip/port <- its host and port (:mod:`herald.sources.urls`), status
= ``online`` (the feed lists active phish), source = ``openphish``.  timestamp <- the
``observed_at`` option, else the file's modification time (UTC): the feed carries no time.

Quarantined: lines that are not a URL with a host (reason says which), a bad port.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, text_lists, timestamps, urls
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_phishing_url"

_URL_LINE = re.compile(r"^https?://\S+$", re.I)


def looks_like(head: str) -> bool:
    """Whether the non-blank lines of ``head`` (at most the first 200) are all http(s) URLs (and
    there is at least one)."""
    lines = [ln.strip() for ln in head.splitlines() if ln.strip()]
    if head and not head.endswith("\n") and len(lines) > 1:
        lines = lines[:-1]  # a sniffed prefix may cut the last line
    return bool(lines) and all(_URL_LINE.match(ln) for ln in lines[:200])


def parse(path: str, *, registry: Registry | None = None, observed_at=None, source: str | None = None,
          **_opts) -> ParsedFile:
    """Parse an OpenPhish feed file (see the module docstring).

    Args:
        observed_at: event time (``datetime`` or ``YYYY-MM-DD[ HH:MM:SS]`` text, UTC); default the
            file's modification time.
        source: the ``source`` column (default ``openphish``).

    Returns:
        :class:`ParsedFile` of ``herald_phishing_url``.

    Raises:
        InputError: unreadable or empty file, a bad ``observed_at``.
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    # No comment syntax in this feed: a "#" line is not skipped but quarantined as "not a URL".
    rows = text_lists.data_lines(feed_files.read_lines(path), comment="\x00")
    n = len(rows)
    stamp = timestamps.observed_text(observed_at) if observed_at is not None else feed_files.file_mtime_utc(path)
    url = pc.utf8_trim_whitespace(pa.array([t for _, t in rows], pa.string()))
    parts = urls.split_urls(url)
    not_url = ~pc.match_substring_regex(url, _URL_LINE.pattern, ignore_case=True).to_numpy(zero_copy_only=False)
    checks = [feed_table.Check(not_url, "url", "not an http(s) URL", url),
              feed_table.Check(parts.no_host, "url", "URL without a host", url)]
    cols = {"timestamp": feed_table.const(stamp, n), "url": url, "hostname": parts.hostname, "ip": parts.ip,
            "port": parts.port, "status": feed_table.const("online", n),
            "source": feed_table.const(source or "openphish", n)}
    return feed_table.finish(path, rtype, cols, np.array([no for no, _ in rows], dtype=np.int64),
                             [t for _, t in rows], Quarantine(path), address="optional", checks=checks)

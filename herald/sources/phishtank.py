"""PhishTank's verified-online phishing list, JSON or CSV, into ``herald_phishing_url``.

Source: https://phishtank.org/developer_info.php (``online-valid.json``, ``online-valid.csv``;
``.json.gz``/``.csv.gz`` decompressed first).  IntelMQ parser: ``intelmq.bots.parsers.phishtank.parser``
(JSON only); ``tests/sources/test_feed_conformance_new.py`` compares Herald with it field by field.

- JSON: an array of objects with ``phish_id``, ``url``, ``phish_detail_url``, ``submission_time``,
  ``verified``, ``verification_time``, ``online``, ``target`` and ``details``, a list of objects with
  ``ip_address``, ``cidr_block``, ``announcing_network``, ``rir``, ``country``, ``detail_time``.
- CSV: header ``phish_id,url,phish_detail_url,submission_time,verified,verification_time,online,target``
  (no details), RFC 4180 quoting.

Mapping: url, hostname/port <- the URL (:mod:`herald.sources.urls`), ip <- ``details[0].ip_address``
when present (the address PhishTank resolved, as IntelMQ's ``source.ip``), else the URL's host when it
is an IP literal; network <- ``details[0].cidr_block``, asn <- ``details[0].announcing_network``, geo <-
``details[0].country`` (the first detail only, as IntelMQ); timestamp <- submission_time (ISO 8601
with offset, converted to UTC); verification_time (as given when in UTC, as PhishTank writes it and
IntelMQ keeps it; other offsets converted to UTC text), verified, status = ``online`` when
``online`` is ``yes`` (the list holds online phish only), target, source_id <- phish_id, source_url <-
phish_detail_url, source = ``phishtank``.

Quarantined (file, line, field, reason): non-objects, a missing or bad submission time, an empty URL
or one without a host, an invalid details address, wrong CSV field counts.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from herald.errors import InputError
from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, json_records, text_lists, timestamps, urls
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_phishing_url"

#: The CSV export's columns, in order.
CSV_COLUMNS = ("phish_id", "url", "phish_detail_url", "submission_time", "verified", "verification_time",
               "online", "target")

_FIELDS = CSV_COLUMNS
_DETAILS = {"ip_address": "ip", "cidr_block": "network", "announcing_network": "asn", "country": "geo"}


def looks_like_json(keys: set[str]) -> bool:
    """Whether the keys of a JSON file's first object are PhishTank's (``phish_id`` and
    ``phish_detail_url``)."""
    return {"phish_id", "phish_detail_url"} <= keys


def looks_like_csv(head: str) -> bool:
    """Whether the first line of ``head`` is the CSV export's header ``phish_id,url,phish_detail_url,...``."""
    first = head.lstrip("\ufeff").split("\n", 1)[0].strip().replace('"', "").lower()
    return first.startswith("phish_id,url,phish_detail_url")


def parse(path: str, *, registry: Registry | None = None, **_opts) -> ParsedFile:
    """Parse a PhishTank list, JSON or CSV (told by the first non-blank byte).

    Returns:
        :class:`ParsedFile` of ``herald_phishing_url``.

    Raises:
        InputError: unreadable, empty or truncated file (with line), a JSON top level that is not an
            array, a CSV without the ``url`` or ``submission_time`` column.
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    data = feed_files.read_bytes(path)
    text = data.decode("utf-8-sig", errors="replace")
    q = Quarantine(path)
    if text.lstrip()[:1] == "[":
        cols, lines, raws, rows_in, header = _json(path, text, q)
    else:
        cols, lines, raws, rows_in, header = _csv(path, text, q)
    n = len(lines)
    url = pc.utf8_trim_whitespace(feed_table.get(cols, "url", n))
    parts = urls.split_urls(url)
    submitted, bad_sub = timestamps.iso_times(feed_table.get(cols, "submission_time", n))
    verified_at, bad_ver = timestamps.iso_times(feed_table.get(cols, "verification_time", n))
    sub_raw = feed_table.get(cols, "submission_time", n)
    missing = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(sub_raw)), 0).to_numpy(zero_copy_only=False)
    detail_ip = pc.utf8_trim_whitespace(feed_table.get(cols, "ip", n))
    has_detail_ip = pc.greater(pc.utf8_length(detail_ip), 0)
    checks = [
        feed_table.Check(pc.equal(pc.utf8_length(url), 0).to_numpy(zero_copy_only=False), "url", "missing URL", url),
        feed_table.Check(parts.no_host, "url", "URL without a host", url),
        feed_table.Check(bad_sub | missing, "submission_time", "missing or not an ISO 8601 time", sub_raw),
        feed_table.Check(bad_ver, "verification_time", "not an ISO 8601 time",
                         feed_table.get(cols, "verification_time", n)),
    ]
    online = pc.utf8_lower(pc.utf8_trim_whitespace(feed_table.get(cols, "online", n)))
    out = {
        "timestamp": submitted, "url": url, "hostname": parts.hostname, "port": parts.port,
        "ip": pc.if_else(has_detail_ip, detail_ip, parts.ip),
        "network": feed_table.get(cols, "network", n), "asn": feed_table.get(cols, "asn", n),
        "geo": pc.utf8_upper(feed_table.get(cols, "geo", n)),
        "target": feed_table.get(cols, "target", n), "verified": feed_table.get(cols, "verified", n),
        "verification_time": verified_at,
        "status": pc.if_else(pc.equal(online, "yes"), "online", pc.if_else(pc.equal(online, "no"), "offline", "")),
        "source_id": feed_table.get(cols, "phish_id", n), "source_url": feed_table.get(cols, "phish_detail_url", n),
        "source": feed_table.const("phishtank", n),
    }
    return feed_table.finish(path, rtype, out, lines, raws, q, address="optional", checks=checks,
                             rows_in=rows_in, header=header)


def _json(path: str, text: str, q: Quarantine):
    recs = json_records.read_json_array(path, text)
    good = np.array([isinstance(r, dict) for r in recs.records], dtype=bool)
    for i in np.flatnonzero(~good):
        q.add(int(recs.lines[i]), None, "expected a JSON object", None, recs.raws[i])
    records = [r for r in recs.records if isinstance(r, dict)]
    cols = {k: json_records.column(records, k) for k in _FIELDS}
    firsts = [(r.get("details") or [{}])[0] if isinstance(r.get("details"), list) else {} for r in records]
    firsts = [d if isinstance(d, dict) else {} for d in firsts]
    for key, col in _DETAILS.items():
        cols[col] = json_records.column(firsts, key)
    raws = [r for r, g in zip(recs.raws, good) if g]
    return cols, recs.lines[good], raws, len(recs.records), None


def _csv(path: str, text: str, q: Quarantine):
    rows = text_lists.data_lines(text.splitlines())
    if not rows:
        raise InputError("file is empty", path)
    hline, htext = rows.pop(0)
    header = [h.strip().strip('"').lower() for h in htext.split(",")]
    for col in ("url", "submission_time"):
        if col not in header:
            raise InputError(f"required column {col!r} is missing from the header", path, hline, col)
    table, raws = text_lists.read_delimited(path, rows, header, q)
    cols = {c: table.column(c).combine_chunks() for c in header}
    return cols, table.column(text_lists.LINE_COL).to_numpy(), raws, None, header

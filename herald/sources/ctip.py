"""Microsoft CTIP (Cyber Threat Intelligence Program) Infected feed into
``event4_microsoft_sinkhole_http``.

Source: Microsoft Digital Crimes Unit's CTIP feed for CERTs and ISPs, in two formats:

- *Interflow* (``microsoft_ctip.txt``): one JSON array of objects with lower-case keys
  (``networksourceipv4``, ``networksourceport``, ``networkdestinationipv4``, ``externalid``,
  ``firstreporteddatetime``, ``tlplevel``, ``confidence``, ``hostname``, ``useragent``, ...).
- *Azure* (``microsoft_ctip_azure.txt``): JSON lines with ``DataFeed``, ``DateTimeReceivedUtc``
  (Windows NT time: 100 ns ticks since 1601-01-01 UTC), ``Malware``, ``ThreatCode``, ``SourceIp``,
  ``SourcePort``, ``DestinationIp``, ``DestinationPort``, nested ``SourceIpInfo``, ``HttpInfo``,
  ``CustomInfo`` and ``Payload``.

The type is Shadowserver's ``event4_microsoft_sinkhole_http``: the same Microsoft sinkhole data that
Shadowserver relays, so recipients see one kind of report whichever way it arrived.  Connection-level
events leave the ``http_*`` columns null.  An IPv6 ``SourceIp`` is kept in ``src_ip`` as well (the
``event4`` name notwithstanding).

Mapping, Interflow: timestamp <- firstreporteddatetime (UTC), src_ip/src_port/src_asn <-
networksource{ipv4,port,asn}, dst_ip/dst_port <- networkdestination{ipv4,port}, dst_hostname <-
hostname, http_agent <- useragent, infection <- externalid, tag <- indicatorthreattype (lower case).
Azure: timestamp <- DateTimeReceivedUtc (the ticks, not the ``...Txt`` text, which can disagree),
src_ip/src_port <- SourceIp/SourcePort, src_asn/src_geo/src_region/src_city <- SourceIpInfo.*,
dst_ip/dst_port <- DestinationIp/DestinationPort, infection <- ThreatCode, family <- Malware,
http_host/http_url/http_agent/http_referer <- HttpInfo.*, tag <- DataFeed.  Both:
public_source = ``microsoft-ctip``; extra columns ``tlp`` (upper case) and ``confidence`` (0-100;
Azure's High/Medium/Low/Informational -> 100/50/20/10, as IntelMQ maps them).  Not kept:
``Payload``, ``CustomInfo``, ``additionalmetadata`` (free-form, often binary), ``TargetIp``
(deprecated by Microsoft).

A ``DestinationIp`` that is not one address (``"192.88.99.209, 192.88.99.209"`` in a real sample) is
kept as given, as the Shadowserver CSV source keeps such values.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, json_records, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

REPORT_TYPE = "event4_microsoft_sinkhole_http"
EXTRA_COLUMNS = ["tlp", "confidence"]

#: Azure ThreatConfidence -> 0-100 (IntelMQ's CTIP parser uses the same scale).
CONFIDENCE = {"high": "100", "medium": "50", "low": "20", "informational": "10"}

_INTERFLOW = {
    "src_ip": "networksourceipv4", "src_port": "networksourceport", "src_asn": "networksourceasn",
    "dst_ip": "networkdestinationipv4", "dst_port": "networkdestinationport",
    "dst_hostname": "hostname", "http_agent": "useragent", "infection": "externalid",
}
_AZURE = {
    "src_ip": "SourceIp", "src_port": "SourcePort", "src_asn": "SourceIpInfo.SourceIpAsnNumber",
    "src_geo": "SourceIpInfo.SourceIpCountryCode", "src_region": "SourceIpInfo.SourceIpRegion",
    "src_city": "SourceIpInfo.SourceIpCity", "dst_ip": "DestinationIp", "dst_port": "DestinationPort",
    "infection": "ThreatCode", "family": "Malware", "http_host": "HttpInfo.HttpHost",
    "http_url": "HttpInfo.HttpRequest", "http_agent": "HttpInfo.HttpUserAgent",
    "http_referer": "HttpInfo.HttpReferrer", "tag": "DataFeed",
}


def parse(path: str, *, registry: Registry | None = None, fmt: str | None = None, **_opts) -> ParsedFile:
    """Parse a CTIP file: Interflow when the first non-blank byte is ``[`` (or ``fmt="interflow"``),
    else Azure JSON lines (``fmt="azure"``).

    Returns:
        :class:`ParsedFile` of ``event4_microsoft_sinkhole_http`` plus string columns ``tlp`` and
        ``confidence``.

    Raises:
        InputError: unreadable or empty file; for Interflow, invalid or truncated JSON (with line).
        Azure lines that are not JSON objects are quarantined instead.
    """
    path = str(path)
    data = feed_files.read_bytes(path)
    if fmt is None:
        fmt = "interflow" if data.lstrip()[:1] == b"[" else "azure"
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    q = Quarantine(path)
    if fmt == "interflow":
        recs = json_records.read_json_array(path, data.decode("utf-8-sig", errors="replace"))
        good = np.array([isinstance(r, dict) for r in recs.records], dtype=bool)
        for i in np.flatnonzero(~good):
            q.add(int(recs.lines[i]), None, "expected a JSON object", None, recs.raws[i])
        records = [r for r, g in zip(recs.records, good) if g]
        lines, raws = recs.lines[good], [r for r, g in zip(recs.raws, good) if g]
        n = len(records)
        out = {col: json_records.column(records, key) for col, key in _INTERFLOW.items()}
        ts = json_records.column(records, "firstreporteddatetime")
        out["timestamp"] = ts
        out["tag"] = pc.utf8_lower(json_records.column(records, "indicatorthreattype"))
        out["tlp"] = pc.utf8_upper(json_records.column(records, "tlplevel"))
        out["confidence"] = json_records.column(records, "confidence")
        checks = []
        rows_in = len(recs.records)
    else:
        cols, lines, raws = json_records.json_lines_columns(path, data, q)
        n = len(lines)
        out = {col: feed_table.get(cols, key, n) for col, key in _AZURE.items()}
        ts, bad = timestamps.nt_time(feed_table.get(cols, "DateTimeReceivedUtc", n))
        out["timestamp"] = pc.fill_null(ts, "")
        out["tlp"] = pc.utf8_upper(feed_table.get(cols, "TLP", n))
        conf = pc.utf8_lower(pc.fill_null(feed_table.get(cols, "ThreatConfidence", n), ""))
        mapped = conf
        for word, num in CONFIDENCE.items():
            mapped = pc.if_else(pc.equal(conf, word), num, mapped)
        out["confidence"] = mapped
        checks = [feed_table.Check(bad, "DateTimeReceivedUtc", "not a Windows NT time (100 ns ticks since 1601)",
                              feed_table.get(cols, "DateTimeReceivedUtc", n))]
        rows_in = None
    out["public_source"] = feed_table.const("microsoft-ctip", n)
    return feed_table.finish(path, rtype, out, lines, raws, q, checks=checks, extra_cols=EXTRA_COLUMNS,
                        rows_in=rows_in)

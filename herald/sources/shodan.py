"""Shodan stream / search banners (JSON lines) into ``herald_exposed_service``.

Source: Shodan's streaming and download APIs, one banner per line
(https://developer.shodan.io/api/banner-specification): ``ip_str``, ``port``, ``transport``,
``timestamp`` (UTC, ISO 8601 without offset), ``asn`` (``AS64496``), ``hostnames`` (list), ``org``,
``isp``, ``location`` (``country_code``, ``region_code``, ``city``), ``product``, ``version``,
``cpe`` (list), ``vulns`` (object keyed by CVE id), ``tags`` (list), ``_shodan.module`` and one
object per module (``ftp``, ``http``, ``ldap``, ...).

Mapping: ip <- ip_str, port, protocol <- transport, timestamp, asn, geo/region/city <- location,
hostname <- first of hostnames, org, isp, application <- ``_shodan.module`` (``ftp``,
``http-simple-new``, ``ike``, ...), product, version, cpe <- cpe joined by ``;``, vulns <- CVE ids
(sorted) joined by ``;``, tag <- tags (``vpn``, ``cloud``) joined by ``;``, source = ``shodan``.  The banner text (``data``) and the
module objects are not kept: they are large and per-module, and a report lists services, not banners.

Banners differ in shape from module to module (a key holds a string in one and a list in the next),
so lines are decoded one by one with :mod:`json` rather than Arrow's JSON reader.
"""

from __future__ import annotations

import pyarrow as pa

from herald.schema.registry import Registry
from herald.sources import feed_table
from herald.sources.json_records import read_json_lines, to_text
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

REPORT_TYPE = "herald_exposed_service"


def _first(v) -> str:
    return to_text(v[0]) if isinstance(v, list) and v else ""


def _joined(v) -> str:
    if isinstance(v, dict):
        v = sorted(v)
    if isinstance(v, list):
        return ";".join(to_text(x) for x in v)
    return to_text(v)


def parse(path: str, *, registry: Registry | None = None, **_opts) -> ParsedFile:
    """Parse a file of Shodan banners (see the module docstring).

    Returns:
        :class:`ParsedFile` of ``herald_exposed_service``.  Lines that are not JSON objects, and
        banners without a valid ``ip_str`` or ``timestamp``, are quarantined.

    Raises:
        InputError: unreadable or empty file.
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    q = Quarantine(path)
    recs = read_json_lines(path, q)
    cols: dict[str, list[str]] = {c: [] for c in (
        "ip", "port", "protocol", "timestamp", "asn", "geo", "region", "city", "hostname", "org", "isp",
        "application", "product", "version", "cpe", "vulns", "tag")}
    for r in recs.records:
        loc = r.get("location") if isinstance(r.get("location"), dict) else {}
        meta = r.get("_shodan") if isinstance(r.get("_shodan"), dict) else {}
        asn = to_text(r.get("asn"))
        row = {
            "ip": to_text(r.get("ip_str")), "port": to_text(r.get("port")),
            "protocol": to_text(r.get("transport")), "timestamp": to_text(r.get("timestamp")),
            "asn": asn[2:] if asn[:2].upper() == "AS" else asn,
            "geo": to_text(loc.get("country_code")), "region": to_text(loc.get("region_code")),
            "city": to_text(loc.get("city")), "hostname": _first(r.get("hostnames")),
            "org": to_text(r.get("org")), "isp": to_text(r.get("isp")),
            "application": to_text(meta.get("module")), "product": to_text(r.get("product")),
            "version": to_text(r.get("version")), "cpe": _joined(r.get("cpe")),
            "vulns": _joined(r.get("vulns")), "tag": _joined(r.get("tags")),
        }
        for c, v in row.items():
            cols[c].append(v)
    n = len(recs.records)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["source"] = feed_table.const("shodan", n)
    return feed_table.finish(path, rtype, out, recs.lines, recs.raws, q)

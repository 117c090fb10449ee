"""abuse.ch ThreatFox IOC CSV export into ``herald_threat_ioc``.

Source: https://threatfox.abuse.ch/export/ (``https://threatfox.abuse.ch/export/csv/recent/``,
``.../csv/full/`` zipped; same layout).  IntelMQ 3.5.0 has no ThreatFox parser, so there is no
conformance test.

Layout: a ``#`` banner naming "ThreatFox", the commented, quoted header
``# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware","malware_alias",
"malware_printable","last_seen_utc","confidence_level","reference","tags","anonymous","reporter"``,
then records of quoted fields separated by ``", "`` (comma *and space*).  Exports since 2025 add an
``is_compromised`` column (not kept) and write ``None`` for empty values (read as empty).

Mapping by ``ioc_type``:

- ``ip:port``: ip, port <- ``ioc_value`` (``192.0.2.5:443``, ``[2001:db8::1]:443``);
- ``domain``: hostname <- ``ioc_value`` (lower case, final dot removed);
- ``url``: url <- ``ioc_value``; hostname/ip/port <- its host and port (:mod:`herald.sources.urls`).

All types: ioc_type, threat <- threat_type, malware <- fk_malware (Malpedia name), family <-
malware_printable, malware_alias, confidence <- confidence_level, tag <- tags, first_seen <-
first_seen_utc, last_seen <- last_seen_utc, reference, reporter, source_id <- ioc_id, source_url =
``https://threatfox.abuse.ch/ioc/<ioc_id>/``, source = ``threatfox``.  ``timestamp`` is
``max(first_seen_utc, last_seen_utc)`` (UTC).

Quarantined (file, line, field, reason): file-hash IOCs (``md5_hash``, ``sha1_hash``,
``sha256_hash``: they name no network, so no recipient could receive them; the reason says so),
unknown IOC types, ``ip:port`` values that are not an address and a port, URLs without a host, bad
times, wrong field counts.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.schema.registry import Registry
from herald.sources import abusech_csv, feed_files, feed_table, urls
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: The report type this module produces.
REPORT_TYPE = "herald_threat_ioc"

#: IOC types with a network indicator (read) and file hashes (quarantined as not reportable).
NETWORK_TYPES = ("ip:port", "domain", "url")
HASH_TYPES = ("md5_hash", "sha1_hash", "sha256_hash")

_IP_PORT = re.compile(r"^\[?(?P<ip>[0-9A-Fa-f:.]+?)\]?:(?P<port>\d{1,5})$")


def looks_like(head: str) -> bool:
    """Whether ``head`` (the first lines of a file) is a ThreatFox CSV export: the commented header
    starting ``first_seen_utc,ioc_id,ioc_value,ioc_type`` (quotes ignored)."""
    for line in head.splitlines()[:40]:
        s = line.strip()
        if s.startswith("#") and s.lstrip("#").strip().replace('"', "").replace(" ", "").lower() \
                .startswith("first_seen_utc,ioc_id,ioc_value,ioc_type"):
            return True
    return False


def parse(path: str, *, registry: Registry | None = None, **_opts) -> ParsedFile:
    """Parse a ThreatFox CSV export (see the module docstring for layout and mapping).

    Returns:
        :class:`ParsedFile` of ``herald_threat_ioc``: one row per network IOC.

    Raises:
        InputError: unreadable or empty file, no commented header, or a header without
            ``ioc_value``, ``ioc_type`` or ``first_seen_utc`` (header line, column as field).
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    lines = feed_files.read_lines(path)
    q = Quarantine(path)
    dump = abusech_csv.read_dump(path, lines, "first_seen_utc", ("ioc_value", "ioc_type", "first_seen_utc"),
                                 q, spaced=True)
    n = len(dump.lines)
    # ThreatFox writes Python's None for empty values ("None" in malware_alias, reference, tags).
    cols_in = {c: feed_table.null_dashes(v, ("None",)) for c, v in dump.cols.items()}
    get = lambda c: feed_table.get(cols_in, c, n)  # noqa: E731
    value, kind = get("ioc_value"), pc.utf8_lower(get("ioc_type"))
    kinds = kind.to_pylist()
    is_hash = np.array([k in HASH_TYPES for k in kinds], dtype=bool)
    unknown = np.array([k not in NETWORK_TYPES and k not in HASH_TYPES for k in kinds], dtype=bool)
    ip, port, host = [""] * n, [""] * n, [""] * n
    bad_ipport = np.zeros(n, dtype=bool)
    for i, (k, v) in enumerate(zip(kinds, value.to_pylist())):
        if k == "ip:port":
            m = _IP_PORT.match(v)
            if m:
                ip[i], port[i] = m["ip"], m["port"]
            else:
                bad_ipport[i] = True
        elif k == "domain":
            host[i] = v.lower().rstrip(".")
    is_url = pc.equal(kind, "url")
    url = pc.if_else(is_url, value, "")
    parts = urls.split_urls(url)
    first, last = get("first_seen_utc"), get("last_seen_utc")
    checks = [
        feed_table.Check(is_hash, "ioc_type", "file-hash IOC: names no network, so no recipient can "
                         "receive it (not reportable)", kind),
        feed_table.Check(unknown, "ioc_type", f"unknown IOC type (expected one of {', '.join(NETWORK_TYPES)})",
                         kind),
        feed_table.Check(bad_ipport, "ioc_value", "not <ip>:<port>", value),
        feed_table.Check(parts.no_host | (is_url.to_numpy(zero_copy_only=False)
                                          & pc.equal(pc.utf8_length(value), 0).to_numpy(zero_copy_only=False)),
                         "ioc_value", "URL without a host", value),
        feed_table.Check(pc.equal(kind, "domain").to_numpy(zero_copy_only=False)
                         & ~feed_table.is_valid_hostname(pa.array(host, pa.string())),
                         "ioc_value", "not a domain name", value),
        abusech_csv.time_check(first, "first_seen_utc", required=True),
        abusech_csv.time_check(last, "last_seen_utc"),
    ]
    ids = get("ioc_id")
    cols = {
        "timestamp": abusech_csv.latest(first, last),
        "ioc_type": kind,
        "ip": pc.if_else(is_url, parts.ip, pa.array(ip, pa.string())),
        "port": pc.if_else(is_url, parts.port, pa.array(port, pa.string())),
        "hostname": pc.if_else(is_url, parts.hostname, pa.array(host, pa.string())),
        "url": url,
        "threat": get("threat_type"), "malware": get("fk_malware"), "family": get("malware_printable"),
        "malware_alias": get("malware_alias"), "confidence": get("confidence_level"), "tag": get("tags"),
        "first_seen": first, "last_seen": last, "reference": get("reference"), "reporter": get("reporter"),
        "source_id": ids,
        "source_url": pc.if_else(pc.equal(pc.utf8_length(ids), 0), "",
                                 pc.binary_join_element_wise("https://threatfox.abuse.ch/ioc/", ids, "/", "")),
        "source": feed_table.const("threatfox", n),
    }
    return feed_table.finish(path, rtype, cols, dump.lines, dump.raws, q, address="optional",
                             checks=checks, header=dump.header)

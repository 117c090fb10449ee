"""Spamhaus feeds: DROP / EDROP / DROPv6, ASN-DROP (text and JSON) and the CERT Insight Portal CSV.

Sources and formats:

- DROP, EDROP, DROPv6 (https://www.spamhaus.org/drop/drop.txt, ``drop_v6.txt``): ``;`` comment lines,
  one of which is ``; Last-Modified: <RFC 5322 date>``, then ``<CIDR> ; <SBL id>`` per line.
  -> ``herald_drop_network``: ip <- CIDR (the network, as the ``blocklist`` type keeps it),
  sblid, source ``spamhaus-drop`` (``spamhaus-edrop`` when the file name says ``edrop``).
- DROP JSON (``drop_v4.json``, ``drop_v6.json``): one object per line ``{"cidr", "sblid", "rir"}``
  and a final ``{"type": "metadata", "timestamp": <Unix time>, ...}`` line. -> ``herald_drop_network``.
- ASN-DROP text (``asndrop.txt``): ``AS<n> ; <CC> | <AS name>`` (the country may be empty).
  ASN-DROP JSON (``asndrop.json``): ``{"asn", "rir", "domain", "cc", "asname"}`` lines and a metadata
  line. -> ``herald_drop_asn``: asn, geo <- cc, as_name, rir, domain; ``ip`` is null (the list
  names networks by ASN only; such events route by ASN).
- CERT Insight Portal CSV (infected and abusing hosts of a CERT's constituency):
  ``; ip, asn, country, lastseen, botname, domain, remote_ip, remote_port, local_port, protocol``
  header comment, CSV rows, ``; EOF``.  -> ``herald_spamhaus_cert``: src_ip <- ip, src_asn <- asn
  (``AS`` prefix dropped), src_geo <- country, timestamp <- lastseen (Unix time, UTC),
  botname (as given), taxonomy, classification_type, classification_identifier, application,
  description and infection (the malware, where there is one) <- botname by IntelMQ's table
  (:mod:`herald.sources.spamhaus_cert_classes`), domain (as given), dst_hostname <- domain when a
  DNS name, src_url <- a URL in domain or (``l_spamlink``) remote_ip, as IntelMQ, dst_ip <- remote_ip (when an address), dst_port <- remote_port,
  src_port <- local_port, protocol.  ``-`` and ``?`` mean "no value".  ``local_port`` sometimes
  holds ``<ip>:<port>:<tool>`` (``l_spamlink``): the port is taken and the whole value kept in
  ``detail``; a ``remote_ip`` that is not an address (a URL) is kept in ``detail`` too.

Event time of the lists: the ``Last-Modified`` comment (text) or the metadata ``timestamp`` (JSON);
without either, the ``observed_at`` option, else the file's modification time (UTC).
"""

from __future__ import annotations

import email.utils
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError
from herald.ipaddr import parse_ips
from herald.schema.registry import Registry
from herald.sources import feed_files, feed_table, json_records, spamhaus_cert_classes, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: Column names of the CERT feed, in file order (from its header comment).
CERT_COLUMNS = ["ip", "asn", "country", "lastseen", "botname", "domain", "remote_ip", "remote_port",
                "local_port", "protocol"]

_DROP_RE = re.compile(r"^\s*(?P<net>[0-9A-Fa-f:.]+/\d{1,3})\s*(;\s*(?P<sbl>\S+))?\s*$")
_ASN_RE = re.compile(r"^\s*AS(?P<asn>\d+)\s*;\s*(?P<cc>[A-Za-z]{2})?\s*\|\s*(?P<name>.*?)\s*$")


def detect_variant(path: str, data: bytes | None = None) -> str:
    """Which Spamhaus format ``path`` holds: ``drop``, ``drop_json``, ``asndrop``, ``asndrop_json`` or
    ``cert``, from the first data line (file name as a tie-breaker for empty lists)."""
    data = data if data is not None else feed_files.read_bytes(path, allow_empty=True)
    text = data.decode("utf-8-sig", errors="replace")
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith(";"):
            if s.lstrip("; ").lower().startswith("ip, asn, country"):
                return "cert"
            continue
        if s.startswith("{"):
            try:
                obj = json.loads(s)
            except ValueError:
                obj = {}
            return "asndrop_json" if "asn" in obj and "cidr" not in obj else "drop_json"
        if re.match(r"^AS\d+", s):
            return "asndrop"
        if s.count(",") >= 9:
            return "cert"
        return "drop"
    name = Path(path).name.lower()
    if "asndrop" in name:
        return "asndrop_json" if name.endswith(".json") else "asndrop"
    if "cert" in name:
        return "cert"
    return "drop_json" if name.endswith(".json") else "drop"


def parse(path: str, *, registry: Registry | None = None, variant: str | None = None,
          observed_at=None, **_opts) -> ParsedFile:
    """Parse any Spamhaus feed (variant from :func:`detect_variant` unless given).

    Args:
        observed_at: event time (``datetime``/text, UTC) for lists that carry none.

    Raises:
        InputError: unreadable or empty file, an unknown ``variant``, invalid JSON metadata.
    """
    path = str(path)
    data = feed_files.read_bytes(path)
    variant = variant or detect_variant(path, data)
    if variant == "cert":
        return parse_cert(path, registry=registry, _data=data)
    if variant in ("drop", "drop_json", "asndrop", "asndrop_json"):
        return parse_drop(path, registry=registry, variant=variant, observed_at=observed_at, _data=data)
    raise InputError(f"unknown Spamhaus variant {variant!r}", path)


def _fallback_time(path: str, observed_at) -> str:
    return timestamps.observed_text(observed_at) if observed_at is not None else feed_files.file_mtime_utc(path)


def parse_drop(path: str, *, registry: Registry | None = None, variant: str = "drop",
               observed_at=None, _data: bytes | None = None) -> ParsedFile:
    """Parse DROP/EDROP/DROPv6 or ASN-DROP, text or JSON (``variant`` as :func:`detect_variant`).

    Text lines that do not match the list's syntax are quarantined (field ``ip`` or ``asn``,
    reason naming the expected form).

    Returns:
        :class:`ParsedFile` of ``herald_drop_network`` or ``herald_drop_asn``.
    """
    path = str(path)
    data = _data if _data is not None else feed_files.read_bytes(path)
    text = data.decode("utf-8-sig", errors="replace")
    asn_list = variant.startswith("asndrop")
    rtype = feed_table.get_type("herald_drop_asn" if asn_list else "herald_drop_network", registry, path)
    name = Path(path).name.lower()
    source = "spamhaus-asndrop" if asn_list else ("spamhaus-edrop" if "edrop" in name else "spamhaus-drop")
    q = Quarantine(path)
    lines, raws = [], []
    cols: dict[str, list[str]] = {c: [] for c in ("ip", "sblid", "rir", "asn", "geo", "as_name", "domain")}
    stamp = None
    if variant.endswith("_json"):
        recs = json_records.read_json_lines(path, q, text)
        for obj, no, raw in zip(recs.records, recs.lines, recs.raws):
            if obj.get("type") == "metadata":
                if obj.get("timestamp") is not None:
                    ts, bad = timestamps.epoch_seconds(pa.array([json_records.to_text(obj["timestamp"])]))
                    if bad[0]:
                        raise InputError("metadata 'timestamp' is not a Unix time", path, int(no), "timestamp")
                    stamp = ts[0].as_py()
                continue
            lines.append(int(no))
            raws.append(raw)
            cols["ip"].append(json_records.to_text(obj.get("cidr")))
            cols["sblid"].append(json_records.to_text(obj.get("sblid")))
            cols["rir"].append(json_records.to_text(obj.get("rir")))
            cols["asn"].append(json_records.to_text(obj.get("asn")))
            cols["geo"].append(json_records.to_text(obj.get("cc")))
            cols["as_name"].append(json_records.to_text(obj.get("asname")))
            cols["domain"].append(json_records.to_text(obj.get("domain")))
    else:
        for no, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s:
                continue
            if s.startswith(";"):
                body = s.lstrip("; ")
                if body.lower().startswith("last-modified:"):
                    try:
                        when = email.utils.parsedate_to_datetime(body.split(":", 1)[1].strip())
                        stamp = timestamps.observed_text(when)
                    except (TypeError, ValueError):
                        raise InputError("Last-Modified is not an RFC 5322 date", path, no) from None
                continue
            m = (_ASN_RE if asn_list else _DROP_RE).match(s)
            if not m:
                q.add(no, "asn" if asn_list else "ip",
                      "expected 'AS<number> ; <CC> | <name>'" if asn_list else "expected '<CIDR> ; <SBL id>'",
                      s.split(";")[0].strip(), line)
                continue
            lines.append(no)
            raws.append(line)
            for c in cols:
                cols[c].append("")
            if asn_list:
                cols["asn"][-1], cols["geo"][-1], cols["as_name"][-1] = m["asn"], (m["cc"] or "").upper(), m["name"]
            else:
                cols["ip"][-1], cols["sblid"][-1] = m["net"], m["sbl"] or ""
    n = len(lines)
    stamp = stamp or _fallback_time(path, observed_at)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items() if c in rtype.column_types}
    out["timestamp"] = feed_table.const(stamp, n)
    out["source"] = feed_table.const(source, n)
    return feed_table.finish(path, rtype, out, np.asarray(lines, dtype=np.int64), raws, q,
                        address="optional" if asn_list else "network")


def _classes(botname: pa.Array, remote_port: pa.Array, local_port: pa.Array) -> dict[str, pa.Array]:
    """The classification columns of :func:`herald.sources.spamhaus_cert_classes.classify`, per row;
    for ``l_spamlink`` the malware is the last part of ``local_port`` (``<ip>:<port>:<malware>``)."""
    cols: dict[str, list[str]] = {}
    for bot, rport, lport in zip(botname.to_pylist(), remote_port.to_pylist(), local_port.to_pylist()):
        row = spamhaus_cert_classes.classify(bot or "", rport or "")
        if (bot or "").lower() == "l_spamlink" and (lport or "").count(":") == 2:
            row["infection"] = lport.rsplit(":", 1)[1]
        for k, v in row.items():
            cols.setdefault(k, []).append(v)
    return {k: pa.array(v, pa.string()) for k, v in cols.items()} if cols else \
        {k: pa.array([], pa.string()) for k in spamhaus_cert_classes.classify("", "")}


def _c2_names(botname: pa.Array, domain: pa.Array, remote_ip: pa.Array) -> dict[str, pa.Array]:
    """``dst_hostname`` and ``src_url`` as IntelMQ's CERT parser derives them: the C&C ``domain`` is
    the destination host name when it is a DNS name (not an address, no ``:``; not for ``iotscan``,
    whose domain the provider calls wrong); a URL in ``domain`` (an infected host) or in
    ``remote_ip`` (``l_spamlink``) is the source URL."""
    dom = pc.fill_null(domain, "")
    bot = pc.utf8_lower(pc.fill_null(botname, ""))
    is_addr = parse_ips(dom).version > 0
    host = (feed_table.is_valid_hostname(dom) & ~is_addr
            & ~pc.match_substring(dom, ":").to_numpy(zero_copy_only=False)
            & ~pc.equal(bot, "iotscan").to_numpy(zero_copy_only=False)
            & pc.greater(pc.utf8_length(dom), 0).to_numpy(zero_copy_only=False))
    url_re = r"^https?://"
    spam = pc.equal(bot, "l_spamlink")
    rip = pc.fill_null(remote_ip, "")
    src_url = pc.if_else(pc.and_(spam, pc.match_substring_regex(rip, url_re)), rip,
                         pc.if_else(pc.and_(pc.invert(spam), pc.match_substring_regex(dom, url_re)), dom, ""))
    return {"dst_hostname": pc.if_else(pa.array(host), dom, ""), "src_url": src_url}


def parse_cert(path: str, *, registry: Registry | None = None, _data: bytes | None = None) -> ParsedFile:
    """Parse the Spamhaus CERT Insight Portal CSV into ``herald_spamhaus_cert`` (see module docstring).

    Raises:
        InputError: unreadable or empty file.
    """
    path = str(path)
    rtype = feed_table.get_type("herald_spamhaus_cert", registry, path)
    data = _data if _data is not None else feed_files.read_bytes(path)
    lines = data.decode("utf-8-sig", errors="replace").splitlines()
    q = Quarantine(path)
    rows = text_lists.data_lines(lines, comment=";")
    table, raws = text_lists.read_delimited(path, rows, CERT_COLUMNS, q)
    n = table.num_rows
    c = {name: feed_table.null_dashes(table.column(name).combine_chunks()) for name in CERT_COLUMNS}
    ts, bad_ts = timestamps.epoch_seconds(c["lastseen"])
    # local_port is a port, or "<ip>:<port>:<tool>" for spam links (real sample, l_spamlink).
    lp = pc.extract_regex(c["local_port"], r"^(?:[^:]*:)?(?P<port>\d{1,5})(?::.*)?$")
    port = pc.fill_null(pc.struct_field(lp, "port"), "")
    plain = pc.match_substring_regex(c["local_port"], r"^\d+$")
    odd_local = pc.and_(pc.invert(plain), pc.greater(pc.utf8_length(c["local_port"]), 0))
    src_port = pc.if_else(pc.is_valid(pc.struct_field(lp, "port")), port, c["local_port"])
    remote_ok = parse_ips(c["remote_ip"]).version > 0
    remote_odd = pc.and_(pa.array(~remote_ok), pc.greater(pc.utf8_length(c["remote_ip"]), 0))
    # detail: the odd values kept verbatim, "local_port=...;remote_ip=..." (either may be absent).
    part_l = pc.if_else(odd_local, pc.binary_join_element_wise("local_port", c["local_port"], "="), "")
    part_r = pc.if_else(remote_odd, pc.binary_join_element_wise("remote_ip", c["remote_ip"], "="), "")
    both = pc.and_(pc.greater(pc.utf8_length(part_l), 0), pc.greater(pc.utf8_length(part_r), 0))
    detail = pc.if_else(both, pc.binary_join_element_wise(part_l, part_r, ";"),
                        pc.binary_join_element_wise(part_l, part_r, ""))
    out = {
        "timestamp": pc.fill_null(ts, ""),
        "src_ip": c["ip"],
        "src_asn": pc.replace_substring_regex(c["asn"], r"^(?i:AS)", ""),
        "src_geo": pc.utf8_upper(c["country"]),
        "botname": c["botname"],
        "domain": c["domain"],
        "dst_ip": pc.if_else(pa.array(remote_ok), c["remote_ip"], ""),
        "dst_port": c["remote_port"],
        "src_port": src_port,
        "protocol": pc.utf8_lower(c["protocol"]),
        "detail": detail,
        "source": feed_table.const("spamhaus-cert", n),
    }
    out.update(_classes(c["botname"], c["remote_port"], c["local_port"]))
    out.update(_c2_names(c["botname"], c["domain"], c["remote_ip"]))
    checks = [feed_table.Check(bad_ts, "lastseen", "not a Unix time (seconds since 1970-01-01 UTC)",
                               c["lastseen"])]
    lines = table.column(text_lists.LINE_COL).to_numpy()
    return feed_table.finish(path, rtype, out, lines, raws, q, checks=checks)

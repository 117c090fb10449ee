"""Team Cymru CAP (CSIRT Assistance Program) reports into ``herald_cymru_cap``.

Source: Team Cymru's daily CAP files for national CSIRTs (https://www.team-cymru.com/community-services).
Two layouts, both ``|``-separated with ``#`` comments, timestamps in UTC:

- ``cymru_infected_YYYYMMDD.txt`` (old): ``report|ip|asn|timestamp|comments|asn_name``;
  comments like ``srcport 1337 mwtype Conficker destaddr 172.16.0.22`` (space-separated keys).
- ``cymru_certname_YYYYMMDD.txt`` (new): ``category|address|asn|timestamp|optional_information|asninfo``;
  optional information as ``key: value;`` pairs (``family: nivdort;dest_addr: 172.16.0.22; dest_port:
  80;protocol: 6;``) or a bare value (``ssh;``, a phishing URL, ``socks4-61039;``); ``asninfo`` is
  ``<AS name>, <CC>``.

Mapping: category <- report/category (as given: ``bot``, ``bots``, ``darknet``, ...), ip, asn (``0`` ->
null), timestamp, as_name and geo <- asninfo/asn_name (a trailing ``, CC`` is the country),
detail <- the comments/optional information verbatim.  Parsed from the information:
family <- ``family``/``mwtype`` (category ``conficker``: ``conficker``), dst_ip <- ``dest_addr``/
``destaddr``/``dstaddr``, dst_port <- ``dest_port``/``ports_scanned``/``destination_port_numbers``/
``darknet_port``/``honeypot_port`` (a list of ports, ``23, 2323``, gives one event per port, as
IntelMQ's ``intelmq.bots.parsers.cymru.parser_cap_program`` does), port <-
``port``/``srcport`` (or the number of a proxy type ``socks4-61039``), protocol <- ``protocol``
(IANA number: 6 tcp, 17 udp, 1 icmp, else the number), hostname, url (a bare URL), tag <- proxy type
or a bare service word (``ssh``); taxonomy, classification_type, classification_identifier,
application <- the category (and family, service word, proxy type) as IntelMQ classifies them
(:mod:`herald.sources.cymru_classes`); family <- the report for old-layout worm reports
(``blaster``, ``slammer``, ...).  A file mixes categories, so the type is one Herald type with a
``category`` column, not one Shadowserver type per category.

This is an odd text format, so it is read line by line in Python.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.ipaddr import parse_ips
from herald.schema.registry import Registry
from herald.sources import cymru_classes, feed_files, feed_table, text_lists
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

REPORT_TYPE = "herald_cymru_cap"

#: IANA protocol numbers used in CAP files (IANA protocol-numbers registry; IntelMQ's ``PROTOCOL_MAPPING``).
PROTOCOLS = {"1": "icmp", "6": "tcp", "11": "nvp-ii", "17": "udp", "47": "gre", "58": "ipv6-icmp",
             "59": "ipv6-nonxt"}

_OLD_KEYS = ("srcport", "mwtype", "destaddr", "dstaddr", "destport")
_OLD_RE = re.compile(r"\b(" + "|".join(_OLD_KEYS) + r")\s+(.*?)(?=\s+\b(?:" + "|".join(_OLD_KEYS) + r")\s|$)")
_KV_RE = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")
_PROXY_RE = re.compile(r"^(?P<kind>[A-Za-z0-9 ]+?)\s*(?:-(?P<port>\d{1,5})|\((?P<port2>\d{1,5})\))?$")
_CC_RE = re.compile(r"^(?P<name>.*?),\s*(?P<cc>[A-Z]{2})$")
#: Keys of the optional information that hold destination ports (IntelMQ ``parser_cap_program``).
_PORT_KEYS = ("dest_port", "ports_scanned", "destination_port_numbers", "darknet_port", "honeypot_port")
_TOTAL_COUNT = re.compile(r"\s*\(total_count:\d+\)\s*$")


_COLS = ("category", "ip", "asn", "timestamp", "detail", "as_name", "geo", "family", "dst_ip", "dst_port",
         "port", "protocol", "hostname", "url", "tag", "taxonomy", "classification_type",
         "classification_identifier", "application")


def parse_info(info: str) -> dict[str, str]:
    """Fields of a CAP comments / optional-information value (see the module docstring).

    Returns:
        Herald column -> text (only the columns found).  ``dst_port`` may hold several ports
        separated by ``,`` (from the keys of :data:`_PORT_KEYS`); :func:`parse` makes one event of
        each.  Unknown keys are left to ``detail``.
    """
    out: dict[str, str] = {}
    s = info.strip().rstrip(";").strip()
    if not s:
        return out
    if ":" not in s and _OLD_RE.search(s):
        for key, val in _OLD_RE.findall(s):
            # Values run to the next key; trailing words are free text ("destaddr 172.16.0.22 Some
            # Botnet", "mwtype Mirai Mirai Bot"): the first word is the value.
            val = (val.split() or [""])[0]
            if key == "mwtype":
                out["family"] = val
            elif key == "srcport":
                out["port"] = val
            elif key in ("destaddr", "dstaddr"):
                out["dst_ip"] = val
            elif key == "destport":
                out["dst_port"] = val
        return out
    for part in s.split(";"):
        part = part.strip()
        if not part:
            continue
        m = _KV_RE.match(part)
        if m and not part.lower().startswith(("http://", "https://")):
            key, val = m.group(1).lower(), m.group(2)
            if key in ("family", "mwtype"):
                out["family"] = val
            elif key in ("dest_addr", "destaddr", "dstaddr"):
                out["dst_ip"] = val
            elif key in _PORT_KEYS:
                # One or several ports ("23, 2323", "17875,24526 (total_count:19)"): collected,
                # one event per port (as IntelMQ's CAP parser).
                val = _TOTAL_COUNT.sub("", val)
                ports = [v.strip() for v in val.split(",") if v.strip()]
                out["dst_port"] = ",".join(filter(None, [out.get("dst_port", ""), *ports]))
            elif key in ("port", "srcport"):
                out["port"] = val
            elif key == "protocol":
                out["protocol"] = PROTOCOLS.get(val, val)
            elif key == "hostname":
                # Seen in real files: "hostname: sub.example.comport: 80" (a missing ';').
                glued = re.match(r"^(?P<host>.+?)port:\s*(?P<port>\d{1,5})$", val)
                if glued:
                    out["hostname"], out["port"] = glued["host"], glued["port"]
                else:
                    out["hostname"] = val
            elif key == "proxy_type":
                _proxy(val, out)
        elif part.lower().startswith(("http://", "https://")):
            out["url"] = part
        else:
            _proxy(part, out)
    return out


def _proxy(val: str, out: dict[str, str]) -> None:
    m = _PROXY_RE.match(val.strip())
    if m:
        out["tag"] = m["kind"].strip()
        if m["port"] or m["port2"]:
            out["port"] = m["port"] or m["port2"]
    else:
        out["tag"] = val.strip()


def parse(path: str, *, registry: Registry | None = None, **_opts) -> ParsedFile:
    """Parse a Team Cymru CAP file (either layout).

    Lines without the six ``|``-separated fields are quarantined (``expected 6 '|'-separated fields``);
    bad addresses, ASNs, ports or timestamps are quarantined by :func:`herald.sources.feed_table.finish`.
    A line naming several destination ports gives one event per port (IntelMQ does the same), all
    with that line's number; ``rows_in`` counts events, so ``rows_in == table.num_rows +
    len(quarantine)`` still holds.

    Returns:
        :class:`ParsedFile` of ``herald_cymru_cap``.

    Raises:
        InputError: unreadable or empty file.
    """
    path = str(path)
    rtype = feed_table.get_type(REPORT_TYPE, registry, path)
    q = Quarantine(path)
    cols: dict[str, list[str]] = {c: [] for c in _COLS}
    lines, raws = [], []
    for no, line in text_lists.data_lines(feed_files.read_lines(path)):
        parts = line.split("|")
        if len(parts) < 6:
            q.add(no, None, f"expected 6 '|'-separated fields, found {len(parts)}", None, line)
            continue
        category, ip, asn, ts = (p.strip() for p in parts[:4])
        info = "|".join(parts[4:-1]).strip()
        asinfo = parts[-1].strip()
        row = dict.fromkeys(_COLS, "")
        row.update(category=category, ip=ip, asn="" if asn == "0" else asn, timestamp=ts, detail=info)
        m = _CC_RE.match(asinfo)
        row["as_name"], row["geo"] = (m["name"], m["cc"]) if m else (asinfo, "")
        row.update(parse_info(info))
        row.update(cymru_classes.classify(category, row))
        for port in row["dst_port"].split(",") if row["dst_port"] else [""]:
            row["dst_port"] = port
            for c in _COLS:
                cols[c].append(row[c])
            lines.append(no)
            raws.append(line)
    n = len(lines)
    out = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    out["source"] = feed_table.const("cymru-cap", n)
    # A destination address that is not an address is dropped rather than kept (the text stays in
    # ``detail``): dst_ip is not the routing key, and a bad one must not cost the event.
    dst = out["dst_ip"]
    out["dst_ip"] = pc.if_else(pa.array(parse_ips(dst).version > 0), dst, "")
    return feed_table.finish(path, rtype, out, np.asarray(lines, dtype=np.int64), raws, q)

"""``herald ipdata info`` and ``herald ipdata lookup IP...``: inspect the IP -> ASN / country data.

Both use the bundled data (:meth:`herald.enrich.ipdata.IPData.default`) combined with any user
data sets given with ``--ipasn``/``--rir`` or listed under ``[enrich] ipdata`` in the ``--config``
file (later sets win where they have a value).
"""

from __future__ import annotations

import json
import sys
from typing import Callable


def register(sub) -> None:
    """Add ``herald ipdata info`` and ``herald ipdata lookup``."""
    p = sub.add_parser("ipdata", help="show or query the IP -> ASN / country data")
    isub = p.add_subparsers(dest="ipdata_command", metavar="ACTION")

    def common(q) -> None:
        q.add_argument("--config", metavar="TOML", help="use the [enrich] ipdata data sets of this settings file")
        q.add_argument("--ipasn", action="append", default=[], metavar="FILE",
                       help="add a pyasn ipasn file (IP prefix -> ASN); repeatable")
        q.add_argument("--rir", action="append", default=[], metavar="FILE",
                       help="add an RIR delegated(-extended) stats file (range -> country); repeatable")
        q.add_argument("--json", action="store_true", help="print JSON")

    qi = isub.add_parser("info", help="date, source, licence and size of the data; warns when old")
    common(qi)
    qi.set_defaults(func=run_info)
    ql = isub.add_parser("lookup", help="ASN, AS name and country of IP addresses")
    ql.add_argument("ips", nargs="+", metavar="IP")
    common(ql)
    ql.set_defaults(func=run_lookup)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _data(args):
    from herald.enrich.ipdata import IPData

    specs = []
    if args.config:
        from herald.config import load_settings

        specs.extend(load_settings(args.config).ipdata)
    specs.extend({"format": "ipasn", "path": p} for p in args.ipasn)
    specs.extend({"format": "rir-delegated", "path": p} for p in args.rir)
    return IPData.from_specs(specs)


def run_info(args) -> int:
    """Print the data's provenance and counts; a warning goes to stderr when it is stale."""
    info = _data(args).info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
    else:
        print(f"source:   {info['source']}")
        print(f"version:  {info['version'] or '-'}")
        print(f"date:     {info['date'] or 'unknown'}"
              + (f" ({info['age_days']} days old)" if info["age_days"] is not None else ""))
        print(f"licence:  {info['licence']}")
        print(f"ranges:   IPv4 {info['ranges_v4']:,} (ASN {info['asn_ranges_v4']:,}, country "
              f"{info['cc_ranges_v4']:,}); IPv6 {info['ranges_v6']:,} (ASN {info['asn_ranges_v6']:,}, "
              f"country {info['cc_ranges_v6']:,})")
        print(f"ASNs:     {info['asns']:,}; countries {info['ccs']}")
        if len(info["components"]) > 1:
            for c in info["components"]:
                print(f"  part:   {c.get('source')} (date {c.get('date') or 'unknown'})")
    if "warning" in info:
        print(f"herald: warning: {info['warning']}", file=sys.stderr)
    return 0


def run_lookup(args) -> int:
    """Print ``ip, asn, as_name, cc`` per address (tab-separated or JSON lines).

    Exit status 1 when an argument is not an IP address.
    """
    import pyarrow as pa

    from herald.ipaddr import parse_ips

    data = _data(args)
    parsed = parse_ips(pa.array(args.ips, pa.string()))
    return print_lookup(
        args.ips, parsed.version > 0, data.lookup(parsed).to_pylist(), args.json,
        lambda ip, row: "\t".join([ip] + ["" if row[k] is None else str(row[k])
                                         for k in ("asn", "as_name", "cc")]))


def print_lookup(ips: list[str], valid, rows: list[dict], as_json: bool,
                 text: Callable[[str, dict], str]) -> int:
    """Print the answer of a lookup of IP address arguments (``herald ipdata lookup``, ``herald
    contacts lookup``): per address, ``text(ip, row)`` or, ``as_json``, a JSON object of ``ip`` and
    the row; an argument that is not an address (``valid`` false) is an error on stderr.

    Returns:
        the exit status: 0, or 1 when an argument is not an IP address.
    """
    status = 0
    for ip, ok, row in zip(ips, valid, rows):
        if not ok:
            print(f"herald: error: {ip!r} is not an IP address", file=sys.stderr)
            status = 1
            continue
        if as_json:
            print(json.dumps({"ip": ip, **row}, ensure_ascii=False))
        else:
            print(text(ip, row))
    return status

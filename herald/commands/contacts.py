"""``herald contacts import|lookup|info``: abuse contacts from RPSL database dumps.

- ``import --config FILE DUMP...``: read RIR dumps (plain or gzipped) and store them under
  ``<data>/contacts/`` (:mod:`herald.contacts.importer`, :mod:`herald.contacts.store`).
- ``lookup --config FILE [--asn N] IP...``: the abuse mailbox, source object, network and
  organisation of addresses.
- ``info --config FILE``: sources, dates and age; warns on stderr past 90 days.

See docs/abuse-contacts.md.
"""

from __future__ import annotations

import datetime as dt
import json
import sys


def today() -> dt.date:
    """Today's date in UTC (tests replace this function to fix the clock)."""
    return dt.datetime.now(dt.timezone.utc).date()


def register(sub) -> None:
    """Add ``herald contacts import|lookup|info``."""
    p = sub.add_parser("contacts", help="import and query abuse contacts from RPSL database dumps")
    csub = p.add_subparsers(dest="contacts_command", metavar="ACTION")

    qi = csub.add_parser("import", help="import RPSL dumps (RIPE split files, APNIC/AFRINIC/LACNIC dumps)")
    qi.add_argument("--config", required=True, metavar="TOML", help="settings file ([paths] data)")
    qi.add_argument("dumps", nargs="+", metavar="DUMP", help="dump files, plain or .gz")
    qi.set_defaults(func=run_import)

    ql = csub.add_parser("lookup", help="abuse mailbox of IP addresses")
    ql.add_argument("--config", required=True, metavar="TOML")
    ql.add_argument("--asn", type=int, default=None, help="the events' ASN, for the aut-num fallback")
    ql.add_argument("--json", action="store_true", help="print JSON lines")
    ql.add_argument("ips", nargs="+", metavar="IP")
    ql.set_defaults(func=run_lookup)

    qn = csub.add_parser("info", help="sources and age of the data; warns when older than 90 days")
    qn.add_argument("--config", required=True, metavar="TOML")
    qn.add_argument("--json", action="store_true", help="print JSON")
    qn.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _data_dir(args):
    from herald.config import load_settings

    return load_settings(args.config).paths.data


def run_import(args) -> int:
    """Import the dumps; prints a summary.  Exit status 2 when a dump cannot be read."""
    from herald.contacts.importer import import_dumps
    from herald.contacts.store import write_contacts

    data = import_dumps(args.dumps)
    m = write_contacts(_data_dir(args), data)
    for s in m["sources"]:
        objs = ", ".join(f"{k} {v:,}" for k, v in s["objects"].items()) or "no objects read"
        print(f"{s['name']}: {objs} (dated {s['date']} from {s['date_from']})")
    print(f"networks: {m['networks']:,} ({m['networks_with_mailbox']:,} with an abuse mailbox); "
          f"aut-nums: {m['autnums']:,} ({m['autnums_with_mailbox']:,} with an abuse mailbox)")
    return 0


def run_lookup(args) -> int:
    """Print ``ip, mailbox, source, role, network, netname, org`` per address (tab-separated or
    JSON lines).  Exit status 1 when an argument is not an IP address."""
    import pyarrow as pa

    from herald.contacts.lookup import lookup_contacts
    from herald.contacts.store import load_contacts
    from herald.ipaddr import parse_ips

    data = load_contacts(_data_dir(args))
    parsed = parse_ips(pa.array(args.ips, pa.string()))
    asn = None if args.asn is None else [args.asn] * len(args.ips)
    rows = lookup_contacts(data, parsed, asn).to_pylist()
    status = 0
    for ip, ok, row in zip(args.ips, parsed.version > 0, rows):
        if not ok:
            print(f"herald: error: {ip!r} is not an IP address", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"ip": ip, **row}, ensure_ascii=False))
        else:
            print(f"{ip}\tmailbox: {row['mailbox'] or '-'}\tsource: "
                  f"{row['source'] or '-'}{' role ' + row['role'] if row['role'] else ''}"
                  f"\tnetwork: {row['network'] or '-'}{' (' + row['netname'] + ')' if row['netname'] else ''}"
                  f"\torg: {row['org'] or '-'}")
    return status


def run_info(args) -> int:
    """Print the imported sources, their dates and the data's age; warning on stderr when stale."""
    from herald.contacts.store import load_contacts

    info = load_contacts(_data_dir(args)).info(today())
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(f"imported: {info['imported_at']}")
        print(f"date:     {info['date'] or 'unknown'}"
              + (f" ({info['age_days']} days old)" if info["age_days"] is not None else ""))
        print(f"networks: {info['networks']:,} ({info['networks_with_mailbox']:,} with an abuse mailbox); "
              f"ranges IPv4 {info['ranges_v4']:,}, IPv6 {info['ranges_v6']:,}")
        print(f"aut-nums: {info['autnums']:,} ({info['autnums_with_mailbox']:,} with an abuse mailbox)")
        for s in info["sources"]:
            print(f"  source: {s['name']} dated {s['date']} ({s['date_from']}), {s['size']:,} bytes, "
                  f"sha256 {s['sha256']}")
    if "warning" in info:
        print(f"herald: warning: {info['warning']}", file=sys.stderr)
    return 0

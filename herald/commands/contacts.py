"""``herald contacts import|lookup|info``: abuse contacts from RPSL database dumps.

- ``import --config FILE DUMP...``: read RIR dumps (plain or gzipped) and store them under
  ``<data>/contacts/`` (:mod:`herald.contacts.importer`, :mod:`herald.contacts.store`).
- ``lookup --config FILE [--asn N] IP...``: the abuse mailbox, source object, network and
  organisation of addresses.
- ``info --config FILE``: sources, dates and age; warns on stderr past 90 days.
- ``override add|list|remove``: the operator's corrections (another mailbox for a network or
  ASN, or a suppression; audited), applied by ``lookup`` (:mod:`herald.contacts.overrides`).

See docs/abuse-contacts.md.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from herald.commands.db import add_action, audited_change, database
from herald.commands.ipdata import print_lookup


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
    ql.add_argument("--no-overrides", action="store_true",
                    help="show the RPSL answer without the operator's overrides (no database needed)")
    ql.add_argument("ips", nargs="+", metavar="IP")
    ql.set_defaults(func=run_lookup)

    qn = csub.add_parser("info", help="sources and age of the data; warns when older than 90 days")
    qn.add_argument("--config", required=True, metavar="TOML")
    qn.add_argument("--json", action="store_true", help="print JSON")
    qn.set_defaults(func=run_info)
    ov = csub.add_parser("override", help="correct or suppress RPSL contacts for a network or ASN")
    osub = ov.add_subparsers(dest="override_command", metavar="ACTION")
    oa = add_action(osub, "add", run_override_add, actor=True, help="add an override (audited)")
    oa.add_argument("--network", metavar="CIDR")
    oa.add_argument("--asn", type=int)
    what = oa.add_mutually_exclusive_group(required=True)
    what.add_argument("--mailbox", help="send to this address instead (several: comma-separated, "
                      "they replace the whole RPSL list)")
    what.add_argument("--suppress", action="store_true", help="send nothing to the RPSL contact")
    oa.add_argument("--reason", required=True)
    ol = add_action(osub, "list", run_override_list, help="list overrides")
    ol.add_argument("--json", action="store_true")
    orm = add_action(osub, "remove", run_override_remove, actor=True,
                     help="remove an override (audited)")
    orm.add_argument("id", type=int)
    orm.add_argument("--reason")
    ov.set_defaults(func=lambda args: (ov.print_help(), 2)[1])
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
    result = lookup_contacts(data, parsed, asn)
    if not args.no_overrides:
        import numpy as np

        from herald.contacts.overrides import apply_overrides, list_overrides

        with database(args) as (_, db):
            overrides = list_overrides(db)
        result = apply_overrides(result, parsed, overrides,
                                 None if asn is None else np.asarray(asn, dtype=np.int64))
    return print_lookup(args.ips, parsed.version > 0, result.to_pylist(), args.json, _contact_line)


def _contact_line(ip: str, row: dict) -> str:
    return (f"{ip}\tmailbox: {row['mailbox'] or '-'}\tsource: "
            f"{row['source'] or '-'}{' role ' + row['role'] if row['role'] else ''}"
            f"\tnetwork: {row['network'] or '-'}{' (' + row['netname'] + ')' if row['netname'] else ''}"
            f"\torg: {row['org'] or '-'}")


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


def _override_line(o) -> str:
    what = f"network {o.network}" if o.network else f"AS{o.asn}"
    return f"{o.id:>5}  {what}  -> {o.mailbox or 'SUPPRESSED'}  by {o.created_by}: {o.reason}"


def run_override_add(args) -> int:
    """Exit status 0, or 1 when the override is refused."""
    from herald.contacts.overrides import OverrideError, add_override

    return audited_change(
        args, lambda db, actor: add_override(db, reason=args.reason, actor=actor, network=args.network,
                                             asn=args.asn, mailbox=None if args.suppress else args.mailbox),
        OverrideError, "contacts override", _override_line)


def run_override_list(args) -> int:
    """Print one line (or JSON object) per override."""
    from herald.contacts.overrides import list_overrides

    with database(args) as (_, db):
        for o in list_overrides(db):
            print(json.dumps(o.to_dict(), sort_keys=True) if args.json else _override_line(o))
    return 0


def run_override_remove(args) -> int:
    """Exit status 0, or 1 when there is no such override."""
    from herald.contacts.overrides import OverrideError, remove_override

    return audited_change(args, lambda db, actor: remove_override(db, args.id, actor, args.reason),
                          OverrideError, "contacts override", lambda o: f"removed: {_override_line(o)}")

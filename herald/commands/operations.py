"""``herald operations add|partner|list|show|stats``: law-enforcement operations."""

from __future__ import annotations

from herald.commands.db import actor_of, add_action, open_from_args
from herald.constituency import operations as ops


def _csv(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def register(sub) -> None:
    """Add ``herald operations`` and its actions."""
    p = sub.add_parser("operations", help="law-enforcement operations and their partners")
    osub = p.add_subparsers(dest="operations_command", metavar="ACTION", required=True)

    a = add_action(osub, "add", run_add, actor=True, help="create an operation")
    a.add_argument("name")
    a.add_argument("--start", required=True, help="first day YYYY-MM-DD")
    a.add_argument("--end", help="last day YYYY-MM-DD (default: open-ended)")
    a.add_argument("--families", help="comma-separated malware families (family/infection values)")
    a.add_argument("--tags", help="comma-separated tag values")
    a.add_argument("--domains", help="comma-separated sinkholed domains")
    a.add_argument("--description")
    a.add_argument("--reason")

    pa = add_action(osub, "partner", run_partner, actor=True,
                    help="add a law-enforcement recipient to an operation "
                         "(or change its jurisdiction)")
    pa.add_argument("name", help="operation")
    pa.add_argument("recipient", help="law-enforcement recipient (name, slug or id)")
    pa.add_argument("--countries", required=True, help="jurisdiction: comma-separated ISO codes")
    pa.add_argument("--reason")

    ls = add_action(osub, "list", run_list, help="list operations")
    ls.add_argument("--active", metavar="DAY", help="only operations active on DAY")

    sh = add_action(osub, "show", run_show, help="one operation with its partners")
    sh.add_argument("name")

    st = add_action(osub, "stats", run_stats,
                    help="victim counts by country and ASN on a day (never addresses)")
    st.add_argument("name")
    st.add_argument("--date", dest="day", required=True, help="day YYYY-MM-DD")
    st.add_argument("--top", type=int, default=20, help="rows per table (default 20; 0 = all)")


def run_add(args) -> int:
    """Create the operation."""
    _, db = open_from_args(args)
    info = ops.add_operation(db, args.name, args.start, actor_of(args), families=_csv(args.families),
                             tags=_csv(args.tags), sinkholed_domains=_csv(args.domains),
                             end_date=args.end, description=args.description, reason=args.reason)
    print(f"added operation {info.id} {info.name!r} ({info.start_date} .. {info.end_date or 'open'})")
    return 0


def run_partner(args) -> int:
    """Add or update a partner."""
    _, db = open_from_args(args)
    rec = int(args.recipient) if args.recipient.isdigit() else args.recipient
    info = ops.add_partner(db, args.name, rec, _csv(args.countries), actor_of(args), args.reason)
    for p in info.partners:
        print(f"{info.name}: {p.recipient} ({', '.join(p.countries)})")
    return 0


def run_list(args) -> int:
    """One line per operation."""
    from datetime import date

    _, db = open_from_args(args)
    active = date.fromisoformat(args.active) if args.active else None
    for o in ops.list_operations(db, active_on=active):
        print(f"{o.id}\t{o.name}\t{o.start_date}..{o.end_date or ''}\t"
              f"families={','.join(o.families) or '-'}\ttags={','.join(o.tags) or '-'}\t"
              f"{len(o.partners)} partner(s)")
    return 0


def run_show(args) -> int:
    """Details of one operation."""
    _, db = open_from_args(args)
    o = ops.get_operation(db, args.name)
    print(f"operation {o.id}: {o.name}")
    if o.description:
        print(f"  description: {o.description}")
    print(f"  dates:       {o.start_date} .. {o.end_date or '(open)'}")
    print(f"  families:    {', '.join(o.families) or '-'}")
    print(f"  tags:        {', '.join(o.tags) or '-'}")
    print(f"  domains:     {', '.join(o.sinkholed_domains) or '-'}")
    for p in o.partners:
        print(f"  partner:     {p.recipient} (jurisdiction {', '.join(p.countries)})")
    return 0


def run_stats(args) -> int:
    """Victim counts from the event store: totals, by country, by ASN."""
    settings, db = open_from_args(args)
    s = ops.operation_stats(db, settings.paths.data, args.name, args.day, store=settings.events)
    print(f"operation {s.operation} on {s.day}: {s.total} victim(s) in {s.files} event file(s)")
    top = None if args.top == 0 else args.top
    print("by country:")
    for cc, n in s.by_country[:top]:
        print(f"  {cc or '??':<4} {n:>9}")
    print("by ASN:")
    for asn, n in s.by_asn[:top]:
        print(f"  {('AS' + str(asn)) if asn is not None else 'unknown':<12} {n:>9}")
    return 0

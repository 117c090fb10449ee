"""``herald inhibitions add|list|remove``: rules that stop matching events from being reported.

::

    herald inhibitions add --reason TEXT [--network CIDR] [--asn N] [--type T] [--tag T]
                           [--recipient NAME] [--expires YYYY-MM-DD[THH:MM[:SS]][Z]]
    herald inhibitions list [--all] [--json]       # in force today (UTC) unless --all
    herald inhibitions remove ID [--reason TEXT]

Adding and removing are audited.  See herald/constituency/inhibitions.py and docs/abuse-contacts.md.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from herald.commands.db import add_action, audited_change, database


def register(sub) -> None:
    """Add ``herald inhibitions``."""
    p = sub.add_parser("inhibitions", help="add, list or remove inhibitions (do not report matching events)")
    isub = p.add_subparsers(dest="inhibitions_command", metavar="ACTION")
    a = add_action(isub, "add", run_add, actor=True, help="add an inhibition (audited)")
    a.add_argument("--network", metavar="CIDR")
    a.add_argument("--asn", type=int)
    a.add_argument("--type", dest="report_type", metavar="REPORT_TYPE")
    a.add_argument("--tag")
    a.add_argument("--recipient", metavar="NAME", help="only for this recipient (default: everyone)")
    a.add_argument("--expires", metavar="WHEN", help="UTC date or time it ends (default: never)")
    a.add_argument("--reason", required=True)
    ls = add_action(isub, "list", run_list, help="list inhibitions in force today (UTC)")
    ls.add_argument("--all", action="store_true", help="include expired ones")
    ls.add_argument("--json", action="store_true")
    rm = add_action(isub, "remove", run_remove, actor=True, help="remove an inhibition (audited)")
    rm.add_argument("id", type=int)
    rm.add_argument("--reason")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def parse_expiry(text: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 UTC of that day) or an ISO 8601 time; naive times are UTC.

    Raises:
        ValueError: not a date or time.
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _line(i) -> str:
    crit = [f"network {i.network}" if i.network else "", f"AS{i.asn}" if i.asn is not None else "",
            f"type {i.report_type}" if i.report_type else "", f"tag {i.tag}" if i.tag else ""]
    exp = i.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if i.expires_at else "never"
    return (f"{i.id:>5}  {', '.join(c for c in crit if c)}  for {i.recipient or 'everyone'}  "
            f"expires {exp}  by {i.created_by}: {i.reason}")


def run_add(args) -> int:
    """Exit status 0, or 1 when the inhibition is refused."""
    from herald.constituency.inhibitions import InhibitionError, add_inhibition

    try:
        expires = parse_expiry(args.expires) if args.expires else None
    except ValueError:
        print(f"herald: inhibitions: {args.expires!r} is not a date or time")
        return 1
    return audited_change(
        args, lambda db, actor: add_inhibition(db, reason=args.reason, actor=actor, network=args.network,
                                               asn=args.asn, report_type=args.report_type, tag=args.tag,
                                               recipient=args.recipient, expires_at=expires),
        InhibitionError, "inhibitions", _line)


def run_list(args) -> int:
    """Print one line (or JSON object) per inhibition."""
    from herald.constituency.inhibitions import list_inhibitions

    with database(args) as (_, db):
        rows = list_inhibitions(db, None if args.all else datetime.now(timezone.utc).date())
    for i in rows:
        print(json.dumps(i.to_dict(), sort_keys=True) if args.json else _line(i))
    return 0


def run_remove(args) -> int:
    """Exit status 0, or 1 when there is no such inhibition."""
    from herald.constituency.inhibitions import InhibitionError, remove_inhibition

    return audited_change(args, lambda db, actor: remove_inhibition(db, args.id, actor, args.reason),
                          InhibitionError, "inhibitions", lambda inh: f"removed: {_line(inh)}")

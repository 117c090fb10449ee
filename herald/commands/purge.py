"""``herald purge [--keep-days N] [--dry-run]``: apply the retention policy (``[retention]``)."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timezone

from herald.commands.db import actor_of, add_action, open_from_args
from herald.store.purge import purge


def register(sub) -> None:
    """Add ``herald purge``."""
    p = add_action(sub, "purge", run, actor=True,
                   help="delete expired events, reports, outbox files, ledger and "
                        "audit entries (see [retention])")
    p.add_argument("--keep-days", type=int, default=None,
                   help="days of events/reports/outbox to keep (default: [retention] events_days, 30)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    # Hidden: the day taken as "today" (tests, reproducing an earlier purge).
    p.add_argument("--today", help=argparse.SUPPRESS, default=None)


def run(args) -> int:
    """Purge and print a summary."""
    settings, db = open_from_args(args)
    today = date.fromisoformat(args.today) if args.today else datetime.now(timezone.utc).date()
    r = purge(db, settings, today, keep_days=args.keep_days, dry_run=args.dry_run,
              actor=actor_of(args))
    verb = "would remove" if r.dry_run else "removed"
    print(f"purge (days before {r.cutoff}): {verb}")
    for label, days in (("event partitions", r.event_days), ("report days", r.report_days),
                        ("outbox days", r.outbox_days)):
        shown = ", ".join(d.isoformat() for d in days) or "-"
        print(f"  {label:<17} {len(days):>5}  {shown}")
    print(f"  {'outbox rows':<17} {r.outbox_rows:>5}")
    print(f"  {'ledger runs':<17} {r.runs:>5}")
    print(f"  {'audit entries':<17} {r.audit_rows:>5}")
    if r.protected_days:
        print("  kept (run in progress): " + ", ".join(d.isoformat() for d in r.protected_days))
    if r.audit_id:
        print(f"recorded in the audit log as entry {r.audit_id}")
    return 0

"""``herald bounces``: count RFC 3464 bounces from a Maildir; list or reset bouncing addresses.

::

    herald bounces --config FILE MAILDIR          # read DSNs, count permanent failures
    herald bounces --config FILE --list [--json]  # addresses with bounces
    herald bounces --config FILE --reset ADDRESS [--reason TEXT]   # forget, re-queue (audited)

Messages to an address with ``[abuse_contacts] bounce_threshold`` (default 3) bounces are held in
the outbox (``hold_reason = bouncing``) by the next ``herald send``.  See docs/abuse-contacts.md.
"""

from __future__ import annotations

import json

from herald.commands.db import actor_of, add_action, open_from_args


def register(sub) -> None:
    """Add ``herald bounces``."""
    p = add_action(sub, "bounces", run, actor=True,
                   help="count delivery status notifications (bounces) from a Maildir")
    p.add_argument("maildir", nargs="?", metavar="MAILDIR", help="Maildir holding the DSNs")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--list", action="store_true", help="list addresses with bounces")
    act.add_argument("--reset", metavar="ADDRESS", help="forget an address's bounces and queue its held mail")
    p.add_argument("--reason", help="why (audit log, with --reset)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    """Exit status 0 on success, 1 when --reset names an address without bounces, 2 on usage."""
    from herald.deliver.bounces import (
        BounceError, bounce_threshold, list_bounces, record_bounces, reset_bounces,
    )

    if not (args.maildir or args.list or args.reset):
        print("herald: bounces: give a MAILDIR, --list or --reset ADDRESS")
        return 2
    settings, db = open_from_args(args)
    try:
        threshold = bounce_threshold(settings)
        if args.reset:
            try:
                ids = reset_bounces(db, args.reset, actor_of(args), args.reason)
            except BounceError as exc:
                print(f"herald: bounces: {exc}")
                return 1
            print(f"{args.reset.strip().lower()}: bounces forgotten; {len(ids)} held message(s) queued again")
            return 0
        if args.list:
            rows = list_bounces(db)
            for r in rows:
                if args.json:
                    print(json.dumps({**r, "bouncing": r["count"] >= threshold}, default=str, sort_keys=True))
                else:
                    flag = "BOUNCING" if r["count"] >= threshold else ""
                    print(f"{r['address']}\t{r['count']}\t{r['last_status'] or '-'}\t"
                          f"{r['last_bounce_at']:%Y-%m-%dT%H:%M:%SZ}\t{flag}")
            return 0
        summary = record_bounces(db, args.maildir, threshold)
        if args.json:
            print(json.dumps(summary.to_dict(), sort_keys=True))
        else:
            print(f"{summary.messages} message(s): {summary.dsns} DSN(s), {summary.not_dsn} other; "
                  f"{summary.counted} permanent failure(s) counted, {summary.repeated} already counted, "
                  f"{summary.ignored} not counted (delayed or not permanent)")
            for a in summary.bouncing:
                print(f"bouncing (>= {threshold}): {a}")
        return 0
    finally:
        db.dispose()

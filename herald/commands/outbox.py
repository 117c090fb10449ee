"""``herald outbox``: list the outbox and act on held or failed messages.

::

    herald outbox [--state queued,held] [--date YYYY-MM-DD] [--json]
    herald outbox --release ID [--reason TEXT]     # held/failed -> queued (audited)
    herald outbox --mark-sent ID [--reason TEXT]   # held -> sent, e.g. after an unknown outcome
"""

from __future__ import annotations

import json

from herald.commands.db import actor_of, add_action, open_from_args
from herald.deliver.outbox import OutboxEntry, list_outbox, mark_sent, release
from herald.store.db import OUTBOX_STATES
from herald.errors import HeraldError


def register(sub) -> None:
    """Add ``herald outbox``."""
    p = add_action(sub, "outbox", run, actor=True,
                   help="list queued/sent/failed/held messages; release or mark held ones")
    p.add_argument("--state", help=f"comma-separated states ({', '.join(OUTBOX_STATES)})")
    p.add_argument("--date", dest="day", help="report day YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--release", type=int, metavar="ID", help="queue a held or failed message again")
    act.add_argument("--mark-sent", type=int, metavar="ID",
                     help="record that a held message did arrive (check the relay's log first)")
    p.add_argument("--reason", help="why (audit log)")


def _line(e: OutboxEntry) -> str:
    """The message's line; then, for a message with several addresses, one line per address with
    its state, and for one not sent, the reason."""
    reason = e.last_error or e.smtp_reply or ""
    when = e.sent_at or e.next_attempt_at
    when_s = when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else "-"
    out = (f"{e.id:>6}  {e.state:<7} {e.attempts:>2}  {when_s:<20}  {e.protection or '-':<9}  "
           f"{e.recipient} <{e.rcpt_to}>  {e.subject}")
    if len(e.addresses) > 1 or any(a.state != "sent" and e.state == "sent" for a in e.addresses):
        for a in e.addresses:
            detail = f": {a.smtp_reply}" if a.smtp_reply and a.state != "sent" else ""
            out += f"\n{'':>8}{a.state:<7} <{a.address}>{detail}"
    if reason and e.state != "sent":
        out += f"\n{'':>8}reason: {reason}"
    return out


def run(args) -> int:
    """List (exit 0) or act (exit 0 on success, 1 when the action is refused)."""
    settings, db = open_from_args(args)
    try:
        if args.release or args.mark_sent:
            try:
                if args.release:
                    e = release(db, settings, args.release, actor_of(args), args.reason)
                else:
                    e = mark_sent(db, args.mark_sent, actor_of(args), args.reason)
            except HeraldError as exc:
                print(f"herald: outbox: {exc}")
                return 1
            print(_line(e))
            return 0
        states = [s.strip() for s in args.state.split(",")] if args.state else None
        for s in states or []:
            if s not in OUTBOX_STATES:
                print(f"herald: outbox: unknown state {s!r} ({', '.join(OUTBOX_STATES)})")
                return 2
        entries = list_outbox(db, state=states, day=args.day)
        if args.json:
            for e in entries:
                print(json.dumps(e.to_dict(), sort_keys=True))
            return 0
        print(f"{'id':>6}  {'state':<7} {'n':>2}  {'sent/next attempt':<20}  {'pgp':<9}  recipient  subject")
        for e in entries:
            print(_line(e))
        counts = {}
        for e in entries:
            counts[e.state] = counts.get(e.state, 0) + 1
        print(f"{len(entries)} message(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        return 0
    finally:
        db.dispose()

"""``herald send [--config FILE] [--once] [--limit N] [--json]``: deliver the queued messages.

Without ``--once`` it keeps running: after each pass it sleeps until the next message is due
(at most ``--interval`` seconds) and passes again.  Only one sender runs at a time (see
:func:`herald.deliver.outbox.send_due`); a second one reports the lock as busy.
"""

from __future__ import annotations

import json
import sys
import time

import sqlalchemy as sa

from herald.commands.db import add_action, open_from_args
from herald.deliver.outbox import SendResult, send_due
from herald.store.db import OutboxRow, utcnow


def register(sub) -> None:
    """Add ``herald send``."""
    p = add_action(sub, "send", run, help="deliver queued report messages through the SMTP relay")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--limit", type=int, default=None, help="send at most N messages per pass")
    p.add_argument("--interval", type=float, default=60.0,
                   help="longest sleep between passes in seconds (default 60)")
    p.add_argument("--json", action="store_true", help="print each pass's result as JSON")


def _print(result: SendResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), sort_keys=True), flush=True)
        return
    print(f"sent {len(result.sent)}, retry later {len(result.retried)}, failed {len(result.failed)}, "
          f"held {len(result.held)}, requeued after a crash {len(result.requeued)}, "
          f"released {len(result.released)}", flush=True)
    if result.addresses_failed or result.addresses_held:
        print(f"addresses: {len(result.addresses_failed)} failed, {len(result.addresses_held)} "
              f"held as bouncing (the messages went to the contacts' other addresses)", flush=True)
    for e in result.errors:
        print(f"herald: send: {e}", file=sys.stderr, flush=True)
    if result.failed or result.held or result.addresses_failed or result.addresses_held:
        print("see 'herald outbox' for the reasons", flush=True)


def _next_due(db) -> float | None:
    with db.session() as s:
        when = s.scalar(sa.select(sa.func.min(OutboxRow.next_attempt_at))
                        .where(OutboxRow.state == "queued"))
        queued_now = s.scalar(sa.select(sa.func.count()).select_from(OutboxRow).where(
            OutboxRow.state == "queued", OutboxRow.next_attempt_at.is_(None)))
    if queued_now:
        return 0.0
    if when is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())


def run(args) -> int:
    """One pass (``--once``; exit 0 when nothing failed and the relay was usable, else 1) or a
    loop until interrupted."""
    settings, db = open_from_args(args)
    try:
        while True:
            result = send_due(db, settings, limit=args.limit)
            _print(result, args.json)
            if args.once:
                return 0 if not (result.errors or result.failed) else 1
            wait = _next_due(db)
            time.sleep(min(args.interval, wait if wait is not None else args.interval) or 1.0)
    except KeyboardInterrupt:
        return 0
    finally:
        db.dispose()

"""``herald runs list|show``: the run ledger."""

from __future__ import annotations

import json

from herald.commands.db import add_action, open_from_args
from herald.store import ledger


def register(sub) -> None:
    """Add ``herald runs list`` and ``herald runs show``."""
    p = sub.add_parser("runs", help="the run ledger: which days were processed, when, with which inputs and result")
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    ls = add_action(rsub, "list", run_list, help="newest runs first")
    ls.add_argument("--date", dest="day", help="only runs of this day (YYYY-MM-DD)")
    ls.add_argument("--status", choices=["running", "done", "failed"])
    ls.add_argument("--limit", type=int, default=50)
    sh = add_action(rsub, "show", run_show, help="one run: inputs, reports, summary")
    sh.add_argument("run", help="run id, or a day YYYY-MM-DD (its newest run)")
    sh.add_argument("--json", action="store_true", help="print the stored summary as JSON only")


def _t(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


def run_list(args) -> int:
    """One line per run: id, day, status, start, end, forced, error."""
    _, db = open_from_args(args)
    for r in ledger.list_runs(db, day=args.day, status=args.status, limit=args.limit):
        extra = " forced" if r.forced else ""
        err = f"\t{r.error}" if r.error else ""
        print(f"{r.id}\t{r.day}\t{r.status}{extra}\t{_t(r.started_at)}\t{_t(r.finished_at)}{err}")
    return 0


def run_show(args) -> int:
    """Details of one run.

    Raises:
        NotFound: no such run / no run of that day.
    """
    from herald.store.db import NotFound

    _, db = open_from_args(args)
    if args.run.isdigit():
        run = ledger.get_run(db, int(args.run))
    else:
        run = ledger.last_run(db, args.run)
        if run is None:
            raise NotFound(f"no run of {args.run}")
    if args.json:
        print(json.dumps(run.summary, indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    print(f"run {run.id}: {run.day} {run.status}{' (forced)' if run.forced else ''}")
    print(f"  started:  {_t(run.started_at)}")
    print(f"  finished: {_t(run.finished_at)}")
    if run.error:
        print(f"  error:    {run.error}")
    if run.counts:
        print("  counts:   " + ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items())))
    print(f"  inputs ({len(run.inputs)}):")
    for i in run.inputs:
        print(f"    {i.rows:>9}  {i.sha256[:16]}  {i.path}")
    print(f"  reports ({len(run.reports)}):")
    for r in run.reports:
        scope = f" [{r.scope}]" if r.scope else ""
        print(f"    {r.rows:>9}  {r.recipient}{scope}  {r.report_type}  {r.path}")
    return 0

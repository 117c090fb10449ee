"""``herald run --config FILE --date YYYY-MM-DD [--summary-json PATH]``: the daily job."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from herald.config import load_settings
from herald.pipeline import run_day
from herald.fsutil import atomic_write


def register(sub) -> None:
    """Add ``herald run``."""
    p = sub.add_parser("run", help="run the daily job: ingest, enrich, store, route, write reports")
    p.add_argument("--config", default="herald.toml", help="configuration file (default: herald.toml)")
    p.add_argument("--date", dest="day", default=None,
                   help="report day YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--summary-json", type=Path, help="also write the JSON summary here")
    p.add_argument("--force", action="store_true",
                   help="run again a day that is already done (the ledger keeps both runs)")
    p.add_argument("--progress", action="store_true", default=None,
                   help="show progress even when stderr is not a terminal")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the day; print a short summary.  Exit 0 when all went well, 1 when an input failed or
    the counts do not reconcile (the other inputs are still processed)."""
    settings = load_settings(args.config)
    day = args.day or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    summary = run_day(settings, day, progress=args.progress, force=args.force)
    if summary.skipped:
        prev = summary.previous
        print(f"Herald run for {day}: already done (run {prev.get('run_id')}: {prev.get('rows_in')} rows in, "
              f"{len(prev.get('reports', []))} reports); nothing to do. Use --force to run it again.")
        if args.summary_json and prev:
            atomic_write(args.summary_json, (json.dumps(prev, indent=2, sort_keys=True) + "\n").encode())
        if summary.new_inputs:
            print(f"herald: error: {len(summary.new_inputs)} input(s) are new or changed since that run "
                  f"and were NOT processed (use --force): " + ", ".join(summary.new_inputs), file=sys.stderr)
            return 1
        return 0
    data = summary.to_dict()
    if args.summary_json:
        atomic_write(args.summary_json, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    out = sys.stdout
    print(f"Herald run for {day}: {summary.rows_in} rows in, {summary.rows_stored} stored, "
          f"{summary.rows_reported} reported, {summary.rows_unrouted} unrouted, "
          f"{summary.rows_quarantined} quarantined, {summary.rows_duplicate} duplicate", file=out)
    recipients = sorted({r["recipient"] for r in summary.reports})
    print(f"{len(summary.reports)} report(s) for {len(recipients)} recipient(s) written to "
          f"{settings.paths.reports / day}", file=out)
    for r in summary.reports:
        print(f"  {r['recipient']:<32} {r['type']:<32} {r['rows']:>7}  {r['path']}", file=out)
    print(f"Outbox messages (.eml): {settings.paths.outbox / day}", file=out)
    if summary.rows_quarantined:
        print(f"Quarantined rows: {settings.paths.data / 'quarantine' / day}", file=out)
    for w in summary.warnings:
        print(f"herald: warning: {w}", file=sys.stderr)
    for e in summary.errors:
        print(f"herald: input failed: {e}", file=sys.stderr)
    if not summary.reconciles:
        print("herald: error: counts do not reconcile", file=sys.stderr)
    return 0 if summary.ok else 1

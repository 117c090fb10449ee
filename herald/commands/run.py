"""``herald run --config FILE --date YYYY-MM-DD [--summary-json PATH]``: the daily job."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from herald.config import load_settings
from herald.pipeline import run_day
from herald.fsutil import atomic_write
from herald.summary import summary_json


def register(sub) -> None:
    """Add ``herald run``."""
    p = sub.add_parser("run", help="run the daily job: ingest, enrich, store, route, write reports",
                       epilog="exit status: 0 all went well; 1 an input failed or the counts do "
                              "not reconcile (the other inputs are still processed); 2 a usage "
                              "or configuration error")
    p.add_argument("--config", default="herald.toml", help="configuration file (default: herald.toml)")
    p.add_argument("--date", dest="day", default=None,
                   help="report day YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--summary-json", type=Path, help="also write the JSON summary here")
    p.add_argument("--force", action="store_true",
                   help="run again a day that is already done (the ledger keeps both runs)")
    p.add_argument("--progress", action="store_true", default=None,
                   help="show progress even when stderr is not a terminal")
    p.add_argument("--engine", choices=("local", "spark"), default="local",
                   help="where ingest, route and write run: this process (local) or Apache Spark "
                        "([spark] master / SPARK_MASTER; docs/spark.md)")
    p.set_defaults(func=run)


#: Recipients listed by name in the printed summary (the largest by rows).
TOP_RECIPIENTS = 10


def summary_lines(data: dict, paths, summary_json: Path | None = None) -> list[str]:
    """The lines ``herald run`` prints for a run summary (:meth:`RunSummary.to_dict` ``data``):
    the counts, the failed inputs, the :data:`TOP_RECIPIENTS` recipients with the most rows
    (ties by name) and where the full list of reports is (``summary_json``, else the run's summary
    ``<data>/runs/<day>.json``).  A bounded number of lines whatever the number of reports.

    Args:
        data: the summary dictionary.
        paths: the configuration's paths (``reports``, ``outbox``, ``data``).
        summary_json: the ``--summary-json`` path, if given.
    """
    day = data["day"]
    lines = [f"Herald run for {day}: {data['rows_in']} rows in, {data['rows_stored']} stored, "
             f"{data['rows_reported']} reported, {data['rows_unrouted']} unrouted, "
             f"{data['rows_quarantined']} quarantined, {data['rows_duplicate']} duplicate, "
             f"{data.get('rows_failed', 0)} failed"]
    if data.get("rows_inhibited") or data.get("rows_renotify_suppressed"):
        lines.append(f"  (event, recipient) pairs removed: {data.get('rows_inhibited', 0)} inhibited, "
                     f"{data.get('rows_renotify_suppressed', 0)} within a re-notification window")
    for f in data.get("failed_inputs", []):
        lines.append(f"  failed input: {f['path']} ({f['rows']} rows)")
    reports = data["reports"]
    per: dict[tuple[str, str], list[int]] = {}
    for r in reports:
        acc = per.setdefault((r["recipient"], r.get("email") or ""), [0, 0])
        acc[0] += r["rows"]
        acc[1] += 1
    lines.append(f"{len(reports)} report(s) for {len(per)} recipient(s) written to {paths.reports / day}")
    top = sorted(per.items(), key=lambda kv: (-kv[1][0], kv[0]))[:TOP_RECIPIENTS]
    if top:
        lines.append(f"Largest recipients (top {len(top)} of {len(per)} by rows):")
        for (name, email), (rows, n) in top:
            lines.append(f"  {name:<32} {email:<32} {rows:>9} rows  {n:>4} report(s)")
    if reports:
        where = summary_json or Path(paths.data) / "runs" / f"{day}.json"
        lines.append(f"Every report (recipient, e-mail, type, rows, path): {where}")
    lines.append(f"Outbox messages (.eml): {paths.outbox / day}")
    if data["rows_quarantined"]:
        lines.append(f"Quarantined rows: {Path(paths.data) / 'quarantine' / day}")
    return lines


def run(args) -> int:
    """Run the day; print a short summary.  Exit 0 when all went well, 1 when an input failed or
    the counts do not reconcile (the other inputs are still processed)."""
    settings = load_settings(args.config)
    day = args.day or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    summary = run_day(settings, day, progress=args.progress, force=args.force, engine=args.engine)
    if summary.skipped:
        prev = summary.previous
        print(f"Herald run for {day}: already done (run {prev.get('run_id')}: {prev.get('rows_in')} rows in, "
              f"{len(prev.get('reports', []))} reports); nothing to do. Use --force to run it again.")
        if args.summary_json and prev:
            atomic_write(args.summary_json, summary_json(prev))
        if summary.new_inputs:
            print(f"herald: error: {len(summary.new_inputs)} input(s) are new or changed since that run "
                  f"and were NOT processed (use --force): " + ", ".join(summary.new_inputs), file=sys.stderr)
            return 1
        return 0
    data = summary.to_dict()
    if args.summary_json:
        atomic_write(args.summary_json, summary_json(data))
    out = sys.stdout
    for line in summary_lines(data, settings.paths, args.summary_json):
        print(line, file=out)
    for w in summary.warnings:
        print(f"herald: warning: {w}", file=sys.stderr)
    for e in summary.errors:
        print(f"herald: input failed: {e}", file=sys.stderr)
    if not summary.reconciles:
        print("herald: error: counts do not reconcile", file=sys.stderr)
    return 0 if summary.ok else 1

"""``herald parse PATH [--type TYPE] --format intelmq|csv``: read one report, print it."""

from __future__ import annotations

import json
import sys

import pyarrow.csv as pacsv

from herald.errors import InputError
from herald.sources.shadowserver_csv import read_file


def register(sub) -> None:
    """Add ``herald parse``."""
    p = sub.add_parser("parse", help="read a Shadowserver-format CSV report and print its events")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--type", dest="report_type", help="report type (default: from the file name)")
    p.add_argument("--format", choices=["intelmq", "csv"], default="intelmq",
                   help="intelmq: one IntelMQ event JSON object per line; csv: the normalized table")
    p.set_defaults(func=run)


def run(args) -> int:
    """Parse each file; print events to stdout, problems to stderr.  Exit 1 if a file failed."""
    from herald.schema.intelmq import to_intelmq

    status = 0
    for path in args.paths:
        try:
            parsed = read_file(path, args.report_type)
        except InputError as exc:
            print(f"herald: error: {exc}", file=sys.stderr)
            status = 1
            continue
        for q in parsed.quarantine.rows:
            print(f"herald: quarantined: {q['file']}:{q['line']} field {q['field']!r}: {q['reason']}"
                  f" (value {q['value']!r})", file=sys.stderr)
        if args.format == "intelmq":
            out = sys.stdout
            for event in to_intelmq(parsed.table, parsed.report_type):
                out.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
        else:
            pacsv.write_csv(parsed.table, sys.stdout.buffer)
            sys.stdout.flush()
    return status

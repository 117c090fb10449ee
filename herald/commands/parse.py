"""``herald parse PATH [--type TYPE] [--input FMT] --format intelmq|csv``: read one report, print it.

Input: a Shadowserver CSV report (type from ``--type`` or the file name), else any feed Herald reads
(:func:`herald.sources.detect.parse_any`: the format from ``--input`` or proven by the content).
"""

from __future__ import annotations

import json
import sys

import pyarrow.csv as pacsv

from herald.errors import InputError
from herald.sources.shadowserver_csv import read_file, type_from_filename


def register(sub) -> None:
    """Add ``herald parse``."""
    from herald.sources.detect import ALIASES, FORMATS

    p = sub.add_parser("parse", help="read a report or feed file and print its events")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--type", dest="report_type", help="report type (default: from the file name)")
    p.add_argument("--input", dest="input_format", choices=sorted(set(FORMATS) | set(ALIASES)),
                   help="input format of a feed file (default: a Shadowserver CSV when --type or the "
                        "file name gives its type, else proven by the content)")
    p.add_argument("--asn", type=int, help="the AS of a DShield AS details list (the ?as= of its download "
                                           "URL; the file does not name it)")
    p.add_argument("--format", choices=["intelmq", "csv"], default="intelmq",
                   help="intelmq: one IntelMQ event JSON object per line; csv: the normalized table")
    p.set_defaults(func=run)


def _read(path: str, args):
    """The parsed file: Shadowserver CSV when its type is known, else any feed format."""
    from herald.schema.registry import default_registry

    fmt = getattr(args, "input_format", None)
    named = type_from_filename(path)[0]
    if fmt is None and (args.report_type or (named and named in default_registry())):
        return read_file(path, args.report_type)
    from herald.sources.detect import parse_any

    opts = {"report_type": args.report_type} if args.report_type else {}
    if getattr(args, "asn", None) is not None:
        opts["asn"] = args.asn
    return parse_any(path, fmt, **opts)


def run(args) -> int:
    """Parse each file; print events to stdout, problems to stderr.  Exit 1 if a file failed."""
    from herald.schema.intelmq import to_intelmq

    status = 0
    for path in args.paths:
        try:
            parsed = _read(path, args)
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

"""``herald ingest PATH... [--format FMT] [--mapping FILE] [--type TYPE] --out DIR``.

Parses each input with :func:`herald.sources.detect.parse_any` and writes its typed table as Parquet
into ``DIR`` (``<input stem>.<report type>.parquet``) and, when rows were quarantined, the quarantine
table (``<input stem>.quarantine.parquet``; columns file, line, field, reason, value, raw).  Each write
goes to a temporary file in ``DIR`` first and is renamed into place (``os.replace``), so a reader
never sees half a file.  Prints one line per input: path, format, report type, rows, quarantined.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from herald.errors import ConfigError, InputError
from herald.fsutil import atomic_writer
from herald.sources.detect import ALIASES, FORMATS, detect_format, parse_any


def register(sub) -> None:
    """Add ``herald ingest``."""
    p = sub.add_parser("ingest", help="parse feed files (any supported format) into typed Parquet tables")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", dest="fmt", choices=sorted(set(FORMATS) | set(ALIASES)),
                   help="input format (default: the format each file's content proves; else an "
                        "'unsupported or ambiguous feed' error)")
    p.add_argument("--mapping", help="TOML mapping file for generic CSV input (implies --format generic_csv)")
    p.add_argument("--type", dest="report_type", help="report type for Shadowserver CSV or IntelMQ input")
    p.add_argument("--asn", type=int, help="the AS of a DShield AS details list (the ?as= of its download "
                                           "URL; the file does not name it)")
    p.add_argument("--out", required=True, help="directory for the Parquet files (created if missing)")
    p.set_defaults(func=run)


def write_parquet_atomic(table: pa.Table, dest: str | os.PathLike) -> None:
    """Write ``table`` to ``dest`` as Parquet via a temporary file in the same directory and
    ``os.replace`` (atomic on POSIX).  The temporary file is removed on failure.

    Raises:
        OSError: the directory is not writable.
    """
    with atomic_writer(Path(dest), durable=False) as fh:
        pq.write_table(table, fh)


def run(args) -> int:
    """Ingest each path; exit status 0 when every file was read (rows may be quarantined), 1 when a
    file could not be read at all, 2 for an invalid mapping (raised to the CLI)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in args.paths:
        opts = {}
        if args.mapping:
            opts["mapping"] = args.mapping
        if args.report_type:
            opts["report_type"] = args.report_type
        if args.asn is not None:
            opts["asn"] = args.asn
        try:
            fmt = args.fmt or ("generic_csv" if args.mapping else detect_format(path))
            parsed = parse_any(path, fmt, **opts)
        except ConfigError:
            raise
        except InputError as exc:
            print(f"herald: error: {exc}", file=sys.stderr)
            status = 1
            continue
        stem = Path(path).name.rsplit(".", 1)[0] if "." in Path(path).name else Path(path).name
        write_parquet_atomic(parsed.table, out / f"{stem}.{parsed.report_type.name}.parquet")
        qpath = out / f"{stem}.quarantine.parquet"
        if len(parsed.quarantine):
            write_parquet_atomic(parsed.quarantine.to_table(), qpath)
            for q in parsed.quarantine.to_table().to_pylist():
                print(f"herald: quarantined: {q['file']}:{q['line']} field {q['field']!r}: {q['reason']}"
                      f" (value {q['value']!r})", file=sys.stderr)
        elif qpath.exists():
            qpath.unlink()  # from an earlier run of a file that now reads cleanly
        print(f"{path}\tformat={fmt}\ttype={parsed.report_type.name}\trows={parsed.table.num_rows}"
              f"\tquarantined={len(parsed.quarantine)}")
    return status

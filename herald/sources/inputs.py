"""The day's inputs: which inbox files belong to a day, their identity, and how to open one.

- :func:`find_inputs` lists the inputs of a day (sorted paths);
- :func:`file_sha256` is an input's identity (hex SHA-256 of its bytes);
- :func:`open_input` opens one input as a stream of Arrow record batches of its report type,
  whatever its format (Shadowserver CSV, sensor Parquet, or another feed format recognised by
  :func:`herald.sources.detect.parse_any`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from herald.errors import InputError
from herald.fsutil import file_sha256
from herald.schema.registry import Registry, ReportType
from herald.sources.detect import parse_any
from herald.sources.shadowserver_csv import Quarantine, iter_file, type_from_filename

__all__ = ["OpenedInput", "file_sha256", "find_inputs", "open_input"]

_PARQUET_RE = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<type>[A-Za-z0-9_]+)-.*\.parquet$")


def find_inputs(inbox: Path, day: str) -> list[Path]:
    """The inputs of ``day``: files in ``<inbox>/<day>/`` (recursively) and files in ``<inbox>``
    whose names start with ``<day>-``; hidden, ``.license`` and ``.md`` files are skipped; sorted."""
    inbox = Path(inbox)
    found: list[Path] = []
    d = inbox / day
    if d.is_dir():
        found += [p for p in d.rglob("*") if p.is_file()]
    if inbox.is_dir():
        found += [p for p in inbox.iterdir() if p.is_file() and p.name.startswith(f"{day}-")]
    return sorted(p for p in found
                  if not p.name.startswith(".") and not p.name.endswith((".license", ".md")))


@dataclass(frozen=True)
class OpenedInput:
    """One input, opened.

    Attributes:
        report_type: its report type.
        quarantine: the rows that could not be read (filled while ``batches`` is consumed).
        batches: record batches of ``report_type.arrow_schema`` (plus extra string columns).
        format: the format's name (``shadowserver``, ``parquet``, a feed name).
        rows_in: the number of data rows read; final once ``batches`` is exhausted.
    """

    report_type: ReportType
    quarantine: Quarantine
    batches: Iterator[pa.RecordBatch]
    format: str
    rows_in: Callable[[], int]


def open_input(path: Path, registry: Registry) -> OpenedInput:
    """Open one input by its name and content (see the module docstring).

    Sensor Parquet files must be named ``YYYY-MM-DD-<type>-<sensor>-<n>.parquet`` and carry the
    type's columns; CSV files named after a known Shadowserver type are read as Shadowserver CSV;
    anything else goes through :func:`herald.sources.detect.parse_any`.

    Raises:
        InputError / UnknownReportType: the file cannot be read at all.
    """
    name = path.name
    if name.endswith(".parquet"):
        return _open_parquet(path, registry)
    ss_type, _ = type_from_filename(path)
    if name.endswith(".csv") and ss_type and ss_type in registry:
        it = iter_file(path, registry=registry)
        meta = next(it)
        return OpenedInput(meta.report_type, meta.quarantine, it, "shadowserver", lambda: meta.rows_in)
    parsed = parse_any(str(path))
    return OpenedInput(parsed.report_type, parsed.quarantine, iter(parsed.table.to_batches()),
                       getattr(parsed, "format", "feed"), lambda: parsed.rows_in)


def _open_parquet(path: Path, registry: Registry) -> OpenedInput:
    m = _PARQUET_RE.match(path.name)
    if not m:
        raise InputError("sensor Parquet files must be named YYYY-MM-DD-<type>-<sensor>-<n>.parquet",
                         str(path))
    rtype = registry.get(m.group("type"), source=str(path))
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"cannot read Parquet: {exc}", str(path)) from exc
    missing = [c for c in rtype.columns if c not in table.column_names]
    if missing:
        raise InputError(f"columns missing: {', '.join(missing)}", str(path))
    extras = [c for c in table.column_names if c not in rtype.column_types]
    try:
        # The type's columns with its types, then any extra columns as strings (as for CSV).
        table = table.select(list(rtype.columns) + extras).cast(pa.schema(
            list(rtype.arrow_schema) + [pa.field(c, pa.string()) for c in extras]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"columns do not have the report type's types: {exc}", str(path)) from exc
    return OpenedInput(rtype, Quarantine(str(path)), iter(table.to_batches()), "parquet",
                       lambda: table.num_rows)

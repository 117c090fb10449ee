"""Report files read back: a report CSV (as :mod:`herald.reports.render` writes it) as an Arrow
table of its type.

The inverse of :func:`herald.reports.render.render_csv` up to what the CSV keeps: timestamps are
whole seconds (the writer cuts the fraction off), a null and an absent column both come back as
null, an empty quoted string (``""``) stays an empty string, and string cells escaped against
spreadsheet formulas (:mod:`herald.reports.cells`) come back as the values they stand for.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from herald.reports.cells import unescape_formulas
from herald.schema.registry import ReportType

#: How :mod:`herald.reports.render` writes a timestamp (UTC, no offset).
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Bytes the CSV reader parses at a time (its memory is a small multiple of this).
READ_BLOCK_BYTES = 1 << 20


def read_report_csv(path: str | Path, rtype: ReportType) -> pa.Table:
    """The rows of one report file of ``rtype``.

    Args:
        path: a report CSV with a header row (columns in any order; the type's columns missing
            from it come back null, other columns are ignored).
        rtype: the report type; its :attr:`~herald.schema.registry.ReportType.arrow_schema`
            types every column (``int64``, ``timestamp[us, UTC]`` read as UTC, ``string``).

    Returns:
        a table with ``rtype.arrow_schema``, rows in file order.  Memory: about the size of the
        table plus :data:`READ_BLOCK_BYTES` of parse buffers.

    Raises:
        pyarrow.ArrowInvalid: the file is not a CSV of that type (a value of the wrong kind).
        OSError: the file cannot be read.
    """
    schema = rtype.arrow_schema
    # Timestamps carry no offset in the file: parse them naive, then declare them UTC.
    read_types = {f.name: (pa.timestamp(f.type.unit) if pa.types.is_timestamp(f.type) else f.type)
                  for f in schema}
    table = pacsv.read_csv(
        str(path),
        read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES, use_threads=False),
        convert_options=pacsv.ConvertOptions(
            column_types=read_types, include_columns=list(schema.names),
            include_missing_columns=True, strings_can_be_null=True,
            quoted_strings_can_be_null=False, null_values=[""],
            timestamp_parsers=[TIMESTAMP_FORMAT]))
    # String cells were escaped against spreadsheet formulas when written (docs/reports.md).
    cols = [unescape_formulas(table.column(f.name)) if pa.types.is_string(f.type)
            else table.column(f.name).cast(f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)

"""Line-oriented text feeds: the data lines of a list (blank and comment lines dropped), and
delimited text (CSV, TSV, ``|``-separated) parsed into string columns with each record's line."""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa

from herald.errors import InputError
from herald.sources.shadowserver_csv import Quarantine


#: Name of the line-number column that :func:`read_delimited` adds.
LINE_COL = "__line__"


def read_delimited(path: str, rows: Sequence[tuple[int, str]], names: Sequence[str],
                   quarantine: Quarantine, *, delimiter: str = ",", quote: bool = True
                   ) -> tuple[pa.Table, list[str]]:
    """Parse data lines of a delimited file with Arrow's CSV reader, every column as a string.

    Args:
        path: the file (for errors and the quarantine).
        rows: ``(physical line number, text)`` of each data record, header and comments removed
            (the feeds read here never have line breaks inside a field).
        names: the column names, one per field.
        quarantine: receives records with a wrong number of fields (reason
            ``expected N fields, found M``).
        delimiter: one character; ``quote``: whether ``"`` quotes fields (RFC 4180).

    Returns:
        ``(table, raws)``: ``table`` has :data:`LINE_COL` (``int64``, the physical line) then ``names``
        (``string``, ``""`` for empty); ``raws`` the text of each of its rows.

    The line number travels as an extra leading field, so that rows Arrow rejects are still reported
    with their line and rows it accepts keep theirs without a second scan.
    """
    import io

    import pyarrow.csv as pacsv

    names = list(names)
    if not rows:
        schema = pa.schema([(LINE_COL, pa.int64())] + [(c, pa.string()) for c in names])
        return schema.empty_table(), []
    buf = "\n".join(f"{no}{delimiter}{text}" for no, text in rows).encode("utf-8")
    bad: list[tuple[int, str, int]] = []

    def on_invalid(row) -> str:
        no_text, _, rest = row.text.partition(delimiter)
        bad.append((int(no_text) if no_text.isdigit() else None, rest, row.actual_columns - 1))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(buf),
            read_options=pacsv.ReadOptions(column_names=[LINE_COL] + names, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quote else False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={LINE_COL: pa.int64(), **{c: pa.string() for c in names}},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"cannot parse as delimited text: {exc}", path) from exc
    for no, text, found in bad:
        quarantine.add(no, None, f"expected {len(names)} fields, found {found}", None, text)
    by_line = dict(rows)
    raws = [by_line.get(no, "") for no in table.column(LINE_COL).to_pylist()]
    return table, raws


def data_lines(lines: Sequence[str], comment: str = "#") -> list[tuple[int, str]]:
    """``(line number, text)`` of the lines that are neither blank nor comments (a comment may be
    indented by spaces or tabs: ``generic_sample_report.csv`` has such lines)."""
    out = []
    for no, line in enumerate(lines, 1):
        s = line.strip()
        if s and not s.startswith(comment):
            out.append((no, line.rstrip("\r")))
    return out

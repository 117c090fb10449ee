"""How many data rows an input holds, for an input that cannot be read at all.

The daily run counts such rows as ``rows_failed`` so that the day's counts still reconcile
(``docs/input.md``, "Inputs that cannot be read").  The rule:

* a Parquet file (``.parquet``): the row count of its footer, or 0 when the footer cannot be read;
* any other file: the CSV records after the first (header) line, RFC 4180 quote-aware (a line
  break inside a quoted value does not end a record), blank lines not counted; bytes that are not
  UTF-8 are read as U+FFFD.  A file without any line counts 0.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def physical_rows(path: str | Path) -> int:
    """The data rows of ``path`` by the rule of the module docstring.

    Returns:
        a count >= 0.

    Raises:
        OSError: the file cannot be opened.
    """
    path = Path(path)
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowInvalid):
            return 0
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, strict=False)
        n = -1  # the header
        try:
            for record in reader:
                if record:
                    n += 1
        except csv.Error:
            # A malformed record (e.g. an unterminated quote at the end): count the rest by lines.
            n += 1 + sum(1 for line in fh if line.strip())
        return max(n, 0)

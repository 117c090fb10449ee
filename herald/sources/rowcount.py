"""How many data rows an input holds, for an input that cannot be read at all.

The daily run counts such rows as ``rows_failed`` so that the day's counts still reconcile
(``docs/input.md``, "Inputs that cannot be read").  The rule:

* a Parquet file (``.parquet``): the row count of its footer, or 0 when the footer cannot be read;
* JSON (a name ending ``.json``, ``.jsonl`` or ``.ndjson``, or a first non-blank character ``{``
  or ``[``): a document that is one JSON array counts its elements; otherwise every non-blank line
  is one record (JSON Lines, as IntelMQ writes events);
* any other file: the CSV records after the first (header) line, RFC 4180 quote-aware (a line
  break inside a quoted value does not end a record), blank lines not counted; bytes that are not
  UTF-8 are read as U+FFFD.  A file without any line counts 0.  (A text feed without a header
  line is counted one short: the rule cannot tell a header from a first record.)
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
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.name.endswith((".json", ".jsonl", ".ndjson")) or head[:1] in (b"{", b"["):
        return _json_records(path)
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


def _json_records(path: Path) -> int:
    """Elements of a JSON array document, else non-blank lines (JSON Lines)."""
    import json

    text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip("\ufeff \t\r\n").startswith("["):
        try:
            doc = json.loads(text.lstrip("\ufeff"))
        except ValueError:
            doc = None
        if isinstance(doc, list):
            return len(doc)
    return sum(1 for line in text.splitlines() if line.strip())

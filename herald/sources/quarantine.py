"""The quarantine of one input: rows that could not be read, with file, physical line, field and
reason (``docs/input.md``, "Quarantine")."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

#: Columns of the quarantine table.
QUARANTINE_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line", pa.int64()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("value", pa.string()),
        ("raw", pa.string()),
    ]
)


@dataclass
class Quarantine:
    """Rows of one input that could not be read, with their reasons.

    Attributes:
        path: the input file.
        rows: list of dicts with the keys of :data:`QUARANTINE_SCHEMA`.
    """

    path: str
    rows: list[dict] = field(default_factory=list)

    def add(self, line: int | None, fld: str | None, reason: str, value: str | None = None,
            raw: str | None = None) -> None:
        """Record one quarantined row (``line`` is 1-based and physical, header is line 1)."""
        self.rows.append({"file": self.path, "line": line, "field": fld, "reason": reason,
                          "value": value, "raw": raw})

    def __len__(self) -> int:
        return len(self.rows)

    def to_table(self) -> pa.Table:
        """The rows as an Arrow table of :data:`QUARANTINE_SCHEMA`, sorted by line."""
        rows = sorted(self.rows, key=lambda r: (r["line"] or 0))
        return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)

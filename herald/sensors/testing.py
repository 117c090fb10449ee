"""Helpers for tests and benchmarks of the sensors: build settings in code, read back the inbox.

Not used by the sensors themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from herald.config import Settings, settings_from_dict
from herald.schema.registry import default_registry
from herald.sensors.batch import INBOX_NAME_RE

__all__ = ["INBOX_NAME_RE", "sinkhole_settings", "inbox_files", "read_inbox", "count_rows"]



def sinkhole_settings(base: Path, sinkhole: dict[str, Any]) -> Settings:
    """Settings whose inbox is ``base/inbox`` and whose ``[sinkhole]`` section is ``sinkhole``."""
    return settings_from_dict({"paths": {"inbox": "inbox"}, "sinkhole": sinkhole}, base=Path(base))


def inbox_files(inbox: Path) -> list[Path]:
    """Every ``*.parquet`` file of every day folder of ``inbox``, sorted."""
    return sorted(Path(inbox).glob("*/*.parquet"))


def read_inbox(inbox: Path, rtype: str | None = None) -> pa.Table | None:
    """All rows of the inbox files of report type ``rtype`` (every type when ``None``) as one table.

    Checks each file as the daily run will see it: the name matches :data:`INBOX_NAME_RE`, the day
    folder is the name's day, and the schema is exactly the type's ``arrow_schema``.

    Returns ``None`` when there is no such file.

    Raises:
        AssertionError: a file breaks one of the rules above.
    """
    reg = default_registry()
    tables = []
    for p in inbox_files(inbox):
        m = INBOX_NAME_RE.match(p.name)
        assert m, f"bad inbox file name {p.name}"
        assert p.parent.name == m["day"], f"{p} is not in its day folder"
        if rtype is not None and m["rtype"] != rtype:
            continue
        t = pq.read_table(p)
        want = reg.get(m["rtype"]).arrow_schema
        head = pa.schema(list(t.schema)[:len(want)])
        assert head.equals(want), f"{p}: schema differs from {m['rtype']}"
        assert all(f.type == pa.string() for f in list(t.schema)[len(want):]), f"{p}: extra columns"
        tables.append(t)
    if not tables:
        return None
    return pa.concat_tables(tables)


def count_rows(inbox: Path) -> int:
    """Number of rows in all inbox files (Parquet metadata only, no data read)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in inbox_files(inbox))

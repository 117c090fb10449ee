"""Report files: naming and CSV rendering.

File name (Shadowserver convention, ``schema/shadowserver/report-filename.md``)::

    YYYY-MM-DD-<report type>-<recipient slug>-<filter>.csv

``<filter>`` says what the recipient's share was selected by (``asn``, ``cidr``, ``geo`` or a mix
joined by ``_``).  Neither the type nor the slug contains ``-``, so Shadowserver's regular
expression ``^(\\d{4}-\\d{2}-\\d{2})-([^-]+)-.+\\.csv$`` reads date and type back.

CSV: RFC 4180, header row, the type's columns in schema order, strings quoted, integers bare,
timestamps as ``YYYY-MM-DD HH:MM:SS`` (UTC), empty for null: the same shape as Shadowserver's files.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from herald.constituency.recipients import Recipient
from herald.schema.registry import TIMESTAMP_TYPE, ReportType


def report_filename(day: str, rtype: ReportType, recipient: Recipient, ext: str = "csv") -> str:
    """``YYYY-MM-DD-<type>-<slug>-<filter>.<ext>``."""
    return f"{day}-{rtype.name}-{recipient.slug}-{recipient.filter_label}.{ext}"


def for_csv(table: pa.Table, rtype: ReportType) -> pa.Table:
    """The type's columns in schema order, timestamps formatted as Shadowserver writes them."""
    cols = []
    for name, typ in rtype.column_types.items():
        col = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, typ)
        if typ == TIMESTAMP_TYPE:
            # whole seconds, as Shadowserver writes them (strftime's %S would add the fraction)
            col = pc.strftime(pc.cast(col, pa.timestamp("s", tz="UTC"), safe=False),
                              format="%Y-%m-%d %H:%M:%S", locale="C")
        cols.append(col)
    return pa.Table.from_arrays(cols, names=list(rtype.column_types))


def render_csv(table: pa.Table, rtype: ReportType) -> bytes:
    """The CSV bytes of a report (see the module docstring for the format)."""
    buf = io.BytesIO()
    pacsv.write_csv(for_csv(table, rtype), buf,
                    write_options=pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    return buf.getvalue()


def atomic_write(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` via a temporary file and rename; returns the hex SHA-256.

    A file whose content is already ``data`` is left untouched (keeps its mtime on re-runs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    if path.exists() and path.stat().st_size == len(data):
        if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return digest
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest

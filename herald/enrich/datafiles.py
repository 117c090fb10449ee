"""Reading IP data files (pyasn ``IPASN`` files, RIR delegated statistics): their text (gzip or
not), their data lines as an Arrow array, the date a file is of, and what to do with malformed
lines.  The formats themselves are parsed by :class:`herald.enrich.ipdata.IPData`'s loaders.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError


def read_text(path: Path) -> str:
    """The whole file as text; gzip-compressed files (magic ``1f 8b``) are decompressed.

    Raises:
        InputError: the file cannot be read or is not UTF-8 (naming the line).
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read: {exc}", str(path)) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"not UTF-8 text: {exc.reason}", str(path), line) from None


def text_lines(text: str) -> pa.Array:
    """Lines of ``text`` (without line ends) as an Arrow string array; line ``i`` is line ``i+1``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return pc.utf8_rtrim(pa.array(lines, type=pa.string()), "\r")


def data_lines(lines: pa.Array, comment_re: str) -> tuple[np.ndarray, pa.Array]:
    """The non-blank, non-comment lines of a text file, trimmed.

    Returns:
        ``(idx, rows)``: ``int64[K]`` 0-based line indices and the ``K`` trimmed lines.
    """
    s = pc.utf8_trim_whitespace(lines)
    skip = pc.or_(pc.equal(s, ""), pc.match_substring_regex(s, comment_re)).to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(~skip)
    return idx, s.take(pa.array(idx, type=pa.int64()))


def date_from(text: str | None) -> str | None:
    """``YYYY-MM-DD`` from the first plausible ``YYYYMMDD`` in ``text``, else ``None``."""
    for m in re.finditer(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)", text or ""):
        try:
            d = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
        if d.year >= 1990:
            return d.isoformat()
    return None


def ipasn_original_name(text: str) -> str | None:
    """The file name on the ``; Original file: <name>`` comment line of a pyasn IPASN file (within
    its first 4 KiB), or ``None``."""
    m = re.search(r"^;\s*Original file\s*:\s*(.*)$", text[:4096], re.M)
    return m.group(1) if m else None


def malformed_lines(path: Path, line_idx: np.ndarray, bad: np.ndarray, reasons: np.ndarray, rows: pa.Array,
                strict: bool) -> dict[str, Any]:
    """Raise for the first malformed line (strict) or report counts (lenient).

    Args:
        path: the file, for messages.
        line_idx: ``int64[K]`` 0-based line index of each data line; ``rows``: their text.
        bad: ``bool[K]`` malformed lines; ``reasons``: ``str[K]`` why each is malformed.
        strict: raise instead of counting.

    Returns:
        ``{"skipped_lines": count, "skipped_examples": up to 5 "path:line: reason" strings}``.

    Raises:
        InputError: ``strict`` and a line is malformed (the first one, naming its line).
    """
    bad_pos = np.flatnonzero(bad)
    if not len(bad_pos):
        return {"skipped_lines": 0, "skipped_examples": []}
    if strict:
        i = int(bad_pos[0])
        text = rows[i].as_py()
        raise InputError(f"malformed line: {reasons[i]}: {text[:120]!r}", str(path), int(line_idx[i]) + 1)
    examples = [f"{path}:{int(line_idx[i]) + 1}: {reasons[i]}" for i in bad_pos[:5]]
    return {"skipped_lines": int(len(bad_pos)), "skipped_examples": examples}

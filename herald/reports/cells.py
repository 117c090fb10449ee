"""Report cells that a spreadsheet would run as a formula, escaped so that it does not.

Attacker-controlled text reaches the reports (user agents, host names and URLs seen by the
sinkholes, fields of third-party feeds).  A spreadsheet program opening a report CSV treats a
cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula (OWASP,
"CSV Injection"); ``=HYPERLINK(...)`` or ``=WEBSERVICE(...)`` then runs on the recipient's machine.

The rule, for **string columns only** (timestamps and integers are written by Herald and never
start with these characters; a negative integer stays a number):

* **write**: a value matching ``^'*[=+\\-@\\t\\r]`` gets one ``'`` prepended;
* **read**: a value matching ``^'+[=+\\-@\\t\\r]`` loses one leading ``'``.

The two are inverse for every string (a written value matching the read pattern always came from
a value matching the write pattern, because ``'+X`` is a subset of ``'*X``), so a machine reader
recovers the exact value, and a spreadsheet shows the text with the leading ``'`` (which most
programs hide: it is their own "text" marker).  See ``docs/reports.md``.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Values that :func:`escape_formulas` prefixes with ``'`` (RE2 and Python syntax).
ESCAPE_PATTERN = r"^'*[=+\-@\t\r]"
#: Values from which :func:`unescape_formula` removes one leading ``'``.
UNESCAPE_PATTERN = r"^'+[=+\-@\t\r]"
_UNESCAPE_RE = re.compile(UNESCAPE_PATTERN)
_ESCAPE_RE = re.compile(ESCAPE_PATTERN)


def escape_formulas(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Prefix ``'`` to every value of a string column that matches :data:`ESCAPE_PATTERN`.

    Vectorized: the first byte of every value is read from the array's buffers with numpy (one
    gather); only a chunk holding a value that starts with ``'`` runs the regular expression
    (``pyarrow.compute.match_substring_regex``), and only a chunk with a match is rewritten
    (``if_else``); any other chunk is returned as is, without a copy.  Nulls stay null.

    Args:
        col: ``string`` (or ``large_string``) array of N values.

    Returns:
        the same type and length as ``col``.
    """
    if isinstance(col, pa.ChunkedArray):
        chunks = [escape_formulas(c) for c in col.chunks]
        if all(a is b for a, b in zip(chunks, col.chunks)):
            return col
        return pa.chunked_array(chunks, col.type)
    first = _first_bytes(col)
    mask = np.isin(first, _DANGER)
    quoted = first == ord("'")
    if quoted.any():
        mask |= quoted & pc.fill_null(pc.match_substring_regex(col, ESCAPE_PATTERN), False
                                      ).to_numpy(zero_copy_only=False)
    if not mask.any():
        return col
    return pc.if_else(pa.array(mask), pc.binary_join_element_wise("'", col, ""), col)


#: First bytes that start a formula (``=+-@``, tab, carriage return).
_DANGER = np.frombuffer(b"=+-@\t\r", dtype=np.uint8)


def _first_bytes(arr: pa.Array) -> np.ndarray:
    """``uint8[N]``: the first byte of each value (0 for an empty value; a null slot may give
    any byte, which only costs a look by the regular expression)."""
    n = len(arr)
    _validity, offsets_buf, data_buf = arr.buffers()[:3]
    dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=dtype)[arr.offset:arr.offset + n + 1]
    first = np.zeros(n, dtype=np.uint8)
    if data_buf is None or n == 0:
        return first
    data = np.frombuffer(data_buf, dtype=np.uint8)
    starts = offsets[:-1]
    nonempty = offsets[1:] > starts
    first[nonempty] = data[starts[nonempty]]
    return first


def unescape_formulas(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The inverse of :func:`escape_formulas`: remove one leading ``'`` from every value matching
    :data:`UNESCAPE_PATTERN` (a report CSV's string column read back).  Nulls stay null."""
    mask = pc.match_substring_regex(col, UNESCAPE_PATTERN)
    if not pc.any(mask).as_py():
        return col
    return pc.if_else(mask, pc.utf8_slice_codeunits(col, 1), col)


def escape_formula(value: str) -> str:
    """:func:`escape_formulas` of one value."""
    return "'" + value if _ESCAPE_RE.match(value) else value


def unescape_formula(value: str) -> str:
    """The original value of a report cell of a string column (inverse of :func:`escape_formula`):
    one leading ``'`` is removed when the value matches :data:`UNESCAPE_PATTERN`."""
    return value[1:] if _UNESCAPE_RE.match(value) else value

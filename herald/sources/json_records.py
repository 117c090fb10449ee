"""JSON feeds (a JSON array of objects, or JSON lines) as records or as string columns, each record
with its 1-based physical line and raw text for the quarantine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError
from herald.sources.feed_files import read_bytes
from herald.sources.shadowserver_csv import Quarantine


@dataclass
class JsonRecords:
    """The objects of a JSON document (an array of objects) or of a JSON-lines file.

    Attributes:
        records: the decoded objects, in file order.
        lines: ``int64[len(records)]``: 1-based physical line where each object starts.
        raws: the source text of each object (for the quarantine).
    """

    records: list[Any]
    lines: np.ndarray
    raws: list[str]


def _line_starts(text: str) -> np.ndarray:
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.flatnonzero(arr == 0x0A)


def read_json_array(path: str, text: str | None = None) -> JsonRecords:
    """Read a JSON document whose top level is an array (Feodo Tracker JSON, CTIP Interflow).

    Records are decoded one by one (``json.JSONDecoder.raw_decode``) so that each gets its line number.
    Python's decoder is used because Arrow's JSON reader reads only newline-delimited objects.

    Raises:
        InputError: empty file; top level not an array; a syntax error or truncation (names the line).
    """
    if text is None:
        text = read_bytes(path).decode("utf-8-sig", errors="replace")
    nls = _line_starts(text)
    dec = json.JSONDecoder()

    def line_of(pos: int) -> int:
        return int(np.searchsorted(nls, pos, side="left")) + 1

    n = len(text)
    i = 0
    while i < n and text[i].isspace():
        i += 1
    if i >= n:
        raise InputError("file is empty", path)
    if text[i] != "[":
        raise InputError("expected a JSON array of objects", path, line_of(i))
    i += 1
    records, lines, raws = [], [], []
    expect_value = True
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise InputError("truncated JSON: the array is not closed", path, line_of(n - 1))
        if text[i] == "]" and (not records or not expect_value):
            i += 1
            break
        if text[i] == "," and not expect_value:
            i += 1
            expect_value = True
            continue
        if not expect_value:
            raise InputError(f"invalid JSON: expected ',' or ']' but found {text[i]!r}", path, line_of(i))
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            reason = "truncated JSON" if exc.pos >= n - 1 or "Unterminated" in exc.msg or \
                "Expecting" in exc.msg and exc.pos >= len(text.rstrip()) else "invalid JSON"
            raise InputError(f"{reason}: {exc.msg}", path, exc.lineno) from exc
        records.append(obj)
        lines.append(line_of(i))
        raws.append(text[i:end])
        i = end
        expect_value = False
    while i < n and text[i].isspace():
        i += 1
    if i < n:
        raise InputError("invalid JSON: data after the closing ']'", path, line_of(i))
    return JsonRecords(records, np.asarray(lines, dtype=np.int64), raws)


def read_json_lines(path: str, quarantine: Quarantine, text: str | None = None) -> JsonRecords:
    """Read a JSON-lines file (one object per line; blank lines skipped).

    A line that is not valid JSON, or not an object, goes to ``quarantine`` (field ``None``, reason
    ``invalid JSON: ...``) and reading goes on: one broken line in a daily CTIP file must not lose the
    day.  Its records are *not* in the result; callers count them through ``len(quarantine)``.

    Raises:
        InputError: the file cannot be read or is empty.
    """
    if text is None:
        text = read_bytes(path).decode("utf-8-sig", errors="replace")
    records, lines, raws = [], [], []
    loads = json.loads
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        try:
            obj = loads(s)
        except ValueError as exc:
            quarantine.add(no, None, f"invalid JSON: {getattr(exc, 'msg', exc)}", None, line)
            continue
        if not isinstance(obj, dict):
            quarantine.add(no, None, "invalid JSON: expected an object", None, line)
            continue
        records.append(obj)
        lines.append(no)
        raws.append(line)
    return JsonRecords(records, np.asarray(lines, dtype=np.int64), raws)


def flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def to_text(v: Any) -> str:
    """A JSON value as the text a report column holds: ``None`` -> ``""``; lists/objects as compact
    JSON; ``True`` -> ``"true"``; numbers as written (``16276``; floats without a trailing ``.0``)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def column(records: Sequence[dict], key: str) -> pa.Array:
    """String column of ``key`` over ``records`` (missing or null -> ``""``), see :func:`to_text`."""
    return pa.array([to_text(r.get(key)) for r in records], pa.string())


class LazyLines:
    """Text of physical lines of a byte buffer, decoded only when asked for (the quarantine needs
    the raw text of bad records only).  ``obj[i]`` is the ``i``-th selected line."""

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self._data, self._starts, self._ends = data, starts, ends

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> str:
        return self._data[int(self._starts[i]):int(self._ends[i])].decode("utf-8", "replace").rstrip("\r")


def _line_spans(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-based numbers, start and end offsets of the non-blank lines of ``data`` (vectorized)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 0x0A)
    ends = np.append(nl, len(arr)) if not len(nl) or nl[-1] != len(arr) - 1 else nl
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    has_text = ends > starts
    # Lines of white space only are rare and short: check the short ones one by one.
    for i in np.flatnonzero(has_text & (ends - starts <= 16)):
        if not data[starts[i]:ends[i]].strip():
            has_text[i] = False
    numbers = np.arange(1, len(starts) + 1, dtype=np.int64)
    return numbers[has_text], starts[has_text], ends[has_text]


class _TextColumns(dict):
    """Column name -> Arrow array, cast to text on first access (only the columns a parser uses)."""

    def _text(self, key: str) -> pa.Array:
        col = dict.__getitem__(self, key)
        if not pa.types.is_string(col.type):
            col = _as_text(col)
            dict.__setitem__(self, key, col)
        return col

    def __getitem__(self, key: str) -> pa.Array:
        return self._text(key)

    def get(self, key, default=None):
        return self._text(key) if key in self else default


def _no_timestamps(typ: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return pa.string()
    if pa.types.is_struct(typ):
        return pa.struct([pa.field(typ.field(i).name, _no_timestamps(typ.field(i).type))
                          for i in range(typ.num_fields)])
    if pa.types.is_list(typ):
        return pa.list_(_no_timestamps(typ.value_type))
    return typ


def _has_timestamp(schema: pa.Schema) -> bool:
    return any(_no_timestamps(f.type) != f.type for f in schema)


def _as_text(col: pa.Array) -> pa.Array:
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), pa.string())
    if pa.types.is_boolean(col.type):
        return pc.if_else(col, "true", "false")
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_string(col.type) \
            or pa.types.is_large_string(col.type):
        # Arrow writes floats as JSON does (48.2 -> "48.2", 16.0 -> "16"), like to_text.
        return pc.cast(col, pa.string())
    # Lists and objects: as compact JSON text, like to_text.
    return pa.array([to_text(v) if v is not None else None for v in col.to_pylist()], pa.string())


def json_lines_columns(path: str, data: bytes, quarantine: Quarantine, string_fields: Sequence[str] = ()
                       ) -> tuple[dict[str, pa.Array], np.ndarray, Sequence[str]]:
    """Read a JSON-lines file into string columns, nested objects flattened to dotted names.

    Fast path: Arrow's JSON reader (vectorized; one object per line).  When Arrow rejects the file
    (a broken line, or a key whose type changes between lines), the file is read again line by line
    with :func:`read_json_lines`, which quarantines only the broken lines.

    Returns:
        ``(columns, lines, raws)``: dotted key -> ``string`` array (missing/null -> null; numbers as
        text; arrays as compact JSON; converted when first looked up), the 1-based line of each
        record and its text.  ``string_fields``: top-level keys known to hold text that Arrow would
        take for timestamps (``time.source``); declaring them saves a second read.
    """
    import io

    import pyarrow.json as pajson

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines, starts, ends = _line_spans(data)
    try:
        ropts = pajson.ReadOptions(use_threads=True, block_size=16 << 20)
        hint = pajson.ParseOptions(explicit_schema=pa.schema([(k, pa.string()) for k in string_fields]),
                                   unexpected_field_behavior="infer")
        table = pajson.read_json(io.BytesIO(data), read_options=ropts, parse_options=hint)
        if _has_timestamp(table.schema):
            # Arrow infers timestamps from ISO-looking strings ("2022-11-15" becomes midnight):
            # read again with those fields declared as strings, so values stay as written.
            schema = pa.schema([pa.field(f.name, _no_timestamps(f.type)) for f in table.schema])
            table = pajson.read_json(io.BytesIO(data), read_options=ropts,
                                     parse_options=pajson.ParseOptions(explicit_schema=schema))
        if table.num_rows != len(lines):
            raise pa.ArrowInvalid("record count differs from non-blank line count")
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table = table.flatten()
        cols = _TextColumns((name, table.column(name).combine_chunks()) for name in table.column_names)
        return cols, lines, LazyLines(data, starts, ends)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    recs = read_json_lines(path, quarantine, data.decode("utf-8", errors="replace"))
    flat = [flatten(r) for r in recs.records]
    keys: dict[str, None] = {}
    for r in flat:
        keys.update(dict.fromkeys(r))
    cols = {k: pa.array([to_text(r[k]) if r.get(k) is not None else None for r in flat], pa.string())
            for k in keys}
    return cols, recs.lines, recs.raws

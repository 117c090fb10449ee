"""The IntelMQ export: each row of a normalized report table as one IntelMQ event.

See :mod:`herald.schema.intelmq` for the sources of the rules and Herald's deliberate differences.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Iterator

import pyarrow as pa

from herald.schema.intelmq.functions import FUNCTIONS
from herald.schema.intelmq.harmonization import InvalidKey, InvalidValue, sanitize_value
from herald.schema.intelmq.mapping import fallback_mapping
from herald.schema.registry import ReportType

__all__ = ["to_intelmq"]

_UTC = _dt.timezone.utc


def _fixed_fields(fields: dict[str, Any] | None) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Sanitized constant (or default) fields, and those no IntelMQ field accepts (for extra)."""
    good, bad = [], {}
    for key, value in (fields or {}).items():
        try:
            good.append((key, sanitize_value(key, value)))
        except (InvalidValue, InvalidKey):
            bad[key.replace(".", "_")] = value
    return good, bad


def _raw_column(col: pa.ChunkedArray | pa.Array) -> list[str]:
    """The text IntelMQ would have read for each value: null -> "", integers in decimal,
    timestamps as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (UTC), strings unchanged."""
    typ = col.type
    values = col.to_pylist()
    if pa.types.is_timestamp(typ):
        out = []
        for v in values:
            if v is None:
                out.append("")
            else:
                v = v.astimezone(_UTC) if v.tzinfo else v
                out.append(v.strftime("%Y-%m-%d %H:%M:%S") + (f".{v.microsecond:06d}" if v.microsecond else ""))
        return out
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return ["" if v is None else v for v in values]
    return ["" if v is None else str(v) for v in values]


def _items(mapping: dict[str, Any], section: str) -> list[tuple[Any, str, Callable | None, bool]]:
    out = []
    for item in mapping.get(section) or []:
        key, col = item[0], item[1]
        func = FUNCTIONS.get(item[2]) if len(item) > 2 and item[2] else None
        out.append((key, col, func, len(item) > 3 and bool(item[3])))
    return out


def _convert(func: Callable | None, with_row: bool, raw: str, row: dict[str, str]) -> Any:
    if func is None:
        return raw
    return func(raw, row) if with_row else func(raw)


def to_intelmq(table: pa.Table, rtype: ReportType) -> Iterator[dict[str, Any]]:
    """Yield one IntelMQ event dict per row of ``table``, in row order.

    Args:
        table: a normalized table of ``rtype`` (see :func:`herald.sources.shadowserver_csv.read_file`):
            the type's columns typed (``timestamp[us, UTC]``, ``int64``, ``string``; empty values
            null), then any further columns of the file as strings.
        rtype: the report type.  Its ``intelmq`` entry (intelmq.json) gives the mapping; a type
            without one gets a generic mapping (time, address, port, ASN, country, classification;
            everything else in ``extra``).

    Returns:
        an iterator of flat dicts keyed by IntelMQ harmonization field names.  ``feed.name`` is
        the mapping's ``feed_name`` (else the type's title), ``feed.documentation`` its ``url``.
        Values are ``str``, ``int``, ``float`` or ``bool`` as IntelMQ 3.5.0 would store them;
        ``raw`` and ``time.observation`` are not set.

    Raises:
        nothing for bad data: a value that no IntelMQ field accepts goes to ``extra`` under its
        column name (raw text), as IntelMQ does for optional fields.
    """
    mapping = rtype.intelmq or fallback_mapping(rtype)
    required = _items(mapping, "required_fields")
    optional = _items(mapping, "optional_fields")
    constants, bad_constants = _fixed_fields(mapping.get("constant_fields"))
    defaults, bad_defaults = _fixed_fields(mapping.get("default_fields"))
    fixed_extra = {**bad_constants, **bad_defaults}
    feed_name = mapping.get("feed_name") or rtype.title
    doc = mapping.get("url") or rtype.url

    names = table.column_names
    columns = [_raw_column(table.column(i)) for i in range(table.num_columns)]
    for values in zip(*columns):
        row = dict(zip(names, values))
        yield _event(row, names, required, optional, constants, defaults, fixed_extra, feed_name, doc)


def _event(row: dict[str, str], names: list[str], required, optional, constants, defaults,
           fixed_extra: dict[str, Any], feed_name: str, doc: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {}
    if feed_name:
        event["feed.name"] = feed_name
    if doc:
        event["feed.documentation"] = doc
    extra: dict[str, Any] = dict(fixed_extra)
    # Columns whose value has not been used yet (a count: a column used by two fields is
    # "re-added" for the second, as IntelMQ does); what is left at the end goes to extra.
    pending = dict.fromkeys(names, 1)

    def put(key: str, value: Any) -> None:
        if key in event:
            raise InvalidValue(f"{key} is set twice")
        clean = sanitize_value(key, value)
        if clean is not None:
            event[key] = clean

    for key, col, func, with_row in required:
        if not pending.get(col):
            if col not in row:
                continue  # Herald: a required column missing from the file is optional.
            pending[col] = 1
        try:
            value = _convert(func, with_row, row[col], row)
        except (ValueError, TypeError, ArithmeticError):
            continue  # IntelMQ rejects the row; Herald keeps the raw text (extra).
        if value is None:
            continue  # IntelMQ keeps the column for extra.
        try:
            put(key, value)
        except InvalidValue:
            continue  # IntelMQ rejects the row; Herald keeps the raw text (extra).
        except InvalidKey:
            pass  # IntelMQ drops the value (warning "Key not found").
        pending[col] -= 1

    for key, col, func, with_row in optional:
        if not pending.get(col):
            if col not in row:
                continue
            pending[col] = 1
        try:
            value = _convert(func, with_row, row[col], row)
        except (ValueError, TypeError, ArithmeticError):
            continue  # IntelMQ rejects the row; Herald keeps the raw text (extra).
        if value is None:
            pending[col] -= 1
            continue
        if key == "extra.":
            extra[col] = value
        elif isinstance(key, str) and key.startswith("extra."):
            extra[key[len("extra."):]] = value
        elif key is False or not key:
            pass  # explicitly ignored column
        else:
            try:
                put(key, value)
            except InvalidValue:
                continue  # the raw column goes to extra
            except InvalidKey:
                extra[key] = value
        pending[col] -= 1

    for key, value in constants:
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    for key, value in defaults:
        if value is not None and key not in event:
            event[key] = value

    for col, count in pending.items():
        if count > 0 and row[col] != "":
            extra[col] = row[col]
    for key, value in extra.items():
        event[f"extra.{key}"] = value
    return event

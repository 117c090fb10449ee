"""Time columns of the feeds as UTC text ``YYYY-MM-DD HH:MM:SS[.ffffff]``, the form
:func:`herald.sources.feed_table.finish` types.

Every converter of a column returns ``(text, bad)``: a ``string`` array (null where the value is
empty or not a time) and ``bad``, a ``bool`` numpy array, true where a non-empty value is not a time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError


def observed_text(value: Any) -> str:
    """``observed_at`` option (``datetime``, ``date`` or text) as ``YYYY-MM-DD HH:MM:SS`` UTC text.

    A naive ``datetime`` is taken as UTC; an aware one is converted to UTC.

    Raises:
        InputError: text that is not ``YYYY-MM-DD[ HH:MM:SS]``.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d 00:00:00")
    text = str(value).strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    raise InputError(f"observed_at {text!r} is not YYYY-MM-DD[ HH:MM:SS]")


def ts_to_text(ts: pa.Array) -> pa.Array:
    """``timestamp`` array (any unit, UTC) -> ``YYYY-MM-DD HH:MM:SS[.ffffff]`` text (null stays null)."""
    return pc.strftime(ts, format="%Y-%m-%d %H:%M:%S")


def epoch_seconds(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Unix time in seconds (decimal digits, as Spamhaus CERT ``lastseen``) -> UTC text.

    Returns ``(text, bad)``: ``bad`` is true where the value is non-empty but not a plausible Unix time
    (digits only, at most 11 of them).
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
    ok = pc.match_substring_regex(s, r"^\d{1,11}$").to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)
    secs = pc.cast(pc.if_else(pa.array(ok), s, pa.nulls(len(s), pa.string())), pa.int64())
    ts = pc.cast(secs, pa.timestamp("s", tz="UTC"))
    return ts_to_text(ts), ~ok & ~empty


def nt_time(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Windows NT time (100 ns ticks since 1601-01-01 UTC, CTIP ``DateTimeReceivedUtc``) -> UTC text.

    Accepts an integer or string array.  ``bad``: non-empty and not a non-negative integer.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(pc.cast(col, pa.string()), ""))
    ok = pc.match_substring_regex(s, r"^\d{1,19}$").to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)
    ticks = pc.cast(pc.if_else(pa.array(ok), s, pa.nulls(len(s), pa.string())), pa.int64())
    # 11644473600 s between 1601-01-01 and 1970-01-01 (MS-DTYP 2.3.3 FILETIME).
    micros = pc.subtract(pc.divide(ticks, 10), 11644473600 * 1_000_000)
    ts = pc.cast(micros, pa.timestamp("us", tz="UTC"))
    return ts_to_text(ts), ~ok & ~empty


def strptime_distinct(col: pa.Array, parse: Callable[[str], dt.datetime | None]
                      ) -> tuple[pa.Array, np.ndarray]:
    """Parse a string column with a Python function, once per *distinct* value.

    Args:
        col: string array of length N.
        parse: text -> aware or naive ``datetime`` (naive is UTC), or ``None`` / raises ``ValueError``
            when the text is not a time.

    Returns:
        ``(text, bad)`` as the other converters.  Feeds repeat the same few times (a list's generation
        time, per-second times), so the Python work is bounded by the distinct count.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
    d = pc.dictionary_encode(s)
    out, bad_d = [], []
    for v in d.dictionary.to_pylist():
        if v == "":
            out.append(None)
            bad_d.append(False)
            continue
        try:
            t = parse(v)
        except (ValueError, OverflowError):
            t = None
        if t is not None and t.tzinfo is not None:
            t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
        out.append(t.strftime("%Y-%m-%d %H:%M:%S") + (f".{t.microsecond:06d}" if t and t.microsecond else "")
                   if t is not None else None)
        bad_d.append(t is None)
    idx = d.indices
    text = pa.array(out, pa.string()).take(idx)
    bad = np.asarray(bad_d, dtype=bool)[idx.to_numpy(zero_copy_only=False)] if len(idx) else \
        np.zeros(0, dtype=bool)
    return text, bad


_UTC_ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z| ?UTC| ?\+00:?00)?$"


def iso_times(col: pa.Array, tz: dt.tzinfo = dt.timezone.utc) -> tuple[pa.Array, np.ndarray]:
    """ISO 8601 times with any UTC offset (``2018-06-19T13:02:55+02:00``) -> UTC text.

    Values already in UTC (no offset, ``Z``, ``+00:00``) pass through as they are (vectorized); the rest
    are parsed by :func:`datetime.datetime.fromisoformat` once per distinct value.  A value without
    an offset is in ``tz`` (default UTC).

    Returns ``(text, bad)`` as the other converters.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(pc.cast(col, pa.string()), ""))
    utc_ok = pc.match_substring_regex(s, _UTC_ISO).to_numpy(zero_copy_only=False)
    is_utc = dt.timezone.utc == tz or tz is None
    if is_utc and utc_ok.all():
        return s, np.zeros(len(s), dtype=bool)

    def parse(v: str) -> dt.datetime:
        t = dt.datetime.fromisoformat(v.replace(" UTC", "+00:00"))
        return t if t.tzinfo is not None else t.replace(tzinfo=tz)

    text, bad = strptime_distinct(s, parse)
    if is_utc:
        text = pc.if_else(pa.array(utc_ok), s, text)
        bad = bad & ~utc_ok
    return text, bad


def impossible_dates(col: pa.Array) -> np.ndarray:
    """``bool[N]``: text starting ``YYYY-MM-DD`` whose date does not exist (``2024-02-30``).

    Arrow's ``strptime`` rolls such dates over (``2024-03-01``) instead of failing, so the day is
    checked by formatting the parsed date back and comparing.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
    head = pc.utf8_slice_codeunits(s, 0, 10)
    shaped = pc.match_substring_regex(head, r"^\d{4}-\d{2}-\d{2}$")
    parsed = pc.strptime(pc.if_else(shaped, head, pa.nulls(len(s), pa.string())), format="%Y-%m-%d",
                         unit="s", error_is_null=True)
    back = pc.strftime(parsed, format="%Y-%m-%d")
    same = pc.fill_null(pc.equal(back, head), False).to_numpy(zero_copy_only=False)
    return shaped.to_numpy(zero_copy_only=False) & ~same

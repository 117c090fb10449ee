"""Shadowserver timestamps: ``YYYY-MM-DD HH:MM:SS`` text (UTC) to ``timestamp[us, UTC]``, vectorized.

A fast path decodes the common exact form from the Arrow buffers with numpy; other forms go
through Arrow compute kernels.  Dates are proleptic Gregorian; impossible dates and times
(``2024-02-30``, ``24:00:00``, leap second ``23:59:60``) are bad, never rolled over.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.schema.registry import TIMESTAMP_TYPE

_TS_RE = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


def parse_timestamps(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Parse Shadowserver timestamps (UTC).

    Args:
        col: Arrow ``string`` array of N values: ``YYYY-MM-DD HH:MM:SS``, also with a ``T``
            separator, fractional seconds (up to microseconds), a ``Z``, ``+00:00`` or `` UTC``
            suffix (ISO 8601 / RFC 3339 forms that Shadowserver writes).

    Returns:
        ``(timestamp[us, UTC] array of N, bool[N] bad mask)``: bad where the text is in no such form
        or names a date or time that does not exist (the value there is meaningless).
    """
    fast = _fast_timestamps(col)
    if fast is not None:
        return fast
    s = pc.utf8_trim_whitespace(col)
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2})T", r"\1 ")
    s = pc.replace_substring_regex(s, r"(Z| ?UTC| ?\+00:?00)$", "")
    frac = pc.extract_regex(s, r"^(?P<base>.{19})(?P<frac>\.\d{1,6})?$")
    base = pc.struct_field(frac, "base")
    fr = pc.struct_field(frac, "frac")
    ok = pc.fill_null(pc.match_substring_regex(base, _TS_RE), False)
    ts = pc.strptime(pc.if_else(ok, base, pa.nulls(len(s), pa.string())), format="%Y-%m-%d %H:%M:%S",
                     unit="us", error_is_null=True)
    bad = pc.is_null(ts).to_numpy(zero_copy_only=False) | _impossible(base)
    micros = pc.fill_null(pc.cast(pc.utf8_rpad(pc.utf8_ltrim(pc.fill_null(fr, ""), "."), 6, "0"),
                                  pa.int64(), safe=False), 0)
    ts = pc.add(pc.cast(ts, pa.int64()), micros).cast(pa.timestamp("us")).cast(TIMESTAMP_TYPE)
    return ts, bad


_TS_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_TS_SEPS = ((4, 0x2D), (7, 0x2D), (10, 0x20), (13, 0x3A), (16, 0x3A))


def _fast_timestamps(col: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """The common case, vectorized over the bytes: every value exactly ``YYYY-MM-DD HH:MM:SS``
    (19 bytes, as Shadowserver writes them) naming a real date and time.

    Returns what :func:`parse_timestamps` returns (no bad rows), or ``None`` when any value is
    in another form or impossible: the general path then decides each row (and names the bad
    ones).  Days from the civil date: H. Hinnant's ``days_from_civil`` (proleptic Gregorian).
    """
    n = len(col)
    if n == 0 or col.null_count or not pa.types.is_string(col.type):
        return None
    offs = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset:col.offset + n + 1]
    if offs[-1] - offs[0] != 19 * n or not (np.diff(offs) == 19).all():
        return None
    raw = np.frombuffer(col.buffers()[2], dtype=np.uint8)[offs[0]:offs[-1]].reshape(n, 19)
    for pos, ch in _TS_SEPS:
        if not (raw[:, pos] == ch).all():
            return None
    dig = raw[:, _TS_DIGITS] - np.uint8(0x30)  # non-digits wrap above 9
    if (dig > 9).any():
        return None
    dig = dig.astype(np.int64)
    y = dig[:, 0] * 1000 + dig[:, 1] * 100 + dig[:, 2] * 10 + dig[:, 3]
    mo = dig[:, 4] * 10 + dig[:, 5]
    d = dig[:, 6] * 10 + dig[:, 7]
    hh, mm, ss = dig[:, 8] * 10 + dig[:, 9], dig[:, 10] * 10 + dig[:, 11], dig[:, 12] * 10 + dig[:, 13]
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    month_ok = (mo >= 1) & (mo <= 12)
    days_in = _MONTH_DAYS[np.where(month_ok, mo, 1)] + ((mo == 2) & leap)
    if not (month_ok & (y >= 1) & (d >= 1) & (d <= days_in) & (hh <= 23) & (mm <= 59) & (ss <= 59)).all():
        return None
    yy = y - (mo <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo + np.where(mo > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    micros = (days * 86400 + hh * 3600 + mm * 60 + ss) * 1_000_000
    return pa.array(micros, type=TIMESTAMP_TYPE), np.zeros(n, dtype=bool)


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _impossible(base: pa.Array) -> np.ndarray:
    """``bool[N]``: ``YYYY-MM-DD HH:MM:SS`` text naming a date or time that does not exist
    (``2024-02-30``, ``13:61:00``).  Arrow's ``strptime`` rolls such values over instead of failing,
    so the fields are checked arithmetically (Gregorian leap years), without formatting back."""
    n = len(base)
    ok = pc.fill_null(pc.match_substring_regex(base, _TS_RE), False)
    text = pc.if_else(ok, base, pa.scalar("2000-01-01 00:00:00"))

    def field(a: int, b: int) -> np.ndarray:
        return pc.cast(pc.utf8_slice_codeunits(text, a, b), pa.int64()).to_numpy(zero_copy_only=False)

    if n == 0:
        return np.zeros(0, dtype=bool)
    y, mo, d = field(0, 4), field(5, 7), field(8, 10)
    hh, mm, ss = field(11, 13), field(14, 16), field(17, 19)
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    month_ok = (mo >= 1) & (mo <= 12)
    days = _MONTH_DAYS[np.where(month_ok, mo, 1)] + ((mo == 2) & leap)
    valid = month_ok & (d >= 1) & (d <= days) & (hh <= 23) & (mm <= 59) & (ss <= 59)
    return ~valid

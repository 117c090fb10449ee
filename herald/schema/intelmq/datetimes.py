"""Dates as IntelMQ 3.5.0's ``DateTime`` sanitation stores them: ISO 8601 text in UTC.

:func:`parse_datetime` reads the date formats found in Shadowserver data (ISO 8601, the HTTP date
formats of RFC 9110 5.6.7) with a strict parser, instead of ``dateutil``'s fuzzy parser.
"""

from __future__ import annotations

import datetime as _dt
import re
from functools import lru_cache

__all__ = ["parse_datetime"]

_UTC = _dt.timezone.utc

# ---------------------------------------------------------------------------------------------
# Dates.  IntelMQ's DateTime sanitation keeps ``YYYY-MM-DDTHH:MM:SS[.f]+00:00`` unchanged and
# otherwise parses with dateutil's fuzzy parser, converting to UTC (naive times are UTC).  Herald
# accepts the formats that occur in Shadowserver data: ISO 8601 (``T`` or blank separator,
# fractions, ``Z``/``UTC``/``GMT``/offset zones) and the HTTP date formats of RFC 9110 5.6.7
# (IMF-fixdate, RFC 850, asctime), with any leading weekday word.  Anything else is not a date.
# ---------------------------------------------------------------------------------------------

_ISO_UTC_RE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}T\d{1,2}:\d{1,2}:\d{1,2}(\.\d{1,6})?\+00:00")
_ZONE = r"(?:Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?|[A-Z]{1,5})"
_ISO_RE = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    rf"\s*(?P<zones>(?:{_ZONE}\s*)*)"
)
_HTTP_RE = re.compile(
    r"(?:[A-Za-z]+,?\s+)?(?P<d>\d{1,2})[ -](?P<mon>[A-Za-z]+)[ -](?P<y>\d{2}|\d{4})"
    r"\s+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?"
    rf"\s*(?P<zones>(?:{_ZONE}\s*)*)"
)
_ASCTIME_RE = re.compile(
    r"(?:[A-Za-z]+,?\s+)?(?P<mon>[A-Za-z]+)\s+(?P<d>\d{1,2})\s+"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})\s+(?P<y>\d{4})"
    rf"\s*(?P<zones>(?:{_ZONE}\s*)*)"
)
_ZONE_RE = re.compile(_ZONE)
_MONTHS = {name: i + 1 for i, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
    ("oct", "october"), ("nov", "november"), ("dec", "december"))) for name in names}


def _zone_offset(zones: str) -> _dt.timezone | None:
    """The UTC offset of the zone tokens (the last numeric offset wins; ``Z``/``UTC``/``GMT`` are
    UTC; other names are unknown and ignored, as dateutil ignores them).  ``None``: no zone."""
    tz = None
    for tok in _ZONE_RE.findall(zones or ""):
        if tok[0] in "+-":
            digits = tok[1:].replace(":", "")
            minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
            tz = _dt.timezone(_dt.timedelta(minutes=minutes if tok[0] == "+" else -minutes))
        elif tok in ("Z", "z", "UTC", "GMT"):
            tz = _UTC
    return tz


def _two_digit_year(year: int) -> int:
    # dateutil's rule: the century that puts the year within 50 years of the current year (the
    # year in UTC, so that the result does not depend on the machine's time zone).
    now = _dt.datetime.now(_UTC).year
    year += now // 100 * 100
    if year >= now + 50:
        year -= 100
    elif year < now - 50:
        year += 100
    return year


@lru_cache(maxsize=4096)
def parse_datetime(text: str, default_tz: _dt.tzinfo = _UTC) -> str | None:
    """IntelMQ ``DateTime`` sanitation of ``text``: ISO 8601 in UTC, or ``None``.

    ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`` is returned unchanged (IntelMQ's fast path); other
    accepted formats (see the comment above) are converted to UTC and written by
    :meth:`datetime.datetime.isoformat`.  A time without zone is taken as UTC.

    Returns:
        the ISO text, or ``None`` when ``text`` is not a date in an accepted format or not a
        valid calendar date.
    """
    if _ISO_UTC_RE.fullmatch(text):
        try:
            _dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
            return text
        except ValueError:
            pass
    s = text.strip()
    m = _ISO_RE.fullmatch(s) or _HTTP_RE.fullmatch(s) or _ASCTIME_RE.fullmatch(s)
    if not m:
        return None
    g = m.groupdict()
    try:
        if "mon" in g:
            month = _MONTHS.get(g["mon"].lower())
            if month is None:
                return None
        else:
            month = int(g["mo"])
        year = int(g["y"])
        if len(g["y"]) == 2:
            year = _two_digit_year(year)
        micro = int((g.get("f") or "0").ljust(6, "0")[:6])
        value = _dt.datetime(year, month, int(g["d"]), int(g["h"] or 0), int(g["mi"] or 0),
                             int(g["s"] or 0), micro)
    except (ValueError, OverflowError):
        return None
    tz = _zone_offset(g["zones"])
    value = value.replace(tzinfo=tz or default_tz).astimezone(_UTC)
    return value.isoformat()

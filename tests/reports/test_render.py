"""Report rendering: timestamp formatting against Arrow's strftime."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.reports.render import format_timestamps

US = pa.timestamp("us", tz="UTC")


def _reference(a: pa.Array) -> pa.Array:
    return pc.strftime(pc.cast(a, pa.timestamp("s", tz="UTC"), safe=False),
                       format="%Y-%m-%d %H:%M:%S", locale="C")


def test_every_day_of_years_1_to_9999_and_times():
    # one timestamp per day, with a different time of day each, in chunks (the day table's limit)
    for start in range(-719162, 2932896, 90_000):
        days = np.arange(start, min(start + 90_000, 2932896), dtype=np.int64)
        a = pa.array((days * 86400 + (days * 7919) % 86400) * 10**6 + 123, US)
        assert format_timestamps(a).equals(_reference(a)), start


def test_nulls_slices_fractions_and_wide_ranges():
    rng = np.random.default_rng(5)
    v = rng.integers(1_600_000_000 * 10**6, 1_900_000_000 * 10**6, 50_000)
    mask = rng.random(50_000) < 0.2
    a = pa.array(np.where(mask, 0, v), US, mask=mask)
    got = format_timestamps(a)
    assert got.equals(_reference(a)) and got.null_count == mask.sum()
    assert format_timestamps(a.slice(3, 1000)).equals(_reference(a.slice(3, 1000)))
    assert format_timestamps(pa.chunked_array([a[:10], a[10:30]])).equals(_reference(a[:30]))
    # before 1970 and fractions of a second: cut off like the cast to seconds does
    b = pa.array([-1, -1_500_000, 0, 999_999, 86_399_999_999], US)
    assert format_timestamps(b).to_pylist() == _reference(b).to_pylist()
    # a span of more than the day table: the general path, same text
    w = pa.array([-62_135_596_800 * 10**6, 253_402_300_799 * 10**6, None], US)
    assert format_timestamps(w).to_pylist() == ["0001-01-01 00:00:00", "9999-12-31 23:59:59", None]
    assert format_timestamps(pa.array([], US)).to_pylist() == []

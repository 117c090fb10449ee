"""Re-notification windows: do not report the same event to the same recipient every day.

An event reported to a recipient on day ``d`` is not reported to it again on day ``D`` when
``D - d < window`` (days): with a window of 7, an event reported on day 1 is suppressed on days
2..7 and reported again on day 8 (if still seen).  A suppressed event is not recorded as reported,
so the window counts from the last day it was actually reported.

Event identity per report type: the 64-bit hash of the type's key columns
(``[abuse_contacts] renotify_keys``; default :data:`DEFAULT_KEY_COLUMNS`: the address column and
those of ``port``, ``src_port``, ``tag``, ``infection`` the table has).  Values are hashed per
distinct value (BLAKE2b, 8 bytes: stable across runs and processes), rows combined with numpy
``uint64`` arithmetic.

The keys reported to recipients with a window are stored per day and type as
``<data>/notified/date=D/type=T.parquet`` (columns ``slug`` string, ``key`` uint64, sorted and
unique).  A run of day ``D`` reads only earlier days, so a re-run of ``D`` rewrites the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from herald.fsutil import atomic_write

#: Columns identifying an event when the type has no ``renotify_keys`` entry (those present).
DEFAULT_KEY_COLUMNS = ("port", "src_port", "tag", "infection")

_NULL = np.uint64(0x9E3779B97F4A7C15)
_MUL = np.uint64(0x100000001B3)


def _h64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _column_hash(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """``uint64[N]``: hash of each value's text (per distinct value), a constant for null."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    enc = pc.dictionary_encode(col.cast(pa.string()))
    lut = np.array([_h64(v) for v in enc.dictionary.to_pylist()] + [int(_NULL)], dtype=np.uint64)
    idx = pc.fill_null(enc.indices, len(lut) - 1).to_numpy(zero_copy_only=False)
    return lut[idx]


def event_keys(table: pa.Table, address_column: str | None, columns: tuple[str, ...] | None = None
               ) -> np.ndarray:
    """``uint64[N]`` event identity of each row (see the module docstring).

    Args:
        table: N events of one type.
        address_column: the type's address column (used with the default columns).
        columns: the key columns (``renotify_keys``); ``None``: the default.  Missing columns are
            skipped.
    """
    if columns is None:
        columns = ((address_column,) if address_column else ()) + DEFAULT_KEY_COLUMNS
    h = np.full(table.num_rows, np.uint64(1469598103934665603), dtype=np.uint64)
    for i, c in enumerate(columns):
        if c in table.column_names:
            h = (h ^ (_column_hash(table.column(c)) + np.uint64(i))) * _MUL
    return h


def _mix(keys: np.ndarray, slug_hash: np.ndarray) -> np.ndarray:
    """Combine event keys with recipient (slug) hashes into one ``uint64`` per pair."""
    x = keys ^ (slug_hash * np.uint64(0xBF58476D1CE4E5B9))
    x ^= x >> np.uint64(31)
    return x * np.uint64(0x94D049BB133111EB)


def notified_path(data_dir: Path, day: str, report_type: str) -> Path:
    """``<data>/notified/date=D/type=T.parquet``."""
    return Path(data_dir) / "notified" / f"date={day}" / f"type={report_type}.parquet"


class RenotifyWindow:
    """The window check of one report type on one day.

    Args:
        data_dir: ``[paths] data``.
        day: the report day ``YYYY-MM-DD``.
        report_type: the type's name.
        max_days: the largest window of any recipient (earlier days read: ``max_days - 1``).
        window_of: the window (days, 0: off) of a recipient slug.
    """

    def __init__(self, data_dir: Path, day: str, report_type: str, max_days: int,
                 window_of: Callable[[str], int]) -> None:
        self.data_dir, self.day, self.report_type = Path(data_dir), day, report_type
        self.window_of = window_of
        self._slug_hash: dict[str, int] = {}
        self._windows: dict[str, int] = {}
        self._recorded: list[tuple[np.ndarray, np.ndarray]] = []  # (slug index array, keys)
        self._slugs: list[str] = []
        hashes, ages = [], []
        d0 = dt.date.fromisoformat(day)
        for age in range(1, max(max_days, 1)):
            path = notified_path(self.data_dir, (d0 - dt.timedelta(days=age)).isoformat(), report_type)
            if not path.exists():
                continue
            t = pq.read_table(path)
            slug_h = _column_hash(t.column("slug"))
            hashes.append(_mix(t.column("key").to_numpy(), slug_h))
            ages.append(np.full(t.num_rows, age, dtype=np.int32))
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        a = np.concatenate(ages) if ages else np.zeros(0, np.int32)
        order = np.lexsort((a, h))  # per hash, the youngest age first
        h, a = h[order], a[order]
        first = np.ones(len(h), dtype=bool)
        first[1:] = h[1:] != h[:-1]
        self._prev, self._age = h[first], a[first]

    def _slug_arrays(self, slugs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        hs, ws = [], []
        for s in slugs:
            if s not in self._slug_hash:
                self._slug_hash[s] = _h64(s)
                self._windows[s] = int(self.window_of(s))
            hs.append(self._slug_hash[s])
            ws.append(self._windows[s])
        return np.array(hs, dtype=np.uint64), np.array(ws, dtype=np.int32)

    def apply(self, keys: np.ndarray, pair_slug: np.ndarray, slugs: list[str]) -> np.ndarray:
        """Check and record the pairs of one batch.

        Args:
            keys: ``uint64[P]`` event keys of the pairs.
            pair_slug: ``int[P]`` index into ``slugs`` of each pair's recipient.
            slugs: the recipients' slugs.

        Returns:
            ``bool[P]``: True for pairs to suppress.  The kept pairs of recipients with a window
            are recorded for :meth:`finish`.
        """
        slug_h, win = self._slug_arrays(slugs)
        w = win[pair_slug]
        drop = np.zeros(len(keys), dtype=bool)
        has = w > 0
        if has.any() and len(self._prev):
            mixed = _mix(keys[has], slug_h[pair_slug[has]])
            pos = np.minimum(np.searchsorted(self._prev, mixed), len(self._prev) - 1)
            hit = (self._prev[pos] == mixed) & (self._age[pos] < w[has])
            drop[np.flatnonzero(has)[hit]] = True
        keep = has & ~drop
        if keep.any():
            base = len(self._slugs)
            self._slugs.extend(slugs)
            self._recorded.append((pair_slug[keep].astype(np.int64) + base, keys[keep]))
        return drop

    def finish(self) -> Path | None:
        """Write the day's file of kept keys (sorted, unique); remove it when there are none.

        Returns:
            the file written, or ``None``.
        """
        path = notified_path(self.data_dir, self.day, self.report_type)
        if not self._recorded:
            path.unlink(missing_ok=True)
            return None
        idx = np.concatenate([r[0] for r in self._recorded])
        keys = np.concatenate([r[1] for r in self._recorded])
        slugs = np.array(self._slugs, dtype=object)[idx]
        t = pa.table({"slug": pa.array(slugs, pa.string()), "key": pa.array(keys, pa.uint64())})
        t = t.sort_by([("slug", "ascending"), ("key", "ascending")])
        s, k = t.column("slug").to_numpy(zero_copy_only=False), t.column("key").to_numpy()
        uniq = np.ones(len(k), dtype=bool)
        uniq[1:] = (s[1:] != s[:-1]) | (k[1:] != k[:-1])
        t = t.filter(pa.array(uniq))
        buf = io.BytesIO()
        pq.write_table(t, buf, compression="zstd")
        atomic_write(path, buf.getvalue())
        return path

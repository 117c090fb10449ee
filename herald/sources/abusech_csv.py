"""The CSV dumps of abuse.ch (URLhaus, ThreatFox, SSL Blacklist): a ``#`` banner naming the
project, the column header as the last comment line (``# id,dateadded,url,...``), then one quoted,
comma-separated record per line, sometimes a ``# END`` trailer.

Documented at https://urlhaus.abuse.ch/api/#csv, https://threatfox.abuse.ch/export/ and
https://sslbl.abuse.ch/blacklist/.  This module finds the header and reads the records as string
columns; the feed modules (:mod:`herald.sources.urlhaus`, :mod:`herald.sources.threatfox`,
:mod:`herald.sources.sslbl`) map them to report types.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import InputError
from herald.sources import feed_table, text_lists, timestamps
from herald.sources.shadowserver_csv import Quarantine

_TS = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


@dataclass
class Dump:
    """The records of one dump.

    Attributes:
        header: the column names as written in the file, lower case.
        header_line: the 1-based line of the commented header.
        cols: column name (lower case) -> ``string[N]`` (``""`` for empty).
        lines: ``int64[N]`` physical line of each record; ``raws``: their text.
        banner: the comment lines before the header, joined by newlines (lower case).
    """

    header: list[str]
    header_line: int
    cols: dict[str, pa.Array]
    lines: np.ndarray
    raws: list[str]
    banner: str


def commented_header(lines: list[str], first: str) -> tuple[int, list[str]] | None:
    """``(line, names)`` of the first comment line whose first field is ``first`` (case-insensitive,
    quotes and spaces dropped), e.g. ``# id,dateadded,url,...`` for ``first="id"``; ``None`` when
    there is none before the first data line."""
    for no, line in enumerate(lines, 1):
        s = line.strip()
        if s and not s.startswith("#"):
            return None
        names = [h.strip().strip('"').strip().lower() for h in s.lstrip("#").split(",")]
        if len(names) > 1 and names[0] == first.lower():
            return no, names
    return None


def read_dump(path: str, lines: list[str], first: str, required: tuple[str, ...],
              quarantine: Quarantine, *, spaced: bool = False) -> Dump:
    """Read an abuse.ch dump whose commented header starts with column ``first``.

    Records with a wrong number of fields go to ``quarantine``.  ``spaced``: fields are separated
    by ``", "`` (ThreatFox), read with :mod:`csv` and ``skipinitialspace`` (Arrow's reader would
    not see the quotes after the space); else Arrow's CSV reader reads them.

    Raises:
        InputError: no commented header (line 1), or a required column missing from it (its line
            and the column as field).
    """
    found = commented_header(lines, first)
    if found is None:
        raise InputError(f"no '# {first},...' column header in the comment banner", path, 1)
    hline, header = found
    for col in required:
        if col not in header:
            raise InputError(f"required column {col!r} is missing from the header", path, hline, col)
    banner = "\n".join(ln.strip().lower() for ln in lines[:hline - 1])
    rows = text_lists.data_lines(lines)
    if spaced:
        return _read_spaced(rows, header, hline, banner, quarantine)
    table, raws = text_lists.read_delimited(path, rows, header, quarantine)
    cols = {c: pc.utf8_trim_whitespace(table.column(c).combine_chunks()) for c in header}
    return Dump(header, hline, cols, table.column(text_lists.LINE_COL).to_numpy(), raws, banner)


def _read_spaced(rows, header, hline, banner, quarantine) -> Dump:
    values: list[list[str]] = [[] for _ in header]
    keep, raws = [], []
    for no, text in rows:
        fields = next(csv.reader([text], skipinitialspace=True), [])
        if len(fields) != len(header):
            quarantine.add(no, None, f"expected {len(header)} fields, found {len(fields)}", None, text)
            continue
        keep.append(no)
        raws.append(text)
        for col, v in zip(values, fields):
            col.append(v.strip())
    cols = {c: pa.array(v, pa.string()) for c, v in zip(header, values)}
    return Dump(header, hline, cols, np.asarray(keep, dtype=np.int64), raws, banner)


def time_check(col: pa.Array, field: str, *, required: bool = False) -> feed_table.Check:
    """A :class:`~herald.sources.feed_table.Check` rejecting values of ``col`` that are not
    ``YYYY-MM-DD HH:MM:SS`` (UTC, the form of all abuse.ch dumps) or are impossible dates; empty
    values are rejected only when ``required``."""
    s = pc.fill_null(col, "")
    n = len(s)
    empty = pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)
    shape = pc.match_substring_regex(s, _TS).to_numpy(zero_copy_only=False)
    parsed = pc.strptime(pc.if_else(pa.array(shape, pa.bool_()), s, pa.nulls(n, pa.string())),
                         format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    ok = pc.is_valid(parsed).to_numpy(zero_copy_only=False) & ~timestamps.impossible_dates(s)
    bad = ~ok & (~empty | required)
    return feed_table.Check(bad, field, "not a time (expected YYYY-MM-DD HH:MM:SS, UTC)", s)


def latest(a: pa.Array, b: pa.Array) -> pa.Array:
    """Element-wise the later of two ``YYYY-MM-DD HH:MM:SS`` text columns (``""`` counts as
    earliest): the moment an indicator is last known to be active."""
    a, b = pc.fill_null(a, ""), pc.fill_null(b, "")
    return pc.if_else(pc.greater(a, b), a, b)


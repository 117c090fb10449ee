"""Reading a feed's file: its bytes or lines (an empty download is an error), and its modification
time for lists that carry no time of their own."""

from __future__ import annotations

import datetime as dt
import os

from herald.errors import InputError


def read_bytes(path: str, *, allow_empty: bool = False) -> bytes:
    """The whole file.

    Raises:
        InputError: the file cannot be opened, or it is empty (0 bytes or only white space) and
            ``allow_empty`` is false: a feed download that produced nothing is an error, not a day
            without events.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path) from exc
    if not allow_empty and not data.strip():
        raise InputError("file is empty", path)
    return data


def read_lines(path: str, *, allow_empty: bool = False) -> list[str]:
    """The file's lines, decoded as UTF-8 (a BOM is dropped; undecodable bytes become U+FFFD), without
    line endings.  Index ``i`` is physical line ``i + 1``.

    Raises:
        InputError: see :func:`read_bytes`.
    """
    text = read_bytes(path, allow_empty=allow_empty).decode("utf-8-sig", errors="replace")
    return text.splitlines()


def file_mtime_utc(path: str) -> str:
    """The file's modification time as ``YYYY-MM-DD HH:MM:SS`` (UTC, whole seconds).

    Used as the event time of lists that carry no time at all (blocklist.de); callers may pass
    ``observed_at`` instead.
    """
    ts = dt.datetime.fromtimestamp(int(os.stat(path).st_mtime), tz=dt.timezone.utc)
    return ts.strftime("%Y-%m-%d %H:%M:%S")

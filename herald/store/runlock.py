"""The day's run lock: one run of a day at a time, and a way to tell a crashed run.

An exclusive ``flock`` on ``<data>/runs/<day>.lock`` (:class:`herald.fsutil.FileLock`) for the
duration of a run.  The kernel drops it when the process dies, so a ledger entry left ``running``
without the lock held is a crashed run.
"""

from __future__ import annotations

from pathlib import Path

from herald.fsutil import FileLock
from herald.store.ledger import RunInProgress


class DayLock:
    """The run lock of one day (a context manager).

    Raises:
        RunInProgress: on entry, when another process holds the day.
    """

    def __init__(self, data_dir: Path, day: str) -> None:
        self.day = day
        self.lock = FileLock(Path(data_dir) / "runs" / f"{day}.lock")

    def __enter__(self) -> "DayLock":
        if not self.lock.acquire():
            raise RunInProgress(self.day, None)
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

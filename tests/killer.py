"""Test-only entry point: the ``herald`` command with a fault hook that kills the process.

    python tests/killer.py POINT ARGS...

runs ``herald ARGS...`` with a :mod:`herald.faults` hook that sends the process ``SIGKILL`` (no
clean-up runs, as in a real crash) when the fault point ``POINT`` (``ingest:3``, ``report:1``,
``ledger``, ...) is reached.  Production code has no such branch: only this module installs it.
"""

from __future__ import annotations

import os
import signal
import sys

from herald import faults
from herald.cli import main


def kill_at(point: str):
    """A fault hook that ``SIGKILL``s this process at ``point``."""
    def hook(name: str) -> None:
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def run_with_worker_killed(settings, day: str, recipients, point: str, request) -> BaseException | None:
    """Run ``day`` in a thread with a fault hook that ``SIGKILL``s the process reaching ``point``
    (the hook is inherited by forked workers: ``stage``, ``compose``); a run that hangs fails the
    test after 120 s instead of blocking it.  The hook is removed when the test ends.

    Returns:
        the exception the run raised, or ``None`` when it returned.
    """
    import threading

    from herald.pipeline import run_day

    hook = kill_at(point)
    faults.install(hook)
    request.addfinalizer(lambda: faults.remove(hook))
    outcome: list = []

    def run() -> None:
        try:
            run_day(settings, day, recipients=recipients)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the caller examines it
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), f"the run hangs after a worker died at {point!r}"
    return outcome[0]


if __name__ == "__main__":
    faults.install(kill_at(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))

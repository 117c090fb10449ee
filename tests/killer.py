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


if __name__ == "__main__":
    faults.install(kill_at(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))

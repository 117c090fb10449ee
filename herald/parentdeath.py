"""Child processes that end when their parent dies.

The daily run's message workers (:class:`concurrent.futures.ProcessPoolExecutor`, forked) would
otherwise live on after ``herald run`` is killed with SIGKILL: nothing tells them, and a worker
waiting for its next job waits for ever.  :func:`exit_with_parent` (a pool ``initializer``) asks the
Linux kernel to send the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
prctl(2)); :func:`check_parent` is the fallback on other systems and closes the race of a parent
that died before the request was made: it compares :func:`os.getppid` with the parent's process id.

Caveat (prctl(2)): the signal is sent when the parent *thread* that forked the child ends; the
daily run forks its workers from the thread that runs the day and shuts them down before it
returns, so that thread outlives them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

#: ``PR_SET_PDEATHSIG`` of ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1
#: The parent's process id recorded by :func:`exit_with_parent` (``None`` before).
_parent: int | None = None


def exit_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Make this (child) process receive ``sig`` when its parent dies, and exit now when the parent
    ``parent_pid`` is already gone.

    Args:
        parent_pid: the parent's process id, taken by the parent before it forks (``os.getpid()``).
        sig: the signal (default SIGKILL: a worker has nothing to clean up; its files are written
            atomically).

    Returns:
        ``True`` when the kernel will signal (Linux), ``False`` when only :func:`check_parent`
        protects the process.
    """
    global _parent
    _parent = parent_pid
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    check_parent()
    return armed


def check_parent() -> None:
    """Exit at once (``os._exit(1)``, no clean-up) when the parent recorded by
    :func:`exit_with_parent` is no longer this process's parent (it died and the process was
    re-parented).  Does nothing before :func:`exit_with_parent` was called."""
    if _parent is not None and os.getppid() != _parent:
        os._exit(1)


def forked_executor(workers: int) -> ProcessPoolExecutor:
    """A :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers`` processes started with
    ``fork`` whose workers die with this process (:func:`exit_with_parent` as initializer): a
    SIGKILL of ``herald run`` must not leave them behind.  The executor forks at its first submit:
    callers freeze the parent's objects around it (see :mod:`herald.deliver.messages`)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))

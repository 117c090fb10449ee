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

:class:`ForkedPool` is the run's pool of such workers (the stage pool, :mod:`herald.parallel`, and
the message workers, :mod:`herald.deliver.messages`): forked on first use with the parent's objects
frozen, handing the workers a context by the fork (:func:`inherited`) instead of pickling it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

#: ``PR_SET_PDEATHSIG`` of ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1
#: The parent's process id recorded by :func:`exit_with_parent` (``None`` before).
_parent: int | None = None
#: The context of the :class:`ForkedPool` that forked this worker (in the parent: of the pool
#: that runs now, ``None`` when none does).
_inherited: Any = None


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


def release_free_heap() -> bool:
    """Give the C heap's free memory back to the system: glibc's ``malloc_trim(0)``
    (malloc_trim(3)).  Memory the process freed stays resident otherwise, and a child forked
    then carries it in its own resident set.  Measured on the bench's 983k-CIDR configuration:
    after loading it, 125 of the 211 MB it added were free but resident (``bench/README.md``).

    Returns:
        ``True`` when memory was released; ``False`` when there was none to release, or the C
        library has no ``malloc_trim`` (not glibc, not Linux).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def forked_executor(workers: int) -> ProcessPoolExecutor:
    """A :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers`` processes started with
    ``fork`` whose workers die with this process (:func:`exit_with_parent` as initializer): a
    SIGKILL of ``herald run`` must not leave them behind.  The executor forks at its first submit:
    callers freeze the parent's objects around it (:class:`ForkedPool` does)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def inherited() -> Any:
    """In a worker of a :class:`ForkedPool`: the context its pool was given (it came by the fork)."""
    return _inherited


class ForkedPool:
    """Worker processes of :func:`forked_executor` that inherit ``ctx`` by the fork (the run's
    IP data, router, recipients: large, and never pickled); a job reads it with :func:`inherited`.

    The workers are forked at the first :meth:`submit_all`.  Around it the parent collects garbage,
    gives its free heap back to the system (:func:`release_free_heap`: the children do not carry
    it) and freezes its objects (:func:`gc.freeze`): a forked child's garbage collector then never
    frees an object of the parent, which may hold native state of the parent's threads (Arrow,
    DuckDB) that does not exist in the child (freeing one there crashed a worker).  The ``fork``
    executor forks all its workers at that first submit and none later.  A worker that dies makes
    the waiting call raise ``BrokenProcessPool`` instead of waiting for ever.  One pool runs at a
    time (the run's phases are sequential).  Use as a context manager (or call :meth:`close`).

    Args:
        ctx: the context the workers inherit.
        workers: how many processes.
    """

    def __init__(self, ctx: Any, workers: int) -> None:
        self.ctx = ctx
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def submit_all(self, fn: Callable, jobs: Iterable) -> list[Future]:
        """``fn(job)`` for each job in the workers (forked now when they are not yet); returns the
        futures in the order of ``jobs``."""
        global _inherited
        forking = self.pool is None
        if forking:
            _inherited = self.ctx
            self.pool = forked_executor(self.workers)
            gc.collect()
            release_free_heap()
            gc.freeze()
        try:
            return [self.pool.submit(fn, job) for job in jobs]
        finally:
            if forking:
                gc.unfreeze()

    def close(self) -> None:
        """Stop the workers (unfinished jobs are abandoned)."""
        global _inherited
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            _inherited = None

    def __enter__(self) -> "ForkedPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

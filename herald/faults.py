"""Named fault points, for the crash tests.

Production code calls :func:`hit` at the points where a crash is interesting (``ingest:<n>`` after
the n-th input is stored, ``report:<n>`` after the n-th report's message is written, ``ledger``
before the reports are recorded, ``outbox`` before messages are queued, ``compose`` in a message
worker, ``stage`` in a worker of the ingest / route stage pool, :mod:`herald.parallel`).  In
production no hook is installed and :func:`hit` does nothing.  Tests :func:`install` a hook (e.g.
one that ``SIGKILL``s the process at a given point); forked workers inherit it.
"""

from __future__ import annotations

from typing import Callable

_hooks: list[Callable[[str], None]] = []


def hit(name: str) -> None:
    """Pass the fault point ``name`` to every installed hook (none in production)."""
    for hook in _hooks:
        hook(name)


def active() -> bool:
    """Whether any hook is installed (callers may skip work that only a hook can observe)."""
    return bool(_hooks)


def install(hook: Callable[[str], None]) -> Callable[[str], None]:
    """Install ``hook`` (called with each fault point's name); returns it for :func:`remove`."""
    _hooks.append(hook)
    return hook


def remove(hook: Callable[[str], None]) -> None:
    """Remove a hook installed with :func:`install` (no-op when it is not installed)."""
    if hook in _hooks:
        _hooks.remove(hook)

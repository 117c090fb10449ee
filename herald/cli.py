"""The ``herald`` command: thin argparse front end; each sub-command lives in herald/commands/."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from herald import __version__
from herald.errors import HeraldError

#: Sub-commands and the module that registers each (see herald/commands/__init__.py): the module
#: ``herald.commands.<name>`` registers the sub-command ``<name>``.  One name per line, in the
#: order of ``herald --help``.
COMMANDS = [
    "ingest",
    "ipdata",
    "parse",
    "run",
    "serve",
    "sinkhole",
    "types",
    "users",
    "apikeys",
    "db",
    "recipients",
    "runs",
    "audit",
    "purge",
    "operations",
    "send",
    "outbox",
    "contacts",
    "bounces",
    "inhibitions",
]


def _chosen(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (its first argument that is not an option), or ``None``
    when there is none or it is not a known one.  The ``herald`` command's own options are flags
    (``-v``, ``--version``, ``-h``), so the first non-option argument is the sub-command."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser for ``argv`` (default ``sys.argv[1:]``).

    When ``argv`` names a sub-command only that sub-command's module is imported and registered:
    importing every command module (the web server, the sensors, the feed parsers) costs about
    0.7 s of a command's start (measured: 1.30 s to build the full parser, 0.57 s to import what
    ``herald run`` needs).  Otherwise (``herald``, ``herald --help``, an unknown command) every
    sub-command is registered, so help and argparse's "invalid choice" list name them all.
    """
    parser = argparse.ArgumentParser(
        prog="herald",
        description="Herald: daily per-recipient reports of infected and exposed machines.",
    )
    parser.add_argument("--version", action="version", version=f"herald {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    for name in [chosen] if chosen else COMMANDS:
        importlib.import_module(f"herald.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point.  Returns the exit status: 0 success, 1 a failed input or check, 2 usage or
    configuration error."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader of our output went away (``herald parse FILE | head``): stop quietly.  This
        # branch must come before ``OSError``, of which BrokenPipeError is a subclass.
        _silence_stdout()
        return 0
    except HeraldError as exc:
        print(f"herald: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable directory, disk full, ...
        print(f"herald: error: {exc}", file=sys.stderr)
        return 2


def entry() -> int:
    """The ``herald`` console script: :func:`main`, then :func:`gc.freeze` of every object left,
    since the process ends now.  The interpreter's final garbage collections would otherwise
    traverse them all: 0.3-0.45 s of the end of a 1M-event ``herald run`` (bench/README.md,
    "Third round").  Only the console script does this; :func:`main`, called in-process (tests),
    leaves the collector alone."""
    status = main()
    gc.freeze()
    return status


def _silence_stdout() -> None:
    """Point stdout at ``/dev/null`` so that the interpreter's final flush of the closed pipe does
    not print ``Exception ignored ... BrokenPipeError`` (Python's documented recipe, "Note on
    SIGPIPE" in the ``signal`` module)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a file
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

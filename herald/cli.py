"""The ``herald`` command: thin argparse front end; each sub-command lives in herald/commands/."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from herald import __version__
from herald.errors import HeraldError

#: Modules that register sub-commands (see herald/commands/__init__.py).  One line per module.
COMMAND_MODULES = [
    "herald.commands.ingest",
    "herald.commands.ipdata",
    "herald.commands.parse",
    "herald.commands.run",
    "herald.commands.serve",
    "herald.commands.sinkhole",
    "herald.commands.types",
    "herald.commands.users",
    "herald.commands.apikeys",
    "herald.commands.db",
    "herald.commands.recipients",
    "herald.commands.runs",
    "herald.commands.audit",
    "herald.commands.purge",
    "herald.commands.operations",
    "herald.commands.send",
    "herald.commands.outbox",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="herald",
        description="Herald: daily per-recipient reports of infected and exposed machines.",
    )
    parser.add_argument("--version", action="version", version=f"herald {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point.  Returns the exit status: 0 success, 1 a failed input or check, 2 usage or
    configuration error."""
    parser = build_parser()
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

"""Herald's exception hierarchy.

Callers catch :class:`HeraldError` for anything Herald raises on purpose, or a subclass to know
what went wrong.  Messages name the file, the line and the field where there is one.
"""

from __future__ import annotations


class HeraldError(Exception):
    """Base class of every error Herald raises on purpose."""


class ConfigError(HeraldError):
    """The configuration (TOML file, environment, recipients) is invalid."""


class InputError(HeraldError):
    """An input file cannot be read at all.

    Attributes:
        path: the file, as given.
        line: 1-based physical line number, or ``None`` when the whole file is at fault.
        field: the column or field name, or ``None``.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ":".join(str(p) for p in (path, line) if p is not None)
        if field:
            where = f"{where} field {field!r}" if where else f"field {field!r}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line
        self.field = field
        self.reason = message


class UnknownReportType(InputError):
    """A file's report type is not in the registry.

    Attributes:
        report_type: the unknown name.
    """

    def __init__(self, report_type: str, path: str | None = None) -> None:
        super().__init__(f"unknown report type {report_type!r} (not in the Shadowserver schema "
                         f"nor Herald's own types; see 'herald types')", path)
        self.report_type = report_type


class StoreError(HeraldError):
    """The event store or the metadata database failed."""

"""Any delimited text file, described by a TOML mapping file, into a report type.

For partner feeds that have no parser of their own.  The mapping file (TOML, read with
:mod:`herald.tomlfile`) says::

    report_type = "blocklist"        # target report type (required)
    delimiter = ","                  # one character; "\\t" for tab-separated files (default ",")
    header = false                   # true: the first data line names the file's columns
    comment = "#"                    # lines whose first non-blank character is this are skipped
    quote = true                     # '"' quotes fields (RFC 4180)
    time_format = "%d/%b/%Y:%H:%M:%S %z"   # strptime format, or "iso" (default), "epoch", "epoch_ms"
    timezone = "UTC"                 # zone of times without an offset (IANA name or "+02:00")
    null_values = ["", "-"]          # values that mean "no value"

    # header = false: one entry per file column, in order: a column of the type, "extra.<name>"
    # for an extra string column, or "" to skip the file column.
    columns = ["timestamp", "ip", "hostname"]
    # header = true: a table instead, file column name -> column of the type:
    # [columns]
    # "Source IP" = "ip"

    [constants]                      # columns with the same value in every row
    source = "partner-x"

Checks: the address column (``ip``/``src_ip``) must be an IP address (``allow_networks = true``
accepts CIDR networks too); host-name columns (``hostname``, ``src_hostname``, ``dst_hostname``,
``http_host``) must be DNS names; times must match ``time_format``.  Failing rows are quarantined
with line, field and reason; the file is read on.

Without a ``mapping`` option, ``<file stem>.toml`` beside the file is used.
"""

from __future__ import annotations

import csv
import datetime as dt
from herald import tomlfile
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from herald.errors import ConfigError, InputError
from herald.schema.registry import Registry, default_registry
from herald.sources import feed_files, feed_table, text_lists, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

#: Columns checked as DNS host names.
HOSTNAME_COLUMNS = ("hostname", "src_hostname", "dst_hostname", "http_host")

_KEYS = {"report_type", "delimiter", "header", "comment", "quote", "time_format", "timezone",
         "null_values", "columns", "constants", "allow_networks"}


@dataclass
class Mapping:
    """A parsed mapping file (see the module docstring for each key).

    Attributes:
        report_type: target type name.
        columns: ``(file column index or name, target column)`` pairs; target ``extra.<x>`` -> extra
            column ``x``.
        constants: target column -> value.
    """

    report_type: str
    columns: list[tuple[int | str, str]]
    constants: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    header: bool = False
    comment: str = "#"
    quote: bool = True
    time_format: str = "iso"
    timezone: dt.tzinfo = dt.timezone.utc
    null_values: tuple[str, ...] = ("",)
    allow_networks: bool = False
    source: str = ""
    ncols: int = 0

    def targets(self) -> list[str]:
        """Target columns, file-mapped then constants."""
        return [t for _, t in self.columns] + list(self.constants)


def _tz(name: str, origin: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "Z"):
        return dt.timezone.utc
    if name[:1] in "+-":
        try:
            t = dt.datetime.strptime(name.replace(":", ""), "%z")
            return t.tzinfo
        except ValueError:
            pass
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{origin}: unknown timezone {name!r}") from None


def load_mapping(mapping: str | Path | dict[str, Any], registry: Registry | None = None) -> Mapping:
    """Read and check a mapping (a TOML file path or an already-parsed dict).

    Raises:
        ConfigError: unreadable TOML, unknown keys, a missing ``report_type`` or ``columns``, a target
            column that the type does not have, no ``timestamp`` or no address column mapped.
        UnknownReportType: ``report_type`` is not registered.
    """
    registry = registry or default_registry()
    origin = str(mapping) if not isinstance(mapping, dict) else "mapping"
    if isinstance(mapping, dict):
        data = mapping
    else:
        try:
            data = tomlfile.loads(Path(mapping).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{origin}: cannot read mapping: {exc.strerror or exc}") from exc
        except tomlfile.TOMLDecodeError as exc:
            raise ConfigError(f"{origin}: invalid TOML: {exc}") from exc
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{origin}: unknown mapping keys: {', '.join(unknown)}")
    if not data.get("report_type"):
        raise ConfigError(f"{origin}: 'report_type' is required")
    rtype = registry.get(data["report_type"], source=origin)
    header = bool(data.get("header", False))
    cols = data.get("columns")
    pairs: list[tuple[int | str, str]] = []
    if header:
        if not isinstance(cols, dict):
            raise ConfigError(f"{origin}: with header = true, 'columns' must be a table "
                              "(file column name = target column)")
        pairs = [(str(k), str(v)) for k, v in cols.items() if v]
    else:
        if not isinstance(cols, list):
            raise ConfigError(f"{origin}: with header = false, 'columns' must be a list of target "
                              "columns in file order (\"\" skips a file column)")
        pairs = [(i, str(v)) for i, v in enumerate(cols) if v and v != "__IGNORE__"]
    constants = {str(k): str(v) for k, v in (data.get("constants") or {}).items()}
    delim = str(data.get("delimiter", ","))
    if len(delim) != 1:
        raise ConfigError(f"{origin}: 'delimiter' must be one character, got {delim!r}")
    m = Mapping(
        report_type=rtype.name, columns=pairs, constants=constants, delimiter=delim, header=header,
        comment=str(data.get("comment", "#")), quote=bool(data.get("quote", True)),
        time_format=str(data.get("time_format", "iso")),
        timezone=_tz(str(data.get("timezone", "UTC")), origin),
        null_values=tuple(str(v) for v in data.get("null_values", [""])),
        allow_networks=bool(data.get("allow_networks", False)), source=origin,
        ncols=0 if header else len(cols),
    )
    targets = m.targets()
    dups = sorted({t for t in targets if targets.count(t) > 1})
    if dups:
        raise ConfigError(f"{origin}: columns mapped more than once: {', '.join(dups)}")
    for t in targets:
        if not t.startswith("extra.") and t not in rtype.column_types:
            raise ConfigError(f"{origin}: report type {rtype.name!r} has no column {t!r} "
                              f"(use 'extra.{t}' for an extra column)")
    if "timestamp" in rtype.columns and "timestamp" not in targets:
        raise ConfigError(f"{origin}: no column is mapped to 'timestamp'")
    if rtype.address_column and rtype.address_column not in targets:
        raise ConfigError(f"{origin}: no column is mapped to the address column {rtype.address_column!r}")
    return m


def _times(col: pa.Array, m: Mapping) -> tuple[pa.Array, pa.Array, str]:
    fmt = m.time_format
    if fmt == "iso":
        text, bad = timestamps.iso_times(col, m.timezone)
        return text, bad, "not an ISO 8601 time"
    if fmt in ("epoch", "epoch_ms"):
        s = pc.utf8_trim_whitespace(pc.fill_null(col, ""))
        if fmt == "epoch_ms":
            s = pc.if_else(pc.match_substring_regex(s, r"^\d{4,14}$"), pc.utf8_slice_codeunits(s, 0, -3), s)
        text, bad = timestamps.epoch_seconds(s)
        return text, bad, "not a Unix time"

    def parse(v: str) -> dt.datetime:
        t = dt.datetime.strptime(v, fmt)
        return t if t.tzinfo is not None else t.replace(tzinfo=m.timezone)

    text, bad = timestamps.strptime_distinct(col, parse)
    return text, bad, f"not a time in the format {fmt!r}"


def parse(path: str, *, mapping: str | Path | dict | None = None, registry: Registry | None = None,
          **_opts) -> ParsedFile:
    """Parse ``path`` as the ``mapping`` says.

    Returns:
        :class:`ParsedFile` of the mapping's report type, plus the ``extra.<name>`` columns as
        strings.

    Raises:
        ConfigError: no mapping (and no ``<stem>.toml`` beside the file), or an invalid one.
        InputError: unreadable or empty file; with ``header = true``, a mapped column that the header
            lacks (line of the header, the column's name).
    """
    path = str(path)
    registry = registry or default_registry()
    if mapping is None:
        guess = Path(path).with_suffix(".toml")
        if not guess.exists():
            raise ConfigError(f"{path}: the generic CSV format needs a mapping file (--mapping); "
                              f"{guess.name} does not exist")
        mapping = guess
    m = mapping if isinstance(mapping, Mapping) else load_mapping(mapping, registry)
    rtype = feed_table.get_type(m.report_type, registry, path)
    q = Quarantine(path)
    rows = text_lists.data_lines(feed_files.read_lines(path), comment=m.comment)
    header = None
    if m.header:
        if not rows:
            raise InputError("no header line", path)
        hno, htext = rows.pop(0)
        header = [h.strip() for h in next(csv.reader([htext], delimiter=m.delimiter))]
        for src, tgt in m.columns:
            if src not in header:
                raise InputError(f"mapped column {src!r} (-> {tgt}) is missing from the header", path, hno,
                                 str(src))
        names = [f"c{i}" for i in range(len(header))]
        index = {src: names[header.index(src)] for src, _ in m.columns}
    else:
        # The mapping lists every file column, so it gives the field count.  Data lines are
        # checked against it: a short or long row is quarantined rather than misaligned.
        names = [f"c{i}" for i in range(m.ncols)]
        index = {src: names[src] for src, _ in m.columns}
    table, raws = text_lists.read_delimited(path, rows, names, q, delimiter=m.delimiter, quote=m.quote)
    n = table.num_rows
    out: dict[str, pa.Array] = {}
    nulls = pa.array(sorted(set(m.null_values)), pa.string())
    for src, tgt in m.columns:
        col = pc.utf8_trim_whitespace(table.column(index[src]).combine_chunks())
        out[tgt.removeprefix("extra.") if tgt.startswith("extra.") else tgt] = pc.if_else(
            pc.is_in(col, value_set=nulls), "", col)
    for tgt, value in m.constants.items():
        out[tgt.removeprefix("extra.")] = feed_table.const(value, n)
    extra = [t.removeprefix("extra.") for t in m.targets() if t.startswith("extra.")]
    checks = []
    if "timestamp" in out:
        text, bad, reason = _times(out["timestamp"], m)
        checks.append(feed_table.Check(bad, "timestamp", reason, out["timestamp"]))
        out["timestamp"] = pc.fill_null(text, "")
    for col in HOSTNAME_COLUMNS:
        if col in out:
            checks.append(feed_table.Check(~feed_table.is_valid_hostname(out[col]), col, "not a DNS host name",
                                           out[col]))
    return feed_table.finish(path, rtype, out, table.column(text_lists.LINE_COL).to_numpy(), raws, q,
                        address="network" if m.allow_networks else "ip", checks=checks,
                        extra_cols=extra, header=header)


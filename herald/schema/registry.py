"""Report-type registry: Shadowserver's 170 public report types plus Herald's own.

A *report type* is the unit of meaning in Herald (docs/architecture.md). Each type has a name
(``scan_http``), a title, a taxonomy, an ordered column list and, where Shadowserver publishes one,
an IntelMQ mapping.  The data comes from the bundled copy of The-Shadowserver-Foundation/report_schema
(``herald/schema/data/SOURCE.md`` gives commit and date).  Herald's own types live in
``herald_types.json`` in the same format as ``reports.json``; an operator may add more with
:func:`Registry.load_extra`.

Column types are not part of Shadowserver's schema.  Herald derives them from the IntelMQ conversion
functions of ``intelmq.json`` (``convert_int`` and ``invalidate_zero`` mean an integer column,
``add_UTC_to_timestamp`` the event time) and from a short list of well-known column names
(:data:`INT_COLUMNS`).  Every other column is a UTF-8 string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from herald.errors import UnknownReportType, ConfigError

#: Severity levels, lowest first, from ``severity.md`` of the Shadowserver schema.
SEVERITY_LEVELS: tuple[str, ...] = ("info", "low", "medium", "high", "critical")

#: Columns that are integers in every report type that has them (Shadowserver CSV convention).
INT_COLUMNS = frozenset(
    {
        "port", "src_port", "dst_port", "asn", "src_asn", "dst_asn", "naics", "src_naics", "dst_naics",
        "http_referer_asn", "relay_asn", "relay_port",
    }
)

#: Columns that hold an IP address; validated and canonicalised by the sources.
IP_COLUMNS = frozenset({"ip", "src_ip", "dst_ip", "http_referer_ip", "relay_ip", "cc_ip"})

#: Arrow type of the event time column.  ``timestamp[us]`` in UTC keeps stages portable (docs/architecture.md).
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

_INT_FUNCS = {"convert_int", "invalidate_zero"}


@dataclass(frozen=True)
class ReportType:
    """One report type.

    Attributes:
        name: the report type's identifier, as in Shadowserver file names (``scan_http``).
        title: human name (``Accessible-HTTP``).
        taxonomy: ``classification.taxonomy`` of the type (IntelMQ / RSIT taxonomy).
        classification_type: ``classification.type``.
        columns: ordered column names (the order of the report file).
        url: documentation URL, or ``None``.
        default_severity: one of :data:`SEVERITY_LEVELS`; ``severity.md`` or ``info`` where unlisted.
        intelmq: the type's entry of ``intelmq.json`` (``required_fields``, ``optional_fields``,
            ``constant_fields``), or ``None`` for a type that has no IntelMQ mapping.
        origin: ``"shadowserver"`` or ``"herald"`` or a file path for operator-defined types.
    """

    name: str
    title: str
    taxonomy: str
    classification_type: str
    columns: tuple[str, ...]
    url: str | None = None
    default_severity: str = "info"
    intelmq: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    origin: str = "shadowserver"

    @cached_property
    def column_types(self) -> dict[str, pa.DataType]:
        """Arrow type of every column: ``timestamp[us, UTC]``, ``int64`` or ``string``."""
        ints = set(INT_COLUMNS)
        if self.intelmq:
            for item in self.intelmq.get("required_fields", []) + self.intelmq.get("optional_fields", []):
                if len(item) > 2 and item[2] in _INT_FUNCS:
                    ints.add(item[1])
        out: dict[str, pa.DataType] = {}
        for c in self.columns:
            if c == "timestamp":
                out[c] = TIMESTAMP_TYPE
            elif c in ints:
                out[c] = pa.int64()
            else:
                out[c] = pa.string()
        return out

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of a normalized table of this type (columns in schema order)."""
        return pa.schema([pa.field(c, t) for c, t in self.column_types.items()])

    @cached_property
    def address_column(self) -> str | None:
        """The column holding the address an event is *about*: ``src_ip`` for event reports, else ``ip``.

        Routing and enrichment key on it.  ``None`` for types without an address (``compromised_account``).
        """
        for c in ("src_ip", "ip"):
            if c in self.columns:
                return c
        return None

    @cached_property
    def asn_column(self) -> str | None:
        """``src_asn`` or ``asn``, paired with :attr:`address_column`; ``None`` when absent."""
        if self.address_column == "src_ip":
            return "src_asn" if "src_asn" in self.columns else None
        return "asn" if "asn" in self.columns else None

    @cached_property
    def geo_column(self) -> str | None:
        """``src_geo`` or ``geo``, paired with :attr:`address_column`; ``None`` when absent."""
        if self.address_column == "src_ip":
            return "src_geo" if "src_geo" in self.columns else None
        return "geo" if "geo" in self.columns else None

    @cached_property
    def required_columns(self) -> frozenset[str]:
        """Columns that must be in a file's header: ``timestamp`` and the IntelMQ required fields."""
        req = {"timestamp"} if "timestamp" in self.columns else set()
        if self.intelmq:
            req.update(item[1] for item in self.intelmq.get("required_fields", []))
        return frozenset(req)


class Registry:
    """All known report types, by name.

    Build with :func:`default_registry` (bundled Shadowserver schema plus Herald's own types).

    Raises:
        UnknownReportType: from :meth:`get` for a name that is not registered.
    """

    def __init__(self, types: Iterable[ReportType] = ()) -> None:
        self._types: dict[str, ReportType] = {t.name: t for t in types}

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __len__(self) -> int:
        return len(self._types)

    def __iter__(self):
        return iter(self._types.values())

    def names(self) -> list[str]:
        """Sorted list of registered report-type names."""
        return sorted(self._types)

    def get(self, name: str, *, source: str | None = None) -> ReportType:
        """Return the type called ``name``.

        Raises:
            UnknownReportType: naming ``source`` (a file path) when given.
        """
        try:
            return self._types[name]
        except KeyError:
            raise UnknownReportType(name, source) from None

    def add(self, rtype: ReportType) -> None:
        """Register ``rtype``, replacing a type of the same name."""
        self._types[rtype.name] = rtype

    def load_extra(self, path: str | Path) -> None:
        """Add report types from a JSON file in the format of Shadowserver's ``reports.json``.

        Each entry: ``{"name", "classification.taxonomy", "classification.type", "fields", "url"?,
        "severity"?}``.

        Raises:
            ConfigError: when the file is not valid JSON or an entry lacks ``fields``.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read report types: {exc}") from exc
        for rtype in _parse_reports(data, {}, {}, origin=str(path)):
            self.add(rtype)


def _parse_reports(reports: dict, mapping: dict, severity: dict, origin: str) -> list[ReportType]:
    out = []
    for name, spec in reports.items():
        if name.startswith("_"):
            continue
        if "fields" not in spec or not isinstance(spec["fields"], list):
            raise ConfigError(f"{origin}: report type {name!r} has no 'fields' list")
        out.append(
            ReportType(
                name=name,
                title=spec.get("name", name),
                taxonomy=spec.get("classification.taxonomy", "other"),
                classification_type=spec.get("classification.type", "other"),
                columns=tuple(spec["fields"]),
                url=spec.get("url"),
                default_severity=spec.get("severity") or severity.get(name, "info"),
                intelmq=mapping.get(name),
                origin=origin,
            )
        )
    return out


def _data(name: str) -> Any:
    return json.loads(resources.files("herald.schema").joinpath("data", name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The bundled registry: Shadowserver's 170 types (schema commit 8e06fb9) and Herald's own types.

    The result is cached and shared; do not :meth:`Registry.add` to it, copy it instead.
    """
    severity = _data("severity.json")
    # intelmq.json is keyed by IntelMQ's own report name (``event_sinkhole_http``), which differs
    # from reports.json's name for the 18 ``event4_*`` types; its ``file_name`` field is the
    # reports.json name (IntelMQ's ShadowserverParserBot also looks mappings up by file_name).
    mapping = {v["file_name"]: v for k, v in _data("intelmq.json").items()
               if k != "_meta" and isinstance(v, dict) and "file_name" in v}
    types = _parse_reports(_data("reports.json"), mapping, severity, origin="shadowserver")
    types += _parse_reports(_data("herald_types.json"), {}, {}, origin="herald")
    return Registry(types)


def severity_rank(level: str | None) -> int:
    """Rank of a severity level (``info`` 0 ... ``critical`` 4).

    Raises:
        ConfigError: for a level not in :data:`SEVERITY_LEVELS`.
    """
    if level is None:
        return 0
    try:
        return SEVERITY_LEVELS.index(level.lower())
    except ValueError:
        raise ConfigError(f"unknown severity {level!r}; use one of {', '.join(SEVERITY_LEVELS)}") from None

"""Settings: a TOML file plus environment variables.

The file (see ``examples/herald.toml``)::

    [paths]              # relative to the TOML file
    inbox = "inbox"      # input files; a run for day D reads inbox/ and inbox/D/
    data = "var/data"    # event store (Parquet), quarantine, ledger database
    reports = "var/reports"
    outbox = "var/outbox"
    events = "s3://bucket/prefix"  # optional: the event store (default "<data>/events");
                                   # see herald.eventstore ([s3] options, credentials)

    [report]
    tlp = "AMBER"        # TLP 2.0 label put on every report (FIRST TLP 2.0)
    sender = "herald@example.org"
    formats = ["csv"]    # add "intelmq" for IntelMQ event JSON lines beside each CSV

    [enrich]
    overwrite = false    # replace asn/geo values the input already has
    ipdata = []          # optional user data sets: [{format = "ipasn", path = "..."}]

    [database]
    url = "sqlite:///..."  # default: SQLite file in the data directory; or HERALD_DATABASE_URL

    [run]
    workers = 2          # processes for ingest and route+write (default: the usable cores)

    [[recipients]]       # see herald.constituency.recipients
    ...

Environment variables override the file: ``HERALD_DATABASE_URL``, ``HERALD_DATA_DIR``,
``HERALD_REPORTS_DIR``, ``HERALD_OUTBOX_DIR``, ``HERALD_INBOX_DIR``, ``HERALD_EVENTS`` (the event
store: a folder or ``s3://bucket/prefix``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herald import tomlfile
from herald.errors import ConfigError
from herald.eventstore import EventStore, parse_event_store, parse_s3_options

#: Top-level tables of the configuration file; anything else is a typo and an error.
KNOWN_SECTIONS = frozenset({"paths", "report", "enrich", "database", "recipients", "operations",
                            "sinkhole", "smtp", "pgp", "mail", "web", "retention",
                            "abuse_contacts", "spark", "run", "s3"})

#: Keys of the sections read here.  The other sections are parsed, and their keys checked, by the
#: modules that own them (with :func:`check_section`): ``[web]`` :mod:`herald.web.state`,
#: ``[sinkhole]`` :mod:`herald.sensors.config`, ``[smtp]``/``[pgp]``/``[mail]``
#: :mod:`herald.deliver.settings`, ``[retention]`` :mod:`herald.store.purge`; ``[[recipients]]``
#: and ``[[operations]]`` are lists of tables checked by :mod:`herald.constituency`.
#: ``[abuse_contacts]`` is typed here (:func:`abuse_contact_settings`, below): it is checked at
#: load and read by several stages.
SECTION_KEYS = {
    "paths": frozenset({"inbox", "data", "reports", "outbox", "events"}),
    "report": frozenset({"tlp", "sender", "formats"}),
    "enrich": frozenset({"overwrite", "ipdata"}),
    "database": frozenset({"url"}),
    "spark": frozenset({"master", "driver_memory", "shuffle_partitions", "conf"}),  # engines/spark_config.py
    "run": frozenset({"workers"}),
}

#: TLP 2.0 labels (FIRST, https://www.first.org/tlp/).
TLP_LABELS = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")


@dataclass
class Paths:
    """Resolved, absolute directories."""

    inbox: Path
    data: Path
    reports: Path
    outbox: Path


@dataclass
class Settings:
    """Everything a run needs from the configuration.

    Attributes:
        path: the TOML file, or ``None`` for settings built in code.
        paths: resolved directories.
        tlp: default TLP label of reports (``AMBER``).
        sender: ``From`` address of outbox messages.
        overwrite_enrichment: replace input ASN/country values (default keep).
        ipdata: user-supplied IP data sets, each ``{"format": ..., "path": absolute path}``.
        database_url: SQLAlchemy URL of the metadata database.
        workers: ``[run] workers``: processes of the run's CPU-bound stages, ``None`` for one per
            usable core (:mod:`herald.parallel`).
        report_formats: ``[report] formats``: report file formats (``csv``, ``intelmq``).
        events: ``[paths] events`` with ``[s3]`` (:class:`herald.eventstore.EventStore`), or
            ``None`` for the default ``<data>/events``; read it through :attr:`event_store`.
        raw: the whole parsed TOML document; other modules read their sections through
            :meth:`section`, :attr:`recipients_spec`, :attr:`operations_spec`, never directly.
    """

    path: Path | None
    paths: Paths
    tlp: str = "AMBER"
    sender: str = "herald@localhost"
    overwrite_enrichment: bool = False
    ipdata: list[dict[str, str]] = field(default_factory=list)
    database_url: str = ""
    workers: int | None = None
    report_formats: list[str] = field(default_factory=lambda: ["csv"])
    raw: dict[str, Any] = field(default_factory=dict)
    events: EventStore | None = None

    @property
    def event_store(self) -> EventStore:
        """Where the event store lives: ``[paths] events``, default the folder ``<data>/events``."""
        return self.events or EventStore.local(self.paths.data)

    @property
    def where(self) -> str:
        """The file name for error messages (``configuration`` for settings built in code)."""
        return str(self.path) if self.path else "configuration"

    @property
    def report(self) -> ReportSettings:
        """The ``[report]`` section, typed."""
        return ReportSettings(tlp=self.tlp, sender=self.sender, formats=list(self.report_formats))

    @property
    def recipients_spec(self) -> list[dict[str, Any]]:
        """The ``[[recipients]]`` entries of the file, unvalidated."""
        return list(self.raw.get("recipients", []))

    @property
    def operations_spec(self) -> list[dict[str, Any]]:
        """The ``[[operations]]`` entries of the file, unvalidated."""
        return list(self.raw.get("operations", []))

    @property
    def smtp_configured(self) -> bool:
        """Whether the file has an ``[smtp]`` section (the run then sends what it writes)."""
        return "smtp" in self.raw

    def section(self, name: str) -> dict[str, Any]:
        """The table ``[name]`` of the file (empty when absent), for the module that parses it.

        Raises:
            ConfigError: ``name`` is not a known section, or the value is not a table.
        """
        if name not in KNOWN_SECTIONS:
            raise ConfigError(f"{self.where}: no section [{name}] is known")
        value = self.raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}: [{name}] must be a table")
        return value


@dataclass(frozen=True)
class ReportSettings:
    """The ``[report]`` section: TLP label, sender address and file formats of reports."""

    tlp: str = "AMBER"
    sender: str = "herald@localhost"
    formats: list[str] = field(default_factory=lambda: ["csv"])


def check_section(settings: Settings, name: str, known: set[str] | frozenset[str]) -> dict[str, Any]:
    """The table ``[name]`` of ``settings`` after checking that all its keys are ``known``.

    Raises:
        ConfigError: not a table, or an unknown key (the message names the section and the key).
    """
    table = settings.section(name)
    unknown_keys(settings.where, name, table, known)
    return table


def unknown_keys(where: str, name: str, table: dict[str, Any], known: set[str] | frozenset[str]) -> None:
    """Raise when ``table`` (section ``[name]`` of file ``where``) has a key not in ``known``.

    Raises:
        ConfigError: ``"<file>: [name]: unknown key(s) a, b; known: ..."``.
    """
    extra = sorted(set(table) - set(known))
    if extra:
        raise ConfigError(f"{where}: [{name}]: unknown key(s) {', '.join(extra)}; "
                          f"known: {', '.join(sorted(known))}")


def load_settings(path: str | os.PathLike) -> Settings:
    """Read a TOML configuration file.

    Raises:
        ConfigError: missing file, bad TOML (with line and column), bad values.
    """
    path = Path(path).resolve()
    try:
        raw = tomlfile.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (TOML files are UTF-8): {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomlfile.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return settings_from_dict(raw, base=path.parent, path=path)


def settings_from_dict(raw: dict[str, Any], base: Path, path: Path | None = None) -> Settings:
    """Build :class:`Settings` from a parsed document; relative paths are taken from ``base``.

    Raises:
        ConfigError: bad values (unknown TLP label, wrong types).
    """
    where = str(path) if path else "configuration"
    unknown = sorted(set(raw) - KNOWN_SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) or key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(KNOWN_SECTIONS))}")
    s3 = parse_s3_options(raw.get("s3", {}), where)
    for section, keys in SECTION_KEYS.items():
        value = raw.get(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        unknown_keys(where, section, value, keys)
    abuse_contact_settings(raw)  # [abuse_contacts]: unknown keys and bad values fail at load
    p = raw.get("paths", {})
    if not isinstance(p, dict):
        raise ConfigError(f"{where}: [paths] must be a table")

    def _dir(key: str, default: str, env: str) -> Path:
        value = os.environ.get(env) or p.get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: paths.{key} must be a string")
        return (base / value).resolve()

    paths = Paths(
        inbox=_dir("inbox", "inbox", "HERALD_INBOX_DIR"),
        data=_dir("data", "var/data", "HERALD_DATA_DIR"),
        reports=_dir("reports", "var/reports", "HERALD_REPORTS_DIR"),
        outbox=_dir("outbox", "var/outbox", "HERALD_OUTBOX_DIR"),
    )
    events_value = os.environ.get("HERALD_EVENTS") or p.get("events")
    events = None if events_value is None else parse_event_store(events_value, base, s3, where)
    report = raw.get("report", {})
    tlp = str(report.get("tlp", "AMBER")).upper().removeprefix("TLP:")
    if tlp not in TLP_LABELS:
        raise ConfigError(f"{where}: report.tlp {tlp!r} is not a TLP 2.0 label ({', '.join(TLP_LABELS)})")
    enrich = raw.get("enrich", {})
    ipdata = []
    for i, item in enumerate(enrich.get("ipdata", [])):
        if not isinstance(item, dict) or "path" not in item or "format" not in item:
            raise ConfigError(f"{where}: enrich.ipdata[{i}] needs 'format' and 'path'")
        ipdata.append({"format": str(item["format"]), "path": str((base / item["path"]).resolve())})
    formats = report.get("formats", ["csv"])
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise ConfigError(f"{where}: report.formats must be a list of strings")
    db = raw.get("database", {})
    url = os.environ.get("HERALD_DATABASE_URL") or db.get("url") or f"sqlite:///{paths.data / 'herald.db'}"
    workers = raw.get("run", {}).get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"{where}: run.workers must be a whole number >= 1, not {workers!r}")
    return Settings(
        path=path,
        paths=paths,
        tlp=tlp,
        sender=str(report.get("sender", "herald@localhost")),
        overwrite_enrichment=bool(enrich.get("overwrite", False)),
        ipdata=ipdata,
        database_url=url,
        workers=workers,
        report_formats=list(formats),
        raw=raw,
        events=events,
    )

# --- [abuse_contacts] -------------------------------------------------------------------------
# Typed here, beside the other sections checked at load, because a typo in it would mail nobody
# (or everybody) and three stages read it: the abuse-contact router (herald.contacts.routing), the
# routing policy (herald.reports.policy) and the bounce threshold (herald.deliver.bounces).
# See docs/abuse-contacts.md.  TOML form::
#
#     [abuse_contacts]
#     enabled = true
#     countries = ["AT"]              # the CERT's constituency: events geolocated here ...
#     cidrs = ["192.0.2.0/24"]        # ... or with an address in these networks
#     bounce_threshold = 3            # read by herald.deliver.bounces
#     renotify_days = 7               # automatic recipients: an event reported to a mailbox is not
#                                     # reported to it again within this many days (0: off)
#     renotify_types = {scan_http = 3}        # per report type, overrides renotify_days
#     renotify_keys = {scan_http = ["ip", "port"]}   # event identity per type (default below)

#: Keys of ``[abuse_contacts]``.
ABUSE_CONTACT_KEYS = frozenset({"enabled", "countries", "cidrs", "bounce_threshold",
                                "renotify_days", "renotify_types", "renotify_keys"})


@dataclass(frozen=True)
class AbuseContactSettings:
    """``[abuse_contacts]``, validated.

    Attributes:
        enabled: route in-scope events no subscribed network owner claims to RPSL abuse mailboxes.
        countries: ISO 3166-1 alpha-2 codes (upper case) of the constituency.
        cidrs: networks (``ipaddress`` objects) of the constituency.
        renotify_days: default re-notification window of automatic recipients, in days (0: off).
        renotify_types: per report type window, overriding :attr:`renotify_days`.
        renotify_keys: per report type, the columns that identify an event
            (default :data:`herald.reports.renotify.DEFAULT_KEY_COLUMNS`).
    """

    enabled: bool = False
    countries: tuple[str, ...] = ()
    cidrs: tuple[Any, ...] = ()
    renotify_days: int = 0
    renotify_types: dict[str, int] = field(default_factory=dict)
    renotify_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def window(self, report_type: str) -> int:
        """The automatic recipients' window for ``report_type`` (days, 0: off)."""
        return self.renotify_types.get(report_type, self.renotify_days)


def _abuse_days(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"[abuse_contacts] {where} must be an integer >= 0 (days), not {value!r}")
    return value


def abuse_contact_settings(raw: dict[str, Any]) -> AbuseContactSettings:
    """Parse the ``[abuse_contacts]`` table of a configuration document (``Settings.raw``).

    Raises:
        ConfigError: unknown keys, wrong types, invalid country codes or CIDRs, or ``enabled``
            without a scope (``countries`` or ``cidrs``).
    """
    sec = raw.get("abuse_contacts", {})
    if not isinstance(sec, dict):
        raise ConfigError("[abuse_contacts] must be a table")
    unknown = sorted(set(sec) - ABUSE_CONTACT_KEYS)
    if unknown:
        raise ConfigError(f"[abuse_contacts]: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(ABUSE_CONTACT_KEYS))}")
    enabled = sec.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"[abuse_contacts] enabled must be true or false, not {enabled!r}")
    for key in ("countries", "cidrs"):
        if not isinstance(sec.get(key, []), list):
            raise ConfigError(f"[abuse_contacts] {key} must be a list")
    countries = []
    for cc in sec.get("countries", []):
        c = str(cc).upper()
        if len(c) != 2 or not c.isascii() or not c.isalpha():
            raise ConfigError(f"[abuse_contacts] countries: {cc!r} is not an ISO 3166-1 alpha-2 code")
        countries.append(c)
    cidrs = []
    for c in sec.get("cidrs", []):
        try:
            cidrs.append(ipaddress.ip_network(str(c).strip(), strict=True))
        except ValueError as exc:
            raise ConfigError(f"[abuse_contacts] cidrs: {c!r}: {exc}") from None
    if enabled and not countries and not cidrs:
        raise ConfigError("[abuse_contacts] enabled needs a scope: countries = [...] and/or cidrs = [...]")
    types = sec.get("renotify_types", {})
    keys = sec.get("renotify_keys", {})
    if not isinstance(types, dict) or not isinstance(keys, dict):
        raise ConfigError("[abuse_contacts] renotify_types and renotify_keys must be tables")
    for t, cols in keys.items():
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise ConfigError(f"[abuse_contacts] renotify_keys.{t} must be a non-empty list of column names")
    return AbuseContactSettings(
        enabled=enabled, countries=tuple(countries), cidrs=tuple(cidrs),
        renotify_days=_abuse_days(sec.get("renotify_days", 0), "renotify_days"),
        renotify_types={str(t): _abuse_days(v, f"renotify_types.{t}") for t, v in types.items()},
        renotify_keys={str(t): tuple(v) for t, v in keys.items()})

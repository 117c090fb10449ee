"""The ``[abuse_contacts]`` configuration section, typed (docs/abuse-contacts.md).

TOML form::

    [abuse_contacts]
    enabled = true
    countries = ["AT"]              # the CERT's constituency: events geolocated here ...
    cidrs = ["192.0.2.0/24"]        # ... or with an address in these networks
    bounce_threshold = 3            # read by herald.deliver.bounces
    renotify_days = 7               # automatic recipients: an event reported to a mailbox is not
                                    # reported to it again within this many days (0: off)
    renotify_types = {scan_http = 3}        # per report type, overrides renotify_days
    renotify_keys = {scan_http = ["ip", "port"]}   # event identity per type (default below)

Unknown keys are errors (a silently ignored ``countrys`` would mail nobody, or everybody).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from herald.errors import ConfigError

#: Keys of ``[abuse_contacts]``.
KEYS = frozenset({"enabled", "countries", "cidrs", "bounce_threshold", "renotify_days",
                  "renotify_types", "renotify_keys"})


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


def _days(value: Any, where: str) -> int:
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
    unknown = sorted(set(sec) - KEYS)
    if unknown:
        raise ConfigError(f"[abuse_contacts]: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(KEYS))}")
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
        renotify_days=_days(sec.get("renotify_days", 0), "renotify_days"),
        renotify_types={str(t): _days(v, f"renotify_types.{t}") for t, v in types.items()},
        renotify_keys={str(t): tuple(v) for t, v in keys.items()})

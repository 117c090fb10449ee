"""Sinkholed domains: one domain (:class:`SinkholeDomain`) and the table that finds the domain
covering a query name, Host header, SNI name or local address (:class:`DomainTable`).

Where the domains come from (the TOML file, the operations of the metadata database, registered
providers) is :func:`herald.sensors.config.load_sinkhole_domains`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class SinkholeDomain:
    """One sinkholed domain; it covers the name itself and every name below it.

    Attributes:
        name: lower-case domain without the final dot (``evil-c2.example``).
        family: malware family written to the ``family`` column.
        tag: the ``tag`` column (campaign or takedown name).
        operation: the law-enforcement operation the domain belongs to (not a report column; kept for
            the operations module and for logs).
        infection: the ``infection`` column; defaults to ``family``.
        addresses: local IP addresses dedicated to this domain; an HTTP request to one of them whose
            Host header and SNI name no sinkholed domain is attributed to this domain.
        source: where the entry came from (``"toml"`` or a provider's name).
    """

    name: str
    family: str | None = None
    tag: str | None = None
    operation: str | None = None
    infection: str | None = None
    addresses: tuple[str, ...] = ()
    source: str = "toml"


def normalize_name(name: str) -> str:
    """Lower-case ``name``, strip white space and the final dot (DNS names compare case-insensitively,
    RFC 1035 section 2.3.3)."""
    return name.strip().rstrip(".").lower()


class DomainTable:
    """Maps a query name, Host header or SNI name to its :class:`SinkholeDomain` (suffix match).

    Lookup walks the labels from the full name up to the top-level domain, so its cost is one dict
    probe per label, independent of the number of domains.
    """

    def __init__(self, domains: Iterable[SinkholeDomain]) -> None:
        self._by_name: dict[str, SinkholeDomain] = {}
        self._by_addr: dict[str, SinkholeDomain] = {}
        for d in domains:
            self._by_name.setdefault(d.name, d)
            for a in d.addresses:
                self._by_addr.setdefault(a, d)

    def __len__(self) -> int:
        return len(self._by_name)

    def lookup(self, name: str | None) -> SinkholeDomain | None:
        """The domain covering ``name`` (itself or a parent), or ``None``.  ``name`` may carry a final
        dot and any letter case."""
        if not name:
            return None
        name = normalize_name(name)
        while name:
            d = self._by_name.get(name)
            if d is not None:
                return d
            _, _, name = name.partition(".")
        return None

    def by_address(self, ip: str | None) -> SinkholeDomain | None:
        """The domain dedicated to local address ``ip`` (canonical text), or ``None``."""
        return self._by_addr.get(ip) if ip else None

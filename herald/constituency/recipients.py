"""Recipients and their filters: who receives which events.

A recipient is a network owner, a national CERT or a law-enforcement partner.  Its *filters* say
which events are its own: an event matches when its address falls in one of the recipient's CIDRs,
or its ASN is one of the recipient's ASNs, or its country is one of the recipient's countries; and
its report type is in ``report_types`` (when that list is not empty) and its severity is at least
``min_severity``.

TOML form (the ``[[recipients]]`` tables of the configuration file)::

    [[recipients]]
    name = "Example ISP"              # unique; its slug names report files
    email = "abuse@example.net"
    kind = "network_owner"            # or "national_cert", "law_enforcement"
    asns = [64496]
    cidrs = ["192.0.2.0/24", "2001:db8::/32"]
    countries = []                    # ISO 3166-1 alpha-2 codes
    domains = ["isp.example"]         # events whose host name is this domain or below it
    report_types = []                 # empty: all types
    min_severity = "info"             # info < low < medium < high < critical
    tlp = "AMBER"                     # optional, overrides [report] tlp
    pgp_fingerprint = ""              # optional
    renotify_days = 7                 # optional: re-notification window in days (0: off)

Filters read from the TOML file are taken as verified (the operator wrote them); filters requested
through the portal are ``pending`` until an admin verifies them, and only verified filters route.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from herald.constituency.networks import Networks
from herald.errors import ConfigError
from herald.names import slugify  # noqa: F401  (re-exported: part of this module's API)
from herald.schema.registry import SEVERITY_LEVELS

KINDS = ("network_owner", "national_cert", "law_enforcement")

#: Keys of a ``[[recipients]]`` table; anything else is a typo (``min_severty``) and an error,
#: because a silently ignored filter widens what a recipient receives.
RECIPIENT_KEYS = frozenset({
    "name", "email", "kind", "asns", "cidrs", "countries", "domains", "report_types", "min_severity",
    "tlp", "pgp_fingerprint", "operation", "families", "tags", "disabled", "xarf", "digest",
    "language", "contacts", "renotify_days", "attach",
})

_CC_RE = re.compile(r"^[A-Z]{2}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9-]{1,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Recipient:
    """One recipient with its verified filters.

    Attributes:
        name: unique display name.
        email: contact address for reports.
        kind: one of :data:`KINDS`.
        asns: ASNs (int).
        cidrs: networks, host bits cleared: a :class:`~herald.constituency.networks.Networks`
            (compact; items are ``ipaddress.IPv4Network`` / ``IPv6Network``) or a list of those.
        countries: ISO 3166-1 alpha-2 codes, upper case.
        domains: DNS domains, lower case without a trailing dot; an event matches when one of its
            host-name columns (:data:`herald.route.DOMAIN_COLUMNS`) is the domain or a name below it.
        report_types: report-type names; empty means every type.
        min_severity: lowest severity delivered.
        tlp: TLP label override, or ``None``.
        pgp_fingerprint: OpenPGP key fingerprint, or ``None``.
        id: database id when loaded from the database, else ``None``.
        operation: law-enforcement operation name this recipient's share is scoped to, or ``None``.
        families: malware families (``family`` / ``infection`` column values) of the operation;
            empty means no family restriction.
        tags: ``tag`` values of the operation; empty means no tag restriction.
        renotify_days: the recipient's re-notification window in days (an event reported to it
            is not reported again within that many days; :mod:`herald.reports.renotify`), ``0``
            off, ``None`` none of its own (automatic recipients then take ``[abuse_contacts]
            renotify_days``).  Stored with the recipient (``recipients.renotify_days``).
    """

    name: str
    email: str
    kind: str = "network_owner"
    asns: list[int] = field(default_factory=list)
    cidrs: list[Any] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    report_types: list[str] = field(default_factory=list)
    min_severity: str = "info"
    tlp: str | None = None
    pgp_fingerprint: str | None = None
    id: int | None = None
    operation: str | None = None
    families: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    renotify_days: int | None = None

    @property
    def slug(self) -> str:
        """File-name slug of :attr:`name` (see :func:`slugify`)."""
        return slugify(self.name)

    @property
    def filter_label(self) -> str:
        """Short word for the file name's ``<filter>`` part: ``asn``, ``cidr``, ``geo`` or a mix;
        ``op_<operation>`` for an operation's share (a partner may take part in several)."""
        if self.operation:
            return "op_" + slugify(self.operation)
        parts = [w for w, v in (("asn", self.asns), ("cidr", self.cidrs), ("geo", self.countries),
                                ("domain", self.domains)) if v]
        return "_".join(parts) or "none"


def recipient_from_dict(spec: dict[str, Any], where: str = "recipient", *,
                        _parsed: tuple[Networks, Any] | None = None) -> Recipient:
    """Validate one ``[[recipients]]`` table.

    ``_parsed`` is the result of :meth:`Networks.parse` on the table's ``cidrs`` when the caller
    parsed many tables' CIDRs at once (:func:`recipients_from_specs`).

    Raises:
        ConfigError: naming ``where`` and the field for every invalid value.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(spec) - RECIPIENT_KEYS)
    if unknown:
        raise ConfigError(f"{where} {spec.get('name', '')!r}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(RECIPIENT_KEYS))}")
    for key in ("asns", "cidrs", "countries", "domains", "report_types", "families", "tags"):
        if key in spec and not isinstance(spec[key], list):
            raise ConfigError(f"{where} {spec.get('name', '')!r}: {key} must be a list, "
                              f"for example {key} = [{spec[key]!r}]")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' is required")
    where = f"{where} {name!r}"
    email = spec.get("email", "")
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise ConfigError(f"{where}: 'email' {email!r} is not an email address")
    kind = spec.get("kind", "network_owner")
    if kind not in KINDS:
        raise ConfigError(f"{where}: 'kind' {kind!r} must be one of {', '.join(KINDS)}")
    asns = []
    for a in spec.get("asns", []):
        try:
            a = int(str(a).upper().removeprefix("AS"))
        except ValueError:
            raise ConfigError(f"{where}: asns: {a!r} is not an AS number") from None
        if not 0 < a < 2**32:
            raise ConfigError(f"{where}: asns: {a} is out of range (1..4294967295, RFC 6793)")
        asns.append(a)
    cidrs = _parse_cidrs(spec.get("cidrs", []), where, _parsed)
    countries = []
    for cc in spec.get("countries", []):
        cc = str(cc).upper()
        if not _CC_RE.match(cc):
            raise ConfigError(f"{where}: countries: {cc!r} is not an ISO 3166-1 alpha-2 code")
        countries.append(cc)
    domains = []
    for d in spec.get("domains", []):
        d = str(d).strip().lower().rstrip(".")
        if not _DOMAIN_RE.match(d):
            raise ConfigError(f"{where}: domains: {d!r} is not a DNS domain name")
        domains.append(d)
    sev = str(spec.get("min_severity", "info")).lower()
    if sev not in SEVERITY_LEVELS:
        raise ConfigError(f"{where}: min_severity {sev!r} must be one of {', '.join(SEVERITY_LEVELS)}")
    types = spec.get("report_types", [])
    if not isinstance(types, list):
        raise ConfigError(f"{where}: report_types must be a list")
    renotify = spec.get("renotify_days")
    if renotify is not None:
        renotify = check_renotify_days(renotify, where)
    return Recipient(
        name=name.strip(), email=email, kind=kind, asns=asns, cidrs=cidrs, countries=countries, domains=domains,
        report_types=[str(t) for t in types], min_severity=sev,
        tlp=spec.get("tlp"), pgp_fingerprint=spec.get("pgp_fingerprint") or None,
        operation=spec.get("operation"), families=[str(f).lower() for f in spec.get("families", [])],
        tags=[str(t).lower() for t in spec.get("tags", [])], renotify_days=renotify,
    )


def check_renotify_days(value: Any, where: str = "recipient") -> int:
    """A re-notification window: an integer number of days, at least 0 (0: off).

    Raises:
        ConfigError: naming ``where``, for anything else (``True``, ``-1``, ``"7"``, ``1.5``).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: renotify_days must be an integer >= 0 (days), not {value!r}")
    return value


def _check_cidr(c: Any, where: str):
    """One CIDR with :mod:`ipaddress` (strict): the network, or :class:`ConfigError` naming the
    value (and, for host bits set, the two networks that may have been meant)."""
    try:
        net = ipaddress.ip_network(str(c).strip(), strict=True)
    except ValueError as exc:
        hint = ""
        try:
            loose = ipaddress.ip_network(str(c).strip(), strict=False)
            host = str(c).split("/")[0]
            hint = (f"; it has host bits set: did you mean {loose} or "
                    f"{host}/{loose.max_prefixlen}?")
        except ValueError:
            pass
        raise ConfigError(f"{where}: cidrs: {c!r} is not an IPv4 or IPv6 network{hint or f' ({exc})'}") from None
    if net.prefixlen == 0:
        raise ConfigError(f"{where}: cidrs: {c!r} is the whole address space; a recipient may "
                          f"only claim networks it is responsible for")
    return net


def _parse_cidrs(values: list, where: str, parsed: tuple[Networks, Any] | None = None) -> Networks:
    """A ``cidrs`` list as :class:`Networks`: the plain ``address/length`` texts vectorized, the
    rest (and every error, in list order) through :func:`_check_cidr`."""
    if not values:
        return Networks.empty()
    nets, ok = parsed if parsed is not None else Networks.parse([str(c) for c in values])
    check = np.flatnonzero(~ok | (nets.plen == 0))
    if not len(check):
        return nets
    fixed = [_check_cidr(values[i], where) for i in check]
    return nets.with_replaced(check, fixed)


def recipients_from_specs(specs: Iterable[dict[str, Any]], where: str = "recipients") -> list[Recipient]:
    """Validate a list of recipient tables; names and slugs must be unique.

    Raises:
        ConfigError: on the first invalid entry or a duplicate name/slug.
    """
    out: list[Recipient] = []
    seen: dict[str, str] = {}
    specs = list(specs)
    # Every table's CIDRs parsed in one vectorized pass (a constituency may hold a million).
    lists = [spec.get("cidrs") if isinstance(spec, dict) and isinstance(spec.get("cidrs"), list) else []
             for spec in specs]
    bounds = np.cumsum([0] + [len(v) for v in lists])
    all_nets, all_ok = Networks.parse([str(c) for v in lists for c in v])
    for i, spec in enumerate(specs):
        a, b = int(bounds[i]), int(bounds[i + 1])
        r = recipient_from_dict(spec, f"{where}[{i}]", _parsed=(all_nets[a:b], all_ok[a:b]) if b > a else None)
        if r.slug in seen:
            raise ConfigError(f"{where}[{i}]: recipient {r.name!r} has the same file slug "
                              f"{r.slug!r} as {seen[r.slug]!r}")
        seen[r.slug] = r.name
        out.append(r)
    return out

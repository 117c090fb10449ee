"""Validation of recipient and filter values: the canonical forms stored in the database.

One concept: what a filter value, an e-mail address and a TLP label look like once accepted.
Used by :mod:`herald.constituency.repository` (single changes) and
:mod:`herald.constituency.bulk_import` (the configuration import).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from herald.config import TLP_LABELS
from herald.errors import ConfigError
from herald.schema.registry import SEVERITY_LEVELS
from herald.store.db import FILTER_KINDS

_CC_RE = re.compile(r"^[A-Z]{2}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_filter(kind: str, value: Any) -> str:
    """The canonical text of a filter value, as stored and compared.

    ASN: decimal (``AS64496`` gives ``64496``); CIDR: network with host bits cleared; country:
    upper-case ISO 3166-1 alpha-2; domain: lower-case IDNA (``xn--``) without trailing dot;
    report type: a name known to the registry; min_severity: a level of
    :data:`herald.schema.registry.SEVERITY_LEVELS`.

    Raises:
        ConfigError: unknown kind or invalid value (the message names both).
    """
    if kind not in FILTER_KINDS:
        raise ConfigError(f"filter kind {kind!r} must be one of {', '.join(FILTER_KINDS)}")
    text = str(value).strip()
    if kind == "asn":
        try:
            asn = int(text.upper().removeprefix("AS"))
        except ValueError:
            raise ConfigError(f"asn filter: {value!r} is not an AS number") from None
        if not 0 < asn < 2**32:
            raise ConfigError(f"asn filter: {asn} is out of range (1..4294967295, RFC 6793)")
        return str(asn)
    if kind == "cidr":
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(f"cidr filter: {value!r} is not an IPv4 or IPv6 network") from None
    if kind == "country":
        cc = text.upper()
        if not _CC_RE.match(cc):
            raise ConfigError(f"country filter: {value!r} is not an ISO 3166-1 alpha-2 code")
        return cc
    if kind == "domain":
        try:
            name = text.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ConfigError(f"domain filter: {value!r} is not a valid domain name") from None
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL_RE.match(x) for x in labels):
            raise ConfigError(f"domain filter: {value!r} is not a valid domain name")
        return name
    if kind == "report_type":
        from herald.schema import default_registry

        if text not in default_registry():
            raise ConfigError(f"report_type filter: unknown report type {text!r} "
                              f"(see 'herald types')")
        return text
    sev = text.lower()
    if sev not in SEVERITY_LEVELS:
        raise ConfigError(f"min_severity filter: {value!r} must be one of {', '.join(SEVERITY_LEVELS)}")
    return sev


def check_email(email: str) -> str:
    """``email`` stripped of white space.

    Raises:
        ConfigError: not an e-mail address.
    """
    if not isinstance(email, str) or not _EMAIL_RE.match(email.strip()):
        raise ConfigError(f"{email!r} is not an email address")
    return email.strip()


def check_tlp(tlp: str | None) -> str | None:
    """A TLP 2.0 label, upper case without ``TLP:`` (``None`` for none or empty).

    Raises:
        ConfigError: not a TLP 2.0 label.
    """
    if tlp is None or tlp == "":
        return None
    label = str(tlp).upper().removeprefix("TLP:")
    if label not in TLP_LABELS:
        raise ConfigError(f"tlp {tlp!r} is not a TLP 2.0 label ({', '.join(TLP_LABELS)})")
    return label

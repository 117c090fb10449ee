"""The conversion functions that Shadowserver's ``intelmq.json`` names, by that name.

Their meaning is that of IntelMQ 3.5.0's Shadowserver parser configuration (an independent
implementation).  :data:`FUNCTIONS` maps a name (``convert_int``, ``validate_ip``,
``convert_http_host_and_url``, ...) to a function of the raw column text (and, for the row
functions, the row as ``{column: text}``) that returns the value to store, or ``None`` for
"no value"; a function may raise ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable

from herald.schema.intelmq.datetimes import parse_datetime
from herald.schema.intelmq.harmonization import is_valid_as

__all__ = ["FUNCTIONS"]

def _add_utc(value: str) -> str:
    return value + " UTC"


def _convert_bool(value: str) -> bool | None:
    value = value.lower()
    if value in ("y", "yes", "true", "enabled", "1"):
        return True
    if value in ("n", "no", "false", "disabled", "0"):
        return False
    return None


def _validate_to_none(value: str) -> str | None:
    return None if (not value or value in ("0", "unknown")) else value


def _convert_int(value: str) -> int | None:
    return int(value) if value else None


def _convert_float(value: str) -> float | None:
    return float(value) if value else None


def _invalidate_zero(value: str) -> int | None:
    return int(value) if value and int(value) != 0 else None


def _validate_ip(value: str) -> str | None:
    # 0.0.0.0 and networks are not addresses (IntelMQ issue 1720).
    if value == "0.0.0.0" or "/" in value:
        return None
    return value if is_valid_as("IPAddress", value) else None


def _validate_network(value: str) -> str | None:
    if "/" in value and is_valid_as("IPNetwork", value):
        return value
    return None


def _validate_fqdn(value: str) -> str | None:
    if value and is_valid_as("FQDN", value):
        return value
    return None


def _convert_date(value: str) -> str | None:
    return parse_datetime(value)


def _convert_date_utc(value: str) -> str | None:
    # IntelMQ appends "+00:00" (the last zone of a text wins, so the time is read as UTC even when
    # the value has its own offset) and parses fuzzily: an empty value then becomes midnight of
    # the day IntelMQ runs.  Herald gives no value for an empty column (docs/intelmq.md).
    return parse_datetime(value + "+00:00") if value.strip() else None


def _force_base64(value: str) -> str | None:
    """Base64 text unchanged, other text base64-encoded (UTF-8)."""
    if not value:
        return None
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return base64.b64encode(value.encode()).decode()
    return value


_ABSOLUTE_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]")


def _http_host_and_url(value: str, row: dict[str, str]) -> str:
    """A full URL from host and path columns: host from ``cc_dns``, ``http_host``, ``hostname`` or
    ``ip`` (first non-empty), path from ``url`` or ``http_url`` without a leading request method
    and trailing protocol (``GET /x HTTP/1.1`` -> ``/x``), scheme from ``application`` (http or
    https, default http).  Without host or path, ``value`` unchanged.  A path column that already
    holds an absolute URL is returned unchanged (Herald's fix of IntelMQ 3.5.0, see docs/intelmq.md)."""
    host = ""
    for col in ("cc_dns", "http_host", "hostname", "ip"):
        if not host and col in row:
            host = row.get(col) or ""
    if "url" in row:
        path = row.get("url") or ""
    elif "http_url" in row:
        path = row.get("http_url") or ""
    else:
        path = ""
    if host and path:
        if _ABSOLUTE_URL_RE.match(path):
            # Herald's deliberate difference: the column already holds a full URL (malware_url,
            # sandbox_url: "http://203.0.113.1:8080/x").  IntelMQ 3.5.0 would cut the scheme and
            # prepend a host again ("http://<ip>//203.0.113.1:8080/x"); Herald keeps the URL.
            return path
        path = re.sub(r"^[^/]*", "", path)
        path = re.sub(r"\s.*$", "", path)
        scheme = row["application"] if row.get("application") in ("http", "https") else "http"
        return f"{scheme}://{host}{path}"
    return value


def _category_or_detail(value: str, row: dict[str, str]) -> str:
    return row.get("category") or row.get("detail") or ""


_CVE_RE = re.compile(r"^cve-[0-9]+-[0-9]+$")


def _extract_cve(tag: str) -> str | None:
    cves = sorted({t for t in tag.split(";") if _CVE_RE.match(t)})
    return ";".join(cves) if cves else None


#: Conversion functions by their intelmq.json name.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "add_UTC_to_timestamp": _add_utc,
    "convert_bool": _convert_bool,
    "validate_to_none": _validate_to_none,
    "convert_int": _convert_int,
    "convert_float": _convert_float,
    "convert_http_host_and_url": _http_host_and_url,
    "invalidate_zero": _invalidate_zero,
    "validate_ip": _validate_ip,
    "validate_network": _validate_network,
    "validate_fqdn": _validate_fqdn,
    "convert_date": _convert_date,
    "convert_date_utc": _convert_date_utc,
    "force_base64": _force_base64,
    "scan_exchange_taxonomy": lambda v: "intrusions" if "webshell" in v else "vulnerable",
    "scan_exchange_type": lambda v: "system-compromise" if "webshell" in v else "vulnerable-system",
    "scan_exchange_identifier": (lambda v: "exchange-server-webshell" if "webshell" in v
                                 else "vulnerable-exchange-server"),
    "category_or_detail": _category_or_detail,
    "extract_cve_from_tag": _extract_cve,
}

"""IntelMQ export: Herald's normalized tables as IntelMQ events.

:func:`to_intelmq` turns each row of a normalized report table (from
:func:`herald.sources.shadowserver_csv.read_file`) into one IntelMQ event: a flat dict whose keys
are IntelMQ *harmonization* field names (``source.ip``, ``classification.taxonomy``,
``extra.http_code``).  The aim is the output of IntelMQ 3.5.0's ``ShadowserverParserBot`` for the
same CSV file, so that Herald can feed an existing IntelMQ installation and so that
``tests/test_intelmq_conformance.py`` can check Herald against IntelMQ's own output.

Sources of the rules (this module is an independent implementation; it does not use IntelMQ):

- the mapping of a report type's columns, with conversion-function names, is the type's entry of
  Shadowserver's ``intelmq.json`` (``required_fields``, ``optional_fields``, ``constant_fields``,
  ``feed_name``, ``url``), bundled as ``herald/schema/data/intelmq.json``;
- the meaning of the conversion functions (``convert_int``, ``validate_ip``, ...) and the order in
  which fields are applied are those documented for IntelMQ 3.5.0's Shadowserver parser;
- every value put in a harmonization field is *sanitized* and *validated* by the field's type, as
  IntelMQ 3.5.0's ``harmonization.conf`` and ``lib/harmonization.py`` define them (types
  ``String``, ``DateTime``, ``IPAddress``, ``FQDN``, ``ASN``, ... with the ``length`` and ``regex``
  limits of :data:`HARMONIZATION`).  An optional field whose value is invalid for its type is
  not lost: its column goes to ``extra`` with the raw text, as IntelMQ does.

Deliberate differences (documented in ``docs/intelmq.md``): Herald never drops a row in the
export.  Where IntelMQ rejects a whole row (a required column missing from an older file, a
conversion function that raises, a required value invalid for its field), Herald emits the event
without that field and keeps the raw text in ``extra`` when it is not empty.  Dates are parsed by
a strict parser of the formats found in Shadowserver data instead of ``dateutil``'s fuzzy parser,
so an empty ``convert_date_utc`` column gives no value (IntelMQ gives midnight of the day it runs).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import ipaddress
import re
import urllib.parse
from functools import lru_cache
from typing import Any, Callable, Iterator

import pyarrow as pa

from herald.schema.registry import ReportType

__all__ = ["to_intelmq", "HARMONIZATION", "FUNCTIONS", "sanitize_value", "parse_datetime", "InvalidValue",
           "InvalidKey"]

_UTC = _dt.timezone.utc

# ---------------------------------------------------------------------------------------------
# Harmonization: the event fields of IntelMQ 3.5.0's harmonization.conf, with their type and the
# limits the configuration sets (``length``: maximum length of str(value); ``regex`` searched in
# str(value); ``iregex`` the same, ignoring case).
# ---------------------------------------------------------------------------------------------

_CC = {"length": 2, "regex": r"^[a-zA-Z0-9]{2}$"}
_HOST = {"regex": r"^.*[^\.]$"}
_PRINTABLE = {"regex": r"^[ -~]+$"}
_HASH = {"length": 200, "regex": r"^[ -~]+$"}
_UUID = r"[a-z0-9]{8}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{12}"
#: IANA protocol keywords accepted in ``protocol.transport`` (harmonization.conf ``iregex``).
_TRANSPORTS = (
    "ip|icmp|igmp|ggp|ipencap|st2|tcp|cbt|egp|igp|bbn-rcc|nvp(-ii)?|pup|argus|emcon|xnet|chaos|udp|"
    "mux|dcn|hmp|prm|xns-idp|trunk-1|trunk-2|leaf-1|leaf-2|rdp|irtp|iso-tp4|netblt|mfe-nsp|"
    "merit-inp|sep|3pc|idpr|xtp|ddp|idpr-cmtp|tp\\+\\+|il|ipv6|sdrp|ipv6-route|ipv6-frag|idrp|rsvp|"
    "gre|mhrp|bna|esp|ah|i-nlsp|swipe|narp|mobile|tlsp|skip|ipv6-icmp|ipv6-nonxt|ipv6-opts|cftp|"
    "sat-expak|kryptolan|rvd|ippc|sat-mon|visa|ipcv|cpnx|cphb|wsn|pvp|br-sat-mon|sun-nd|wb-mon|"
    "wb-expak|iso-ip|vmtp|secure-vmtp|vines|ttp|nsfnet-igp|dgp|tcf|eigrp|ospf|sprite-rpc|larp|mtp|"
    "ax.25|ipip|micp|scc-sp|etherip|encap|gmtp|ifmp|pnni|pim|aris|scps|qnx|a/n|ipcomp|snp|"
    "compaq-peer|ipx-in-ip|vrrp|pgm|l2tp|ddx|iatp|st|srp|uti|smp|sm|ptp|isis|fire|crtp|crdup|"
    "sscopmce|iplt|sps|pipe|sctp|fc|divert"
)

#: ``field -> (harmonization type, limits)`` for every IntelMQ 3.5.0 event field.
HARMONIZATION: dict[str, tuple[str, dict[str, Any]]] = {
    "classification.identifier": ("String", {}),
    "classification.taxonomy": ("ClassificationTaxonomy", {"length": 100}),
    "classification.type": ("ClassificationType", {}),
    "comment": ("String", {}),
    "constituency": ("String", {}),
    "event_description.target": ("String", {}),
    "event_description.text": ("String", {}),
    "event_description.url": ("URL", {}),
    "event_hash": ("UppercaseString", {"length": 40, "regex": r"^[A-F0-9./]+$"}),
    "extra": ("JSONDict", {}),
    "feed.accuracy": ("Accuracy", {}),
    "feed.code": ("String", {"length": 100}),
    "feed.documentation": ("String", {}),
    "feed.name": ("String", {}),
    "feed.provider": ("String", {}),
    "feed.url": ("URL", {}),
    "malware.hash.md5": ("String", _HASH),
    "malware.hash.sha1": ("String", _HASH),
    "malware.hash.sha256": ("String", _HASH),
    "malware.name": ("LowercaseString", _PRINTABLE),
    "malware.version": ("String", _PRINTABLE),
    "misp.attribute_uuid": ("LowercaseString", {"length": 36, "regex": f"^{_UUID}$"}),
    "misp.event_uuid": ("LowercaseString", {"length": 36, "regex": f"^{_UUID}$"}),
    "output": ("JSON", {}),
    "product.full_name": ("String", {}),
    "product.name": ("LowercaseString", {}),
    "product.vendor": ("LowercaseString", {}),
    "product.version": ("LowercaseString", {}),
    "product.vulnerabilities": ("LowercaseString", {}),
    "protocol.application": ("LowercaseString", {"length": 100, "regex": r"^[ -~]+$"}),
    "protocol.transport": ("LowercaseString", {"length": 11, "iregex": f"^({_TRANSPORTS})$"}),
    "raw": ("Base64", {}),
    "rtir_id": ("Integer", {}),
    "screenshot_url": ("URL", {}),
    "severity": ("LowercaseString", {"length": 10,
                                     "regex": r"^(critical|high|medium|low|info|undefined)$"}),
    "status": ("String", {}),
    "time.observation": ("DateTime", {}),
    "time.source": ("DateTime", {}),
    "tlp": ("TLP", {}),
}
for _side in ("source", "destination"):
    HARMONIZATION.update({
        f"{_side}.abuse_contact": ("LowercaseString", {}),
        f"{_side}.account": ("String", {}),
        f"{_side}.allocated": ("DateTime", {}),
        f"{_side}.as_name": ("String", {}),
        f"{_side}.asn": ("ASN", {}),
        f"{_side}.domain_suffix": ("FQDN", {}),
        f"{_side}.fqdn": ("FQDN", _HOST),
        f"{_side}.geolocation.cc": ("UppercaseString", _CC),
        f"{_side}.geolocation.city": ("String", {}),
        f"{_side}.geolocation.country": ("String", {}),
        f"{_side}.geolocation.latitude": ("Float", {}),
        f"{_side}.geolocation.longitude": ("Float", {}),
        f"{_side}.geolocation.region": ("String", {}),
        f"{_side}.geolocation.state": ("String", {}),
        f"{_side}.ip": ("IPAddress", {}),
        f"{_side}.local_hostname": ("String", {}),
        f"{_side}.local_ip": ("IPAddress", {}),
        f"{_side}.network": ("IPNetwork", {}),
        f"{_side}.port": ("Integer", {"length": 5} if _side == "source" else {}),
        f"{_side}.registry": ("Registry", {"length": 7}),
        f"{_side}.reverse_dns": ("FQDN", _HOST),
        f"{_side}.tor_node": ("Boolean", {}),
        f"{_side}.url": ("URL", {}),
        f"{_side}.urlpath": ("String", {}),
    })
HARMONIZATION["source.geolocation.cymru_cc"] = ("UppercaseString", _CC)
HARMONIZATION["source.geolocation.geoip_cc"] = ("UppercaseString", _CC)

#: Key syntax of IntelMQ messages (lib/message.py ``HARMONIZATION_KEY_FORMAT``).
_KEY_FORMAT = re.compile(r"^[a-z_][a-z_0-9]+(\.[a-z_0-9]+)*$")
#: Values that IntelMQ's ``Message.add`` silently ignores.
_IGNORED = ("", "-", "N/A")


class InvalidValue(ValueError):
    """A value is not valid for a harmonization field, even after sanitizing."""


class InvalidKey(KeyError):
    """A key is not a harmonization field (nor a sub-key of ``extra``)."""


# ---------------------------------------------------------------------------------------------
# Harmonization types: sanitize (None = cannot be made valid) and validate.
# ---------------------------------------------------------------------------------------------

def _generic(value: Any) -> Any:
    """GenericType sanitation: falsy values (0, False, "") become None, text is stripped."""
    if not value:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bytes):
        return value.decode("utf-8", "ignore").strip()
    return str(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and len(value) > 0


def _lower(value: Any) -> Any:
    return _generic(value.lower()) if isinstance(value, str) else None


def _upper(value: Any) -> Any:
    return _generic(value.upper()) if isinstance(value, str) else None


_TAXONOMIES = frozenset({
    "abusive-content", "availability", "fraud", "information-content-security",
    "information-gathering", "intrusion-attempts", "intrusions", "malicious-code", "other", "test",
    "vulnerable",
})
_OLD_TAXONOMIES = {"abusive content": "abusive-content", "information gathering": "information-gathering",
                   "intrusion attempts": "intrusion-attempts", "malicious code": "malicious-code"}
_CLASS_TYPES = frozenset({
    "application-compromise", "blacklist", "brute-force", "burglary", "c2-server", "copyright",
    "data-leak", "data-loss", "ddos", "ddos-amplifier", "dga-domain", "dos", "exploit",
    "harmful-speech", "ids-alert", "infected-system", "information-disclosure", "malware",
    "malware-configuration", "malware-distribution", "masquerade", "misconfiguration", "other",
    "outage", "phishing", "potentially-unwanted-accessible", "privileged-account-compromise",
    "proxy", "sabotage", "scanner", "sniffing", "social-engineering", "spam", "system-compromise",
    "test", "tor", "unauthorised-information-access", "unauthorised-information-modification",
    "unauthorized-use-of-resources", "undetermined", "unprivileged-account-compromise", "violence",
    "vulnerable-system", "weak-crypto",
})
#: Old ``classification.type`` names and their RSIT replacement (IntelMQ 3.5.0 ClassificationType).
_OLD_CLASS_TYPES = {
    "botnet drone": "infected-system", "ids alert": "ids-alert", "c&c": "c2-server",
    "c2server": "c2-server", "infected system": "infected-system",
    "malware configuration": "malware-configuration", "vulnerable client": "vulnerable-system",
    "vulnerable service": "vulnerable-system", "leak": "data-leak", "ransomware": "infected-system",
    "unknown": "undetermined", "dga domain": "dga-domain", "unauthorized-login": "system-compromise",
    "unauthorized-command": "system-compromise", "compromised": "system-compromise",
    "defacement": "unauthorised-information-modification", "backdoor": "system-compromise",
    "dropzone": "other",
}


def _san_taxonomy(value: Any) -> Any:
    value = _lower(value)
    return _generic(_OLD_TAXONOMIES.get(value, value)) if value else None


def _san_class_type(value: Any) -> Any:
    value = _lower(value)
    return _generic(_OLD_CLASS_TYPES.get(value, value)) if value else None


def _valid_ip(value: Any) -> bool:
    """IPAddress validity: a plain address string, not 0.0.0.0, without a scope id."""
    if not _is_text(value) or "%" in value:
        return False
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    return addr != ipaddress.IPv4Address("0.0.0.0")


def _san_ip(value: Any) -> Any:
    if isinstance(value, str):
        return _san_ip_text(value)
    return _san_ip_any(value)


@lru_cache(maxsize=1 << 16)
def _san_ip_text(value: str) -> Any:
    return _san_ip_any(value)


def _san_ip_any(value: Any) -> Any:
    """IPAddress sanitation: integers (also as text) become addresses, a scope id is removed,
    a single-address network (``1.2.3.4/32``) becomes its address; anything else is None."""
    if not isinstance(value, int):
        value = _generic(value)
        if value is None:
            return None
        try:
            if str(value) == str(int(value)):
                value = int(value)
        except (ValueError, TypeError):
            pass
    if isinstance(value, int):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return None
    value = value.split("%")[0]
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        return None
    return _generic(str(net.network_address)) if net.num_addresses == 1 else None


def _san_network(value: Any) -> Any:
    """IPNetwork sanitation: the network of ``value``, host bits cleared (``strict=False``)."""
    value = _generic(value)
    try:
        return _generic(str(ipaddress.ip_network(str(value), strict=False)))
    except ValueError:
        return None


def _valid_network(value: Any) -> bool:
    if not _is_text(value):
        return False
    try:
        ipaddress.ip_network(value)
    except ValueError:
        return False
    return True


def _san_fqdn(value: Any) -> Any:
    return _san_fqdn_text(value) if isinstance(value, str) else _san_fqdn_any(value)


@lru_cache(maxsize=1 << 16)
def _san_fqdn_text(value: str) -> Any:
    return _san_fqdn_any(value)


def _san_fqdn_any(value: Any) -> Any:
    """FQDN sanitation: stripped of blanks and dots, IDNA-encoded (Python's IDNA 2003 codec), lower."""
    value = _generic(value)
    if not isinstance(value, str):
        return None
    value = value.strip(".")
    if not value:
        return None
    try:
        return value.encode("idna").decode().lower()
    except UnicodeError:
        return None


def _valid_fqdn(value: Any) -> bool:
    return _valid_fqdn_text(value) if isinstance(value, str) else False


@lru_cache(maxsize=1 << 16)
def _valid_fqdn_text(value: str) -> bool:
    """FQDN validity: lower case, no leading/trailing dot, no ':', not an IP address, nothing a URL
    parser would see as scheme, host, query, fragment or path separator, already IDNA-encoded."""
    if not _is_text(value):
        return False
    if value.strip(".") != value or value != value.lower() or ":" in value:
        return False
    if _valid_ip(value):
        return False
    try:
        url = urllib.parse.urlsplit(value)
        if url.scheme or url.netloc or url.query or url.fragment or "/" in url.path:
            return False
        return value.encode("idna").decode() == value
    except (ValueError, UnicodeError):
        return False


def _san_int(value: Any) -> Any:
    try:
        return int(value)
    except (ValueError, TypeError):
        return None


def _valid_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _san_asn(value: Any) -> Any:
    """ASN sanitation: an optional ``AS`` prefix is removed; valid are 1 ... 4294967295."""
    if isinstance(value, str) and value.lower().startswith("as"):
        value = value[2:]
    value = _san_int(value)
    return value if value and 0 < value <= 4294967295 else None


def _san_float(value: Any) -> Any:
    try:
        return float(value)
    except (ValueError, TypeError):
        return None


def _valid_float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _san_bool(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        value = value.strip().lower()
        if value in ("true", b"true"):
            return True
        if value in ("false", b"false"):
            return False
    elif isinstance(value, int):
        if value == 0:
            return False
        if value == 1:
            return True
    return None


def _san_url(value: Any) -> Any:
    """URL sanitation: ``hxxp`` becomes ``http``; a ``file:`` URL without host gets ``localhost``;
    a URL without host is None."""
    value = _generic(value)
    if not value:
        return None
    value = value.replace("hxxp://", "http://").replace("hxxps://", "https://")
    try:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme == "file" and parts.netloc == "":
            value = urllib.parse.urlunsplit(parts._replace(netloc="localhost"))
            parts = urllib.parse.urlsplit(value)
    except ValueError:
        return None
    return value if parts.netloc != "" else None


def _valid_url(value: Any) -> bool:
    if not _is_text(value) or value[0].isspace():
        return False
    try:
        return urllib.parse.urlsplit(value).netloc != ""
    except ValueError:
        return False


def _san_registry(value: Any) -> Any:
    value = _upper(value)
    return "RIPE" if value in ("RIPENCC", "RIPE-NCC") else value


def _san_tlp(value: Any) -> Any:
    value = _upper(value)
    if value:
        value = re.sub(r"^(TLP:?)?\s*", "", value)
        return "AMBER" if value == "YELLOW" else value
    return value


def _san_datetime(value: Any) -> Any:
    return parse_datetime(value) if isinstance(value, str) else None


def _valid_datetime(value: Any) -> bool:
    return _is_text(value) and parse_datetime(value) == value


def _san_accuracy(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value) * 100
    value = _san_float(value)
    return value if value is not None and 0 <= value <= 100 else None


#: ``type -> (sanitize, is_valid)``: IntelMQ 3.5.0 lib/harmonization.py semantics.
_TYPES: dict[str, tuple[Callable[[Any], Any], Callable[[Any], bool]]] = {
    "String": (_generic, _is_text),
    "LowercaseString": (_lower, lambda v: _is_text(v) and v == v.lower()),
    "UppercaseString": (_upper, lambda v: _is_text(v) and v == v.upper()),
    "ClassificationTaxonomy": (_san_taxonomy, lambda v: _is_text(v) and v in _TAXONOMIES),
    "ClassificationType": (_san_class_type, lambda v: _is_text(v) and v in _CLASS_TYPES),
    "DateTime": (_san_datetime, _valid_datetime),
    "IPAddress": (_san_ip, _valid_ip),
    "IPNetwork": (_san_network, _valid_network),
    "FQDN": (_san_fqdn, _valid_fqdn),
    "Integer": (_san_int, _valid_int),
    "ASN": (_san_asn, lambda v: _valid_int(v) and 0 < v <= 4294967295),
    "Float": (_san_float, _valid_float),
    "Accuracy": (_san_accuracy, lambda v: _valid_float(v) and 0 <= v <= 100),
    "Boolean": (_san_bool, lambda v: isinstance(v, bool)),
    "URL": (_san_url, _valid_url),
    "Registry": (_san_registry, lambda v: v in ("AFRINIC", "APNIC", "ARIN", "LACNIC", "RIPE")),
    "TLP": (_san_tlp, lambda v: v in ("WHITE", "GREEN", "AMBER", "RED")),
    "JSON": (_generic, _is_text),
    "Base64": (lambda v: base64.b64encode(v.encode() if isinstance(v, str) else v).decode(), _is_text),
}


def sanitize_value(key: str, value: Any) -> Any:
    """The value IntelMQ 3.5.0 would store in harmonization field ``key`` for ``value``.

    Sanitizes with the field's type, then validates type, ``length`` and ``regex``/``iregex``
    limits (:data:`HARMONIZATION`).  Sub-keys of ``extra`` take any value unchanged.

    Returns:
        the sanitized value, or ``None`` when IntelMQ would ignore the value (``None``, ``""``,
        ``"-"``, ``"N/A"``).

    Raises:
        InvalidKey: ``key`` is not a harmonization field nor ``extra.<name>``.
        InvalidValue: the value is not valid for the field, even after sanitation.
    """
    if value is None or (isinstance(value, str) and value in _IGNORED):
        return None
    spec = HARMONIZATION.get(key)
    if spec is None:
        if key.startswith("extra.") and _KEY_FORMAT.match(key):
            return value
        raise InvalidKey(key)
    typ, limits = spec
    sanitize, is_valid = _TYPES[typ]
    clean = sanitize(value)
    if clean is None or not is_valid(clean):
        raise InvalidValue(f"{key}: {value!r} is not a valid {typ}")
    text = str(clean)
    if "length" in limits and len(text) > limits["length"]:
        raise InvalidValue(f"{key}: {value!r} is longer than {limits['length']}")
    if "regex" in limits and not re.search(limits["regex"], text):
        raise InvalidValue(f"{key}: {value!r} does not match {limits['regex']}")
    if "iregex" in limits and not re.search(limits["iregex"], text, re.IGNORECASE):
        raise InvalidValue(f"{key}: {value!r} is not an allowed value")
    return clean


# ---------------------------------------------------------------------------------------------
# Dates.  IntelMQ's DateTime sanitation keeps ``YYYY-MM-DDTHH:MM:SS[.f]+00:00`` unchanged and
# otherwise parses with dateutil's fuzzy parser, converting to UTC (naive times are UTC).  Herald
# accepts the formats that occur in Shadowserver data: ISO 8601 (``T`` or blank separator,
# fractions, ``Z``/``UTC``/``GMT``/offset zones) and the HTTP date formats of RFC 9110 5.6.7
# (IMF-fixdate, RFC 850, asctime), with any leading weekday word.  Anything else is not a date.
# ---------------------------------------------------------------------------------------------

_ISO_UTC_RE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}T\d{1,2}:\d{1,2}:\d{1,2}(\.\d{1,6})?\+00:00")
_ZONE = r"(?:Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?|[A-Z]{1,5})"
_ISO_RE = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    rf"\s*(?P<zones>(?:{_ZONE}\s*)*)"
)
_HTTP_RE = re.compile(
    r"(?:[A-Za-z]+,?\s+)?(?P<d>\d{1,2})[ -](?P<mon>[A-Za-z]+)[ -](?P<y>\d{2}|\d{4})"
    r"\s+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?"
    rf"\s*(?P<zones>(?:{_ZONE}\s*)*)"
)
_ASCTIME_RE = re.compile(
    r"(?:[A-Za-z]+,?\s+)?(?P<mon>[A-Za-z]+)\s+(?P<d>\d{1,2})\s+"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})\s+(?P<y>\d{4})"
    rf"\s*(?P<zones>(?:{_ZONE}\s*)*)"
)
_ZONE_RE = re.compile(_ZONE)
_MONTHS = {name: i + 1 for i, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
    ("oct", "october"), ("nov", "november"), ("dec", "december"))) for name in names}


def _zone_offset(zones: str) -> _dt.timezone | None:
    """The UTC offset of the zone tokens (the last numeric offset wins; ``Z``/``UTC``/``GMT`` are
    UTC; other names are unknown and ignored, as dateutil ignores them).  ``None``: no zone."""
    tz = None
    for tok in _ZONE_RE.findall(zones or ""):
        if tok[0] in "+-":
            digits = tok[1:].replace(":", "")
            minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
            tz = _dt.timezone(_dt.timedelta(minutes=minutes if tok[0] == "+" else -minutes))
        elif tok in ("Z", "z", "UTC", "GMT"):
            tz = _UTC
    return tz


def _two_digit_year(year: int) -> int:
    # dateutil's rule: the century that puts the year within 50 years of the current year.
    now = _dt.date.today().year
    year += now // 100 * 100
    if year >= now + 50:
        year -= 100
    elif year < now - 50:
        year += 100
    return year


@lru_cache(maxsize=4096)
def parse_datetime(text: str, default_tz: _dt.tzinfo = _UTC) -> str | None:
    """IntelMQ ``DateTime`` sanitation of ``text``: ISO 8601 in UTC, or ``None``.

    ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`` is returned unchanged (IntelMQ's fast path); other
    accepted formats (see the comment above) are converted to UTC and written by
    :meth:`datetime.datetime.isoformat`.  A time without zone is taken as UTC.

    Returns:
        the ISO text, or ``None`` when ``text`` is not a date in an accepted format or not a
        valid calendar date.
    """
    if _ISO_UTC_RE.fullmatch(text):
        try:
            _dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
            return text
        except ValueError:
            pass
    s = text.strip()
    m = _ISO_RE.fullmatch(s) or _HTTP_RE.fullmatch(s) or _ASCTIME_RE.fullmatch(s)
    if not m:
        return None
    g = m.groupdict()
    try:
        if "mon" in g:
            month = _MONTHS.get(g["mon"].lower())
            if month is None:
                return None
        else:
            month = int(g["mo"])
        year = int(g["y"])
        if len(g["y"]) == 2:
            year = _two_digit_year(year)
        micro = int((g.get("f") or "0").ljust(6, "0")[:6])
        value = _dt.datetime(year, month, int(g["d"]), int(g["h"] or 0), int(g["mi"] or 0),
                             int(g["s"] or 0), micro)
    except (ValueError, OverflowError):
        return None
    tz = _zone_offset(g["zones"])
    value = value.replace(tzinfo=tz or default_tz).astimezone(_UTC)
    return value.isoformat()


# ---------------------------------------------------------------------------------------------
# Conversion functions named in intelmq.json (their meaning as in IntelMQ 3.5.0's Shadowserver
# parser configuration).  Each takes the raw column text (and, for the row functions, the row)
# and returns the value to store, or None for "no value".  A function may raise ValueError.
# ---------------------------------------------------------------------------------------------

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
    clean = _san_ip(value)
    return value if clean is not None and _valid_ip(clean) else None


def _validate_network(value: str) -> str | None:
    if "/" in value:
        clean = _san_network(value)
        if clean is not None and _valid_network(clean):
            return value
    return None


def _validate_fqdn(value: str) -> str | None:
    if value:
        clean = _san_fqdn(value)
        if clean is not None and _valid_fqdn(clean):
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


# ---------------------------------------------------------------------------------------------
# The export.
# ---------------------------------------------------------------------------------------------

#: Column names of Herald's own report types (``herald_types.json``) and the IntelMQ field each
#: fills in the generic mapping, with the conversion function (Shadowserver's conventions of
#: intelmq.json: ``ip``/``src_ip`` the source, ``dst_*`` the destination).
_GENERIC_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("source.ip", "ip", "validate_ip"), ("source.network", "ip", "validate_network"),
    ("source.ip", "src_ip", "validate_ip"), ("source.network", "src_ip", "validate_network"),
    ("source.port", "port", "convert_int"), ("source.port", "src_port", "convert_int"),
    ("source.asn", "asn", "invalidate_zero"), ("source.asn", "src_asn", "invalidate_zero"),
    ("source.as_name", "as_name", "validate_to_none"),
    ("source.geolocation.cc", "geo", None), ("source.geolocation.cc", "src_geo", None),
    ("source.geolocation.region", "region", None), ("source.geolocation.region", "src_region", None),
    ("source.geolocation.city", "city", None), ("source.geolocation.city", "src_city", None),
    ("source.reverse_dns", "hostname", None), ("source.fqdn", "src_hostname", "validate_fqdn"),
    ("source.url", "url", None), ("source.url", "src_url", None),
    ("destination.ip", "dst_ip", "validate_ip"), ("destination.port", "dst_port", "convert_int"),
    ("destination.asn", "dst_asn", "invalidate_zero"), ("destination.geolocation.cc", "dst_geo", None),
    ("destination.fqdn", "dst_hostname", "validate_fqdn"), ("destination.url", "dst_url", None),
    ("protocol.transport", "protocol", None), ("protocol.application", "application", None),
    ("malware.name", "infection", "validate_to_none"), ("malware.name", "family", "validate_to_none"),
    ("severity", "severity", "validate_to_none"),
    ("extra.source.naics", "naics", "invalidate_zero"), ("extra.source.sector", "sector", "validate_to_none"),
    ("classification.taxonomy", "taxonomy", None), ("classification.type", "classification_type", None),
    ("classification.identifier", "classification_identifier", None),
    ("event_description.text", "description", None), ("feed.provider", "feed_provider", None),
)

#: Herald classification names that IntelMQ 3.5.0 spells differently (RSIT 'blacklist').
_CLASSIFICATION_ALIASES = {"blocklist": "blacklist"}


def _fallback_mapping(rtype: ReportType) -> dict[str, Any]:
    """The mapping of a type without an intelmq.json entry (Herald's own types).

    ``timestamp`` is ``time.source``; the columns of :data:`_GENERIC_COLUMNS` fill their IntelMQ
    fields; every other column goes to ``extra``.  The type's taxonomy, classification type and
    name are ``default_fields``: used when the row has no value of its own (unlike
    ``constant_fields``, which always win, as in IntelMQ).
    """
    cols = set(rtype.columns)
    required = [["time.source", "timestamp", "add_UTC_to_timestamp"]] if "timestamp" in cols else []
    optional = [[key, col] + ([func] if func else []) for key, col, func in _GENERIC_COLUMNS if col in cols]
    return {
        "feed_name": rtype.title,
        "url": rtype.url,
        "required_fields": required,
        "optional_fields": optional,
        "default_fields": {
            "classification.identifier": rtype.name,
            "classification.taxonomy": _CLASSIFICATION_ALIASES.get(rtype.taxonomy, rtype.taxonomy),
            "classification.type": _CLASSIFICATION_ALIASES.get(rtype.classification_type,
                                                               rtype.classification_type),
        },
    }


def _fixed_fields(fields: dict[str, Any] | None) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Sanitized constant (or default) fields, and those no IntelMQ field accepts (for extra)."""
    good, bad = [], {}
    for key, value in (fields or {}).items():
        try:
            good.append((key, sanitize_value(key, value)))
        except (InvalidValue, InvalidKey):
            bad[key.replace(".", "_")] = value
    return good, bad


def _raw_column(col: pa.ChunkedArray | pa.Array) -> list[str]:
    """The text IntelMQ would have read for each value: null -> "", integers in decimal,
    timestamps as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (UTC), strings unchanged."""
    typ = col.type
    values = col.to_pylist()
    if pa.types.is_timestamp(typ):
        out = []
        for v in values:
            if v is None:
                out.append("")
            else:
                v = v.astimezone(_UTC) if v.tzinfo else v
                out.append(v.strftime("%Y-%m-%d %H:%M:%S") + (f".{v.microsecond:06d}" if v.microsecond else ""))
        return out
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return ["" if v is None else v for v in values]
    return ["" if v is None else str(v) for v in values]


def _items(mapping: dict[str, Any], section: str) -> list[tuple[Any, str, Callable | None, bool]]:
    out = []
    for item in mapping.get(section) or []:
        key, col = item[0], item[1]
        func = FUNCTIONS.get(item[2]) if len(item) > 2 and item[2] else None
        out.append((key, col, func, len(item) > 3 and bool(item[3])))
    return out


def _convert(func: Callable | None, with_row: bool, raw: str, row: dict[str, str]) -> Any:
    if func is None:
        return raw
    return func(raw, row) if with_row else func(raw)


def to_intelmq(table: pa.Table, rtype: ReportType) -> Iterator[dict[str, Any]]:
    """Yield one IntelMQ event dict per row of ``table``, in row order.

    Args:
        table: a normalized table of ``rtype`` (see :func:`herald.sources.shadowserver_csv.read_file`):
            the type's columns typed (``timestamp[us, UTC]``, ``int64``, ``string``; empty values
            null), then any further columns of the file as strings.
        rtype: the report type.  Its ``intelmq`` entry (intelmq.json) gives the mapping; a type
            without one gets a generic mapping (time, address, port, ASN, country, classification;
            everything else in ``extra``).

    Returns:
        an iterator of flat dicts keyed by IntelMQ harmonization field names.  ``feed.name`` is
        the mapping's ``feed_name`` (else the type's title), ``feed.documentation`` its ``url``.
        Values are ``str``, ``int``, ``float`` or ``bool`` as IntelMQ 3.5.0 would store them;
        ``raw`` and ``time.observation`` are not set.

    Raises:
        nothing for bad data: a value that no IntelMQ field accepts goes to ``extra`` under its
        column name (raw text), as IntelMQ does for optional fields.
    """
    mapping = rtype.intelmq or _fallback_mapping(rtype)
    required = _items(mapping, "required_fields")
    optional = _items(mapping, "optional_fields")
    constants, bad_constants = _fixed_fields(mapping.get("constant_fields"))
    defaults, bad_defaults = _fixed_fields(mapping.get("default_fields"))
    fixed_extra = {**bad_constants, **bad_defaults}
    feed_name = mapping.get("feed_name") or rtype.title
    doc = mapping.get("url") or rtype.url

    names = table.column_names
    columns = [_raw_column(table.column(i)) for i in range(table.num_columns)]
    for values in zip(*columns):
        row = dict(zip(names, values))
        yield _event(row, names, required, optional, constants, defaults, fixed_extra, feed_name, doc)


def _event(row: dict[str, str], names: list[str], required, optional, constants, defaults,
           fixed_extra: dict[str, Any], feed_name: str, doc: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {}
    if feed_name:
        event["feed.name"] = feed_name
    if doc:
        event["feed.documentation"] = doc
    extra: dict[str, Any] = dict(fixed_extra)
    # Columns whose value has not been used yet (a count: a column used by two fields is
    # "re-added" for the second, as IntelMQ does); what is left at the end goes to extra.
    pending = dict.fromkeys(names, 1)

    def put(key: str, value: Any) -> None:
        if key in event:
            raise InvalidValue(f"{key} is set twice")
        clean = sanitize_value(key, value)
        if clean is not None:
            event[key] = clean

    for key, col, func, with_row in required:
        if not pending.get(col):
            if col not in row:
                continue  # Herald: a required column missing from the file is optional.
            pending[col] = 1
        try:
            value = _convert(func, with_row, row[col], row)
        except (ValueError, TypeError, ArithmeticError):
            continue  # IntelMQ rejects the row; Herald keeps the raw text (extra).
        if value is None:
            continue  # IntelMQ keeps the column for extra.
        try:
            put(key, value)
        except InvalidValue:
            continue  # IntelMQ rejects the row; Herald keeps the raw text (extra).
        except InvalidKey:
            pass  # IntelMQ drops the value (warning "Key not found").
        pending[col] -= 1

    for key, col, func, with_row in optional:
        if not pending.get(col):
            if col not in row:
                continue
            pending[col] = 1
        try:
            value = _convert(func, with_row, row[col], row)
        except (ValueError, TypeError, ArithmeticError):
            continue  # IntelMQ rejects the row; Herald keeps the raw text (extra).
        if value is None:
            pending[col] -= 1
            continue
        if key == "extra.":
            extra[col] = value
        elif isinstance(key, str) and key.startswith("extra."):
            extra[key[len("extra."):]] = value
        elif key is False or not key:
            pass  # explicitly ignored column
        else:
            try:
                put(key, value)
            except InvalidValue:
                continue  # the raw column goes to extra
            except InvalidKey:
                extra[key] = value
        pending[col] -= 1

    for key, value in constants:
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    for key, value in defaults:
        if value is not None and key not in event:
            event[key] = value

    for col, count in pending.items():
        if count > 0 and row[col] != "":
            extra[col] = row[col]
    for key, value in extra.items():
        event[f"extra.{key}"] = value
    return event

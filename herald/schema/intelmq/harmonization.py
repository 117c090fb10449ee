"""IntelMQ 3.5.0 harmonization: the event fields, their types, and the sanitation of a value.

:data:`HARMONIZATION` lists every event field of IntelMQ 3.5.0's ``harmonization.conf`` with its
type and limits; :func:`sanitize_value` gives the value IntelMQ would store in a field (its type's
sanitation and validation as in IntelMQ 3.5.0's ``lib/harmonization.py``), and :func:`is_valid_as`
says whether a value can be made valid for a type (the conversion functions ``validate_ip``,
``validate_network``, ``validate_fqdn`` ask it).  An independent implementation; it does not use
IntelMQ.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import urllib.parse
from functools import lru_cache
from typing import Any, Callable

from herald.schema.intelmq.datetimes import parse_datetime

__all__ = ["HARMONIZATION", "InvalidValue", "InvalidKey", "sanitize_value", "is_valid_as"]

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


def is_valid_as(typ: str, value: Any) -> bool:
    """Whether ``value``, sanitized as harmonization type ``typ`` (``"IPAddress"``, ``"FQDN"``,
    ``"IPNetwork"``, ... the types of :data:`HARMONIZATION`), is a valid value of that type.

    Unlike :func:`sanitize_value`, no field limits (``length``, ``regex``) apply and nothing is
    raised for an invalid value.

    Raises:
        KeyError: ``typ`` is not a harmonization type.
    """
    sanitize, is_valid = _TYPES[typ]
    clean = sanitize(value)
    return clean is not None and is_valid(clean)

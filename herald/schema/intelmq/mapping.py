"""The generic IntelMQ mapping of a report type without an ``intelmq.json`` entry (Herald's own
types): which column fills which harmonization field, in the shape of an ``intelmq.json`` entry.

Used by the export (:func:`herald.schema.intelmq.to_intelmq`) and, reversed, by the IntelMQ JSON
source (:mod:`herald.sources.intelmq_json`), so that exported events read back into their type.
"""

from __future__ import annotations

from typing import Any

from herald.schema.registry import ReportType

__all__ = ["fallback_mapping"]

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
    ("severity", "severity", "validate_to_none"), ("status", "status", "validate_to_none"),
    ("extra.source.naics", "naics", "invalidate_zero"), ("extra.source.sector", "sector", "validate_to_none"),
    ("classification.taxonomy", "taxonomy", None), ("classification.type", "classification_type", None),
    ("classification.identifier", "classification_identifier", None),
    ("event_description.text", "description", None), ("feed.provider", "feed_provider", None),
)

#: Herald classification names that IntelMQ 3.5.0 spells differently (RSIT 'blacklist').
_CLASSIFICATION_ALIASES = {"blocklist": "blacklist"}


def fallback_mapping(rtype: ReportType) -> dict[str, Any]:
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

"""IntelMQ events (JSON lines, as IntelMQ's file output writes them) into a report type.

Source: any IntelMQ installation's output (``intelmq.bots.outputs.file``: one flat JSON object per
line, keys are harmonization field names such as ``source.ip``, ``time.source``,
``classification.type``, ``feed.name``, ``extra.<name>``; https://docs.intelmq.org/latest/dev/data-format/).
A JSON array of such objects is accepted as well.  Nested objects (``"extra": {...}`` in
hierarchical output) are flattened to dotted keys.

Report type of a file:

1. the ``report_type`` option, when given;
2. else, when every event has the same ``feed.name`` and it names a registered type (the type's
   ``feed_name`` in Shadowserver's ``intelmq.json``, its title, or its name), that type: events that
   Herald or IntelMQ's Shadowserver parser exported come back to their own type;
3. else ``herald_intelmq_event`` (the ``default_type`` option), a generic event type.

Columns of a typed report come from the *reverse* of the type's IntelMQ mapping (``intelmq.json``;
for Herald's own types the same generic mapping that :func:`herald.schema.intelmq.to_intelmq`
uses, so that exported events come back): column <- its harmonization field, else ``extra.<column>``.  ``timestamp`` <- ``time.source``,
else ``time.observation`` (UTC; any ISO 8601 offset converted).  The address column also accepts
``source.network`` (block lists).  Events whose address is missing or invalid are quarantined.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.schema.intelmq.mapping import fallback_mapping
from herald.schema.registry import Registry, ReportType, default_registry
from herald.sources import feed_files, feed_table, json_records, timestamps
from herald.sources.shadowserver_csv import ParsedFile, Quarantine

DEFAULT_TYPE = "herald_intelmq_event"

#: IntelMQ's DateTime fields (harmonization.conf), read as text.
TIME_FIELDS = ("time.source", "time.observation")

#: Column of ``herald_intelmq_event`` -> harmonization fields, first non-empty wins.
DEFAULT_MAPPING: dict[str, tuple[str, ...]] = {
    "timestamp": ("time.source", "time.observation"),
    "severity": ("severity", "extra.severity"),
    "src_ip": ("source.ip", "source.network"),
    "src_port": ("source.port",),
    "src_asn": ("source.asn",),
    "src_geo": ("source.geolocation.cc",),
    "src_region": ("source.geolocation.region",),
    "src_city": ("source.geolocation.city",),
    "src_hostname": ("source.reverse_dns", "source.fqdn"),
    "src_url": ("source.url",),
    "protocol": ("protocol.transport",),
    "application": ("protocol.application",),
    "dst_ip": ("destination.ip", "destination.network"),
    "dst_port": ("destination.port",),
    "dst_asn": ("destination.asn",),
    "dst_geo": ("destination.geolocation.cc",),
    "dst_hostname": ("destination.fqdn", "destination.reverse_dns"),
    "dst_url": ("destination.url",),
    "infection": ("malware.name",),
    "taxonomy": ("classification.taxonomy",),
    "classification_type": ("classification.type",),
    "classification_identifier": ("classification.identifier",),
    "feed_name": ("feed.name",),
    "feed_provider": ("feed.provider",),
    "description": ("event_description.text",),
    "tag": ("extra.tag",),
}


def reverse_mapping(rtype: ReportType) -> dict[str, tuple[str, ...]]:
    """Column -> harmonization fields (first non-empty wins) for ``rtype``.

    The inverse of the type's ``intelmq.json`` entry: ``["source.asn", "asn", ...]`` gives
    ``asn <- source.asn``; ``["extra.", "tag", ...]`` gives ``tag <- extra.tag``.  Every column also
    falls back to ``extra.<column>`` (where an exporter puts what it could not map).
    """
    if rtype.name == DEFAULT_TYPE:
        return DEFAULT_MAPPING
    out: dict[str, list[str]] = {c: [] for c in rtype.columns}
    mapping = rtype.intelmq or fallback_mapping(rtype)
    items = mapping.get("required_fields", []) + mapping.get("optional_fields", [])
    for item in items:
        key, col = item[0], item[1]
        if col not in out or not key:
            continue
        out[col].append(f"extra.{col}" if key == "extra." else key)
    if "timestamp" in out:
        out["timestamp"].append("time.observation")
    if rtype.address_column:
        out[rtype.address_column].append("source.network")
    for col, keys in out.items():
        if f"extra.{col}" not in keys:
            keys.append(f"extra.{col}")
    return {c: tuple(k) for c, k in out.items()}


@lru_cache(maxsize=8)
def _feed_index(registry: Registry) -> dict[str, str]:
    """Lower-cased type name, title and IntelMQ ``feed_name`` -> type name (first registered wins)."""
    idx: dict[str, str] = {}
    for t in registry:
        for key in (t.name, t.title, (t.intelmq or {}).get("feed_name")):
            if key:
                idx.setdefault(key.lower(), t.name)
    return idx


def resolve_type(feed_names: list[str | None], registry: Registry, default_type: str = DEFAULT_TYPE
                 ) -> str:
    """The report type for a file whose events carry ``feed_names`` (see the module docstring)."""
    distinct = {f for f in feed_names}
    if len(distinct) == 1:
        name = next(iter(distinct))
        if name:
            hit = _feed_index(registry).get(name.lower())
            if hit:
                return hit
    return default_type


def parse(path: str, *, registry: Registry | None = None, report_type: str | None = None,
          default_type: str = DEFAULT_TYPE, **_opts) -> ParsedFile:
    """Parse a file of IntelMQ events.

    Args:
        report_type: force this type (else chosen as the module docstring says).
        default_type: the type when ``feed.name`` does not decide.

    Returns:
        :class:`ParsedFile`; columns as :func:`reverse_mapping`.  Lines that are not JSON objects
        and events without a valid address or time are quarantined.

    Raises:
        InputError: unreadable or empty file; a JSON array that is invalid or truncated.
        UnknownReportType: ``report_type`` or ``default_type`` is not registered.
    """
    path = str(path)
    registry = registry or default_registry()
    data = feed_files.read_bytes(path)
    q = Quarantine(path)
    if data.lstrip()[:1] == b"[":
        recs = json_records.read_json_array(path, data.decode("utf-8-sig", errors="replace"))
        good = [isinstance(r, dict) for r in recs.records]
        for i, g in enumerate(good):
            if not g:
                q.add(int(recs.lines[i]), None, "expected a JSON object", None, recs.raws[i])
        flat = [json_records.flatten(r) for r, g in zip(recs.records, good) if g]
        keys: dict[str, None] = {}
        for r in flat:
            keys.update(dict.fromkeys(r))
        cols = {k: pa.array([json_records.to_text(r.get(k)) for r in flat], pa.string()) for k in keys}
        lines = recs.lines[np.asarray(good, dtype=bool)]
        raws = [r for r, g in zip(recs.raws, good) if g]
    else:
        cols, lines, raws = json_records.json_lines_columns(path, data, q, TIME_FIELDS)
    n = len(lines)
    if report_type is None:
        feed = cols.get("feed.name")
        names = feed.to_pylist() if feed is not None else [None] * n
        report_type = resolve_type(names or [None], registry, default_type)
    rtype = feed_table.get_type(report_type, registry, path)
    out: dict[str, pa.Array] = {}
    for col, keys in reverse_mapping(rtype).items():
        val = feed_table.const("", n)
        for key in reversed(keys):
            src = cols.get(key)
            if src is not None:
                src = pc.fill_null(src, "")
                val = pc.if_else(pc.greater(pc.utf8_length(src), 0), src, val)
        out[col] = val
    checks = []
    if "timestamp" in out:
        ts, bad = timestamps.iso_times(out["timestamp"])
        checks.append(feed_table.Check(bad, "time.source", "not an ISO 8601 time", out["timestamp"]))
        out["timestamp"] = pc.fill_null(ts, "")
    for col in ("asn", "src_asn", "dst_asn"):
        # IntelMQ writes ASNs as integers; "AS64496" text from other tools is accepted too.
        if col in out:
            out[col] = pc.replace_substring_regex(out[col], r"^(?i:AS)(\d+)$", r"\1")
    address = "network" if rtype.address_column else "ip"
    return feed_table.finish(path, rtype, out, lines, raws, q, address=address, checks=checks)

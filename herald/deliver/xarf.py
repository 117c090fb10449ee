"""X-ARF v4 reports: one per event, for recipients with ``xarf = true``.

X-ARF (https://xarf.org) is a JSON format for abuse reports that abuse desks process
automatically.  Herald maps each report type to an X-ARF category and type from its taxonomy
(``classification.taxonomy`` / ``classification.type`` of the Shadowserver schema):

==============================================  ====================================
Herald taxonomy / type                          X-ARF ``category`` / ``type``
==============================================  ====================================
``malicious-code`` / ``infected-system``,       ``infrastructure`` / ``botnet``
sinkhole report types
``malicious-code`` / ``malware-distribution``   ``content`` / ``malware`` (needs a URL)
``intrusion-attempts`` / ``brute-force``        ``connection`` / ``login_attack``
``information-gathering`` / ``scanner``         ``connection`` / ``port_scan``
``availability`` / ``ddos``                     ``connection`` / ``ddos``
``intrusions`` / ``system-compromise``          ``infrastructure`` / ``compromised_server``
``other`` / ``blocklist``                       ``reputation`` / ``blocklist``
anything else (accessible / vulnerable          ``vulnerability`` / ``open_service``
services)
==============================================  ====================================

Every document is validated against the X-ARF v4 JSON schemas shipped with the ``xarf`` package;
an invalid document raises :class:`XarfError` (a mapping bug must not go out).  Documents are
deterministic: ``report_id`` is a UUID (version-4 layout) derived from the recipient, the report
type and the event's values, ``timestamp`` is the event time.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from typing import Any, Iterable

from herald.errors import HeraldError
from herald.schema.registry import ReportType

_TAG_RE = re.compile(r"[^a-z0-9_+-]+")


class XarfError(HeraldError):
    """An X-ARF document failed validation."""


def xarf_kind(rtype: ReportType) -> tuple[str, str]:
    """``(category, type)`` of X-ARF for a Herald report type (see the module table)."""
    tax, cls = rtype.taxonomy, rtype.classification_type
    if "sinkhole" in rtype.name or (tax, cls) == ("malicious-code", "infected-system"):
        return "infrastructure", "botnet"
    if cls == "malware-distribution":
        return "content", "malware"
    if cls == "brute-force":
        return "connection", "login_attack"
    if cls == "scanner":
        return "connection", "port_scan"
    if cls == "ddos":
        return "connection", "ddos"
    if cls == "system-compromise":
        return "infrastructure", "compromised_server"
    if cls == "blocklist":
        return "reputation", "blocklist"
    return "vulnerability", "open_service"


def _first(row: dict[str, Any], *names: str) -> Any:
    for n in names:
        v = row.get(n)
        if v not in (None, ""):
            return v
    return None


def _int(v: Any) -> int | None:
    try:
        i = int(v)
    except (TypeError, ValueError):
        return None
    return i


def _port(v: Any) -> int | None:
    i = _int(v)
    return i if i is not None and 0 < i < 65536 else None


def _time(v: Any) -> str | None:
    if v in (None, ""):
        return None
    s = str(v).strip().replace(" ", "T")
    if s.endswith("+00:00"):
        s = s[:-6]
    return s if s.endswith("Z") else s + "Z"


def _tag(namespace: str, value: Any) -> str | None:
    v = _TAG_RE.sub("-", str(value).lower()).strip("-_+")
    return f"{namespace}:{v}" if v else None


def _protocol(row: dict[str, Any], allowed: tuple[str, ...]) -> str:
    p = str(_first(row, "protocol", "transport") or "tcp").lower()
    return p if p in allowed else "tcp"


def event_report(rtype: ReportType, row: dict[str, Any], *, recipient_slug: str, reporter_org: str,
                 contact: str, day: str) -> dict[str, Any] | None:
    """The X-ARF v4 document of one event (a report row, values as text or numbers), or ``None`` when
    the event has no source identifier (no IP address, host name or URL)."""
    category, xtype = xarf_kind(rtype)
    source = _first(row, "src_ip", "ip", "hostname", "src_hostname", "http_host", "url")
    if source is None:
        return None
    domain = contact.rpartition("@")[2] or "localhost"
    contact_info = {"org": reporter_org, "contact": contact, "domain": domain}
    seen = _time(_first(row, "timestamp")) or f"{day}T00:00:00Z"
    canonical = json.dumps([recipient_slug, rtype.name, row], sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).digest()
    doc: dict[str, Any] = {
        "xarf_version": "4.2.0",
        "report_id": str(uuid.UUID(bytes=digest[:16], version=4)),
        "timestamp": seen,
        "reporter": contact_info,
        "sender": contact_info,
        "source_identifier": str(source),
        "category": category,
        "type": xtype,
        "description": f"{rtype.title.replace('-', ' ')} event ({rtype.name}) of {day}"[:1000],
    }
    sport = _port(_first(row, "src_port", "port"))
    if sport:
        doc["source_port"] = sport
    family = _first(row, "infection", "family", "malware_family")
    tags = [t for t in (_tag("herald", rtype.name), _tag("malware", family) if family else None,
                        _tag("tag", row.get("tag")) if row.get("tag") else None) if t]
    doc["tags"] = tags[:20]
    dst_ip = _first(row, "dst_ip")
    dst_port = _port(_first(row, "dst_port"))
    if xtype == "botnet":
        doc["evidence_source"] = "threat_intelligence"
        doc["compromise_evidence"] = (f"connection to a sinkhole or detection of an infection at {seen}"
                                      + (f" ({family})" if family else ""))
        if family:
            doc["malware_family"] = str(family)
        if dst_ip:
            doc["c2_server"] = str(dst_ip)
    elif xtype in ("login_attack", "port_scan", "ddos"):
        doc["evidence_source"] = "honeypot"
        doc["protocol"] = _protocol(row, ("tcp", "udp", "icmp", "sctp"))
        doc["first_seen"] = seen
        if dst_ip:
            doc["destination_ip"] = str(dst_ip)
        if dst_port:
            doc["destination_port"] = dst_port
    elif xtype == "malware":
        url = _first(row, "url", "http_url")
        if not url:
            return None
        doc["url"] = str(url)
        if family:
            doc["malware_family"] = str(family)
    elif xtype == "compromised_server":
        doc["evidence_source"] = "automated_scan"
        doc["compromise_method"] = str(_first(row, "tag", "detected_backdoor") or "unknown")
    elif xtype == "blocklist":
        doc["evidence_source"] = "threat_intelligence"
        doc["threat_type"] = str(_first(row, "reason", "tag", "source") or "unknown")
    else:
        doc["evidence_source"] = "automated_scan"
        doc["service"] = str(_first(row, "tag", "protocol") or rtype.name)
    return doc


def validate(doc: dict[str, Any]) -> None:
    """Validate one X-ARF v4 document with the ``xarf`` package's schemas.

    Raises:
        XarfError: the document does not validate (the message lists the errors).
    """
    import xarf

    result = xarf.parse(doc)
    if result.errors or result.report is None:
        errs = "; ".join(f"{e.field}: {e.message}" for e in result.errors) or "not a report"
        raise XarfError(f"invalid X-ARF report {doc.get('report_id')}: {errs}")


def reports_for_csv(rtype: ReportType, csv_bytes: bytes, *, recipient_slug: str, reporter_org: str,
                    contact: str, day: str) -> list[dict[str, Any]]:
    """One validated X-ARF document per event of a report CSV (events without a source
    identifier are skipped).

    Raises:
        XarfError: a document does not validate.
    """
    if not csv_bytes.strip():
        return []
    table = _read_as_strings(csv_bytes)
    # String cells were escaped against spreadsheet formulas (docs/reports.md): the exact values.
    import pyarrow as pa

    from herald.reports.cells import unescape_formulas
    strings = {c for c, t in rtype.column_types.items() if pa.types.is_string(t)}
    table = pa.table({c: unescape_formulas(table.column(c)) if c in strings else table.column(c)
                      for c in table.column_names})
    out = []
    for row in table.to_pylist():
        doc = event_report(rtype, row, recipient_slug=recipient_slug, reporter_org=reporter_org,
                           contact=contact, day=day)
        if doc is not None:
            validate(doc)
            out.append(doc)
    return out


def _read_as_strings(csv_bytes: bytes):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = pacsv.read_csv(io.BytesIO(csv_bytes.split(b"\n", 1)[0] + b"\n")).column_names
    return pacsv.read_csv(io.BytesIO(csv_bytes), convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in header}, strings_can_be_null=False))


def to_jsonl(docs: Iterable[dict[str, Any]]) -> bytes:
    """JSON Lines: one X-ARF document per line, keys sorted (deterministic)."""
    return b"".join(json.dumps(d, sort_keys=True, ensure_ascii=False).encode() + b"\n" for d in docs)

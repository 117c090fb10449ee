"""Report-type registry (Shadowserver schema) and the IntelMQ field mapping."""

from herald.schema.registry import (
    SEVERITY_LEVELS, ReportType, Registry, default_registry, severity_rank,
)

__all__ = ["SEVERITY_LEVELS", "ReportType", "Registry", "default_registry", "severity_rank"]

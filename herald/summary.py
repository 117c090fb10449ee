"""The run summary (:class:`RunSummary`): what a daily run did, built from what its stages returned.

``rows_in = rows_reported + rows_unrouted + rows_quarantined + rows_duplicate + rows_failed``
(:attr:`RunSummary.reconciles`), where ``rows_failed`` counts the data rows of inputs that could
not be read at all.  ``rows_reported`` / ``rows_unrouted``: distinct events that reached at least one
recipient / none, after inhibitions and re-notification windows.  ``rows_inhibited`` and
``rows_renotify_suppressed`` are informational: (event, recipient) *pairs* removed by inhibitions
and by re-notification windows (:mod:`herald.reports.policy`); an event all of whose pairs were
removed counts in ``rows_unrouted``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from herald.store.ingest import StoredInput

#: The summary's counts (as the ledger records them).
COUNTS = ("rows_in", "rows_stored", "rows_reported", "rows_unrouted", "rows_quarantined",
          "rows_duplicate", "rows_failed")


@dataclass
class RunSummary:
    """The result of a daily run; :meth:`to_dict` is the JSON summary."""

    day: str
    rows_in: int = 0
    rows_stored: int = 0
    rows_reported: int = 0
    rows_unrouted: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_failed: int = 0
    rows_inhibited: int = 0
    rows_renotify_suppressed: int = 0
    reports: list[dict] = field(default_factory=list)
    inputs: list[StoredInput] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    skipped: bool = False
    previous: dict = field(default_factory=dict)
    new_inputs: list[str] = field(default_factory=list)
    run_id: int | None = None

    @property
    def reconciles(self) -> bool:
        """``rows_in == rows_reported + rows_unrouted + rows_quarantined + rows_duplicate +
        rows_failed``."""
        return self.rows_in == (self.rows_reported + self.rows_unrouted + self.rows_quarantined
                                + self.rows_duplicate + self.rows_failed)

    @property
    def ok(self) -> bool:
        """No input failed and the counts reconcile."""
        return not self.errors and self.reconciles

    def to_dict(self) -> dict:
        """JSON-ready summary (counts, reports ``[{recipient, email, type, rows, path, sha256, ...}]``,
        inputs, ``failed_inputs`` ``[{path, rows, error}]``, errors, stage timings in seconds)."""
        return {
            "day": self.day, "run_id": self.run_id, "status": "ok" if self.ok else "errors",
            **{k: getattr(self, k) for k in COUNTS},
            "rows_inhibited": self.rows_inhibited,
            "rows_renotify_suppressed": self.rows_renotify_suppressed,
            "failed_inputs": [{"path": i.path, "rows": i.rows_failed, "error": i.error}
                              for i in self.inputs if i.error],
            "reconciles": self.reconciles,
            "reports": self.reports,
            "inputs": [i.to_dict() for i in self.inputs],
            "errors": self.errors,
            "warnings": self.warnings,
            "stages_seconds": {k: round(v, 3) for k, v in self.stages.items()},
            "paths": self.paths,
        }


def summary_json(data: dict) -> bytes:
    """``data`` (a :meth:`RunSummary.to_dict`) as the UTF-8 bytes of a JSON document (RFC 8259):
    keys sorted at every level, one top-level key per line, and one element per line in the
    top-level lists (``reports``, ``inputs``...), so that a day of many reports stays readable
    line by line and two runs compare with ``diff``.  Deterministic: the same ``data`` gives the
    same bytes.

    Written with the standard library's C encoder, element by element: ``json.dumps(indent=2)``
    takes the pure-Python encoder, 0.54 s for the 9,760 reports of the 1M benchmark day, this
    0.06 s.
    """
    items = sorted(data.items())
    lines = ["{"]
    for i, (key, value) in enumerate(items):
        if isinstance(value, list) and value:
            text = "[\n" + ",\n".join("    " + json.dumps(v, sort_keys=True) for v in value) + "\n  ]"
        else:
            text = json.dumps(value, sort_keys=True)
        lines.append(f"  {json.dumps(key)}: {text}{',' if i < len(items) - 1 else ''}")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode()

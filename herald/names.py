"""Names made safe for files: the slug of a recipient or operation name.

A neutral module (no Herald imports), so the store, the reports and the constituency can all
use it; :mod:`herald.constituency.recipients` re-exports :func:`slugify`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["slugify"]


def slugify(name: str) -> str:
    """File-name-safe slug of a recipient name: lowercase ASCII letters, digits and ``_``.

    ``"CERT-Example (national)"`` gives ``cert_example_national``.  Hyphens are not kept because
    ``-`` separates the parts of a Shadowserver report file name (report-filename.md).
    """
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_.lower()).strip("_")
    return slug or "recipient"

"""Access logs without credentials: download ids (``/dl/<id>``) are redacted.

A download id is itself the credential of a report (anyone holding it can fetch the CSV until it
expires), so it must not be written to the access log.  :class:`RedactDownloadIds` is a
:class:`logging.Filter` for uvicorn's ``uvicorn.access`` logger, whose records carry the request
line in ``record.args`` (``client_addr, method, full_path, http_version, status_code``); it
replaces every ``/dl/<id>`` with ``/dl/<redacted>`` in the arguments and in the message.
:func:`uvicorn_log_config` is uvicorn's default logging configuration with the filter installed
on the access handler (``herald serve`` passes it to ``uvicorn.run``).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

#: ``/dl/`` followed by anything up to a space, ``?``, ``#`` or quote (the id, percent-encoded
#: or not).
_DL_RE = re.compile(r"/dl/[^\s?#\"']+")
REDACTED = "/dl/<redacted>"


def redact(text: str) -> str:
    """``text`` with each ``/dl/<id>`` replaced by ``/dl/<redacted>``."""
    return _DL_RE.sub(REDACTED, text)


class RedactDownloadIds(logging.Filter):
    """Redact download ids in a log record (never drops the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record.msg`` and string ``record.args`` in place; always ``True``."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's ``LOGGING_CONFIG`` (a :func:`logging.config.dictConfig` dict) with
    :class:`RedactDownloadIds` on the ``access`` handler and the ``uvicorn.access`` logger."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_download_ids"] = {"()": RedactDownloadIds}
    config["handlers"]["access"].setdefault("filters", []).append("redact_download_ids")
    config["loggers"]["uvicorn.access"].setdefault("filters", []).append("redact_download_ids")
    return config

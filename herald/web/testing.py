"""A complete, throw-away Herald web deployment for tests and demos.

:func:`build_deployment` runs the real daily pipeline on ``examples/`` (the example
configuration with its paths redirected into a scratch directory), imports the example recipients
into a metadata database and builds the web application with a fresh random server key.
:class:`ShadowserverClient` signs requests exactly like Shadowserver's published ``call-api.py``
(``json.dumps`` of the request, HMAC-SHA256 with the secret, ``HMAC2`` header) so tests exercise
the API the way real clients do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

from herald.config import Settings, load_settings
from herald.constituency import repository
from herald.crypto import ServerKey
from herald.store.db import Database, open_db
from herald.web.app import WebConfig, create_app

#: The repository's examples directory and its day.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_DAY = "2026-11-30"


def example_settings(root: Path, db_url: str) -> Settings:
    """``examples/herald.toml`` with data, reports and outbox under ``root`` and ``db_url``."""
    settings = load_settings(EXAMPLES / "herald.toml")
    settings.paths.data = root / "data"
    settings.paths.reports = root / "reports"
    settings.paths.outbox = root / "outbox"
    settings.database_url = db_url
    return settings


@dataclass
class Deployment:
    """What :func:`build_deployment` made."""

    settings: Settings
    db: Database
    server_key: ServerKey
    app: Any
    summary: Any

    def run(self, day: str = EXAMPLE_DAY):
        """Run the pipeline (again: ``force``) for ``day``; it routes with the database's
        recipients and their verified filters."""
        from herald.pipeline import run_day

        self.summary = run_day(self.settings, day, progress=False, force=True)
        return self.summary


#: the fixed clock of test deployments: noon UTC on the example day, whatever today's date is
FIXED_NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def build_deployment(root: Path, db_url: str, config: WebConfig | None = None,
                     extra_recipients: list[dict] | None = None) -> Deployment:
    """Import the example recipients (plus ``extra_recipients`` tables) into ``db_url``, run the
    example day and build the app.

    Raises:
        whatever the pipeline or the database raise.
    """
    settings = example_settings(Path(root), db_url)
    if extra_recipients:
        settings.raw["recipients"] = settings.recipients_spec + extra_recipients
    db = open_db(db_url, upgrade=True)
    repository.import_recipients(db, settings.recipients_spec)
    server_key = ServerKey(os.urandom(32))
    dep = Deployment(settings, db, server_key, None, None)
    dep.run()
    dep.app = create_app(settings, db, server_key,
                         config=config or WebConfig(rate_per_key=0, rate_per_ip=0),
                         clock=lambda: FIXED_NOW)
    return dep


class ShadowserverClient:
    """A client that signs like Shadowserver's example ``call-api.py``; only the base URL differs.

    Args:
        uri: base URL ending in ``/api2/``.
        key / secret: the API key and secret.
    """

    def __init__(self, uri: str, key: str, secret: str, timeout: float = 30) -> None:
        self.uri, self.key, self.secret, self.timeout = uri, key, secret, timeout

    def call(self, method: str, request: dict[str, Any]) -> bytes:
        """POST ``request`` (plus ``apikey``) to ``method``; the raw response bytes.

        Raises:
            urllib.error.HTTPError: a 4xx/5xx answer.
        """
        request = dict(request)
        request["apikey"] = self.key
        body = json.dumps(request).encode("latin-1")
        mac = hmac.new(self.secret.encode("latin-1"), body, hashlib.sha256).hexdigest()
        with urlopen(Request(self.uri + method, data=body, headers={"HMAC2": mac}),
                     timeout=self.timeout) as resp:
            return resp.read()


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

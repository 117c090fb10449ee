"""A local S3 service for tests: moto's threaded server on a free localhost port.

Fixtures (a pytest plugin of tests/conftest.py): ``s3_server`` starts the server once per session;
``s3`` sets fake credentials in the environment and creates a fresh bucket per test.
:func:`example_settings` configures the example day with an event store of the test's choice.
"""

from __future__ import annotations

import socket
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from herald.config import Settings, settings_from_dict


@dataclass(frozen=True)
class S3Service:
    """A running test S3 service.

    Attributes:
        endpoint: ``127.0.0.1:<port>`` (``[s3] endpoint_override``).
        bucket: a bucket created for the test.
    """

    endpoint: str
    bucket: str

    def s3_section(self) -> dict:
        """The ``[s3]`` table that reaches this service."""
        return {"endpoint_override": self.endpoint, "scheme": "http", "region": "us-east-1"}

    def filesystem(self):
        """A :class:`pyarrow.fs.S3FileSystem` of the service (fake credentials, may create
        buckets)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key="testing", secret_key="testing-secret",
                                 endpoint_override=self.endpoint, scheme="http",
                                 region="us-east-1", allow_bucket_creation=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Fake credentials the fixture exports (moto accepts any).
FAKE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free 127.0.0.1 port for the session; yields ``127.0.0.1:<port>``.
    Skips when moto is not installed (``pip install -e '.[test]'`` installs it)."""
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Service:
    """A fresh bucket on the session's S3 server, with fake credentials in the environment
    (:data:`FAKE_ENV`, removed again after the test)."""
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    svc = S3Service(s3_server, f"herald-{uuid.uuid4().hex[:12]}")
    svc.filesystem().create_dir(svc.bucket)
    return svc


def example_settings(repo_root: Path, root: Path, *, events: str | None = None,
                     s3: dict | None = None, workers: int = 1) -> Settings:
    """The example configuration (``examples/herald.toml`` and its inbox) with data, reports and
    outbox under ``root``, ``[paths] events`` set to ``events`` when given (a folder or an
    ``s3://`` URI), the ``[s3]`` table ``s3`` and ``[run] workers``."""
    raw = tomllib.loads((repo_root / "examples/herald.toml").read_text())
    raw["paths"] = {"inbox": str(repo_root / "examples/inbox"), "data": str(root / "data"),
                    "reports": str(root / "reports"), "outbox": str(root / "outbox")}
    if events is not None:
        raw["paths"]["events"] = events
    if s3 is not None:
        raw["s3"] = s3
    raw["run"] = {"workers": workers}
    return settings_from_dict(raw, base=repo_root / "examples")

"""The public dashboard reads the configured event store (``[paths] events``): another local
folder, or S3 (a moto server, tests/s3_support.py), with the figures of the default store."""

from __future__ import annotations

import json
import re
import socket
from datetime import date, datetime, timezone

from fastapi.testclient import TestClient

from herald.pipeline import run_day
from herald.web import dashboard
from herald.web.app import create_app
from tests.s3_support import example_settings

DAY = "2026-11-30"
TODAY = date(2026, 12, 1)


def _page(settings) -> tuple[dict, str]:
    dashboard.clear_cache()
    client = TestClient(create_app(settings, clock=lambda: datetime(2026, 12, 1, 9,
                                                                    tzinfo=timezone.utc)))
    page = client.get("/stats")
    stats = client.get("/stats.json")
    assert page.status_code == stats.status_code == 200
    return stats.json(), page.text


def test_the_dashboard_of_an_s3_store_and_of_another_folder_equals_the_default(
        repo_root, tmp_path, s3, monkeypatch):
    monkeypatch.setenv("HERALD_SECRET_KEY", "00" * 32)
    default = example_settings(repo_root, tmp_path / "default")
    assert run_day(default, DAY).ok
    expected = dashboard.compute(default.paths.data, TODAY)
    assert expected["days"] and expected["countries"] and expected["totals"]["victims"] > 0

    folder = example_settings(repo_root, tmp_path / "folder", events=str(tmp_path / "elsewhere"))
    remote = example_settings(repo_root, tmp_path / "s3", events=f"s3://{s3.bucket}/events",
                       s3=s3.s3_section())
    for settings in (folder, remote):
        assert run_day(settings, DAY).ok
        assert not (settings.paths.data / "events").exists()  # nothing in <data>/events
        assert dashboard.compute(settings.events, TODAY) == expected
        stats, html = _page(settings)
        assert stats == expected
        assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", html + json.dumps(stats))


def test_an_unreachable_s3_store_gives_a_bare_500(repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HERALD_SECRET_KEY", "00" * 32)
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLESECRET1",
                       "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = example_settings(repo_root, tmp_path, events="s3://herald-hidden-bucket/events",
                         s3={"endpoint_override": f"127.0.0.1:{port}", "scheme": "http",
                             "region": "us-east-1"})
    dashboard.clear_cache()
    client = TestClient(create_app(settings, clock=lambda: datetime(2026, 12, 1, 9,
                                                                    tzinfo=timezone.utc)),
                        raise_server_exceptions=False)
    for path in ("/stats", "/stats.json"):
        r = client.get(path)
        assert r.status_code == 500 and r.json() == {"error": "internal error"}
        for secret in ("herald-hidden-bucket", str(port), "AKIDEXAMPLESECRET1", "s3cr3t", "AWS"):
            assert secret not in r.text

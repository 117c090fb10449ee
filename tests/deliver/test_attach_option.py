"""``[mail] attach = false`` (and per recipient ``attach``): reports are named in their messages,
not attached, so the outbox holds no second, base64 copy of every report."""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from herald.config import settings_from_dict
from herald.constituency.recipients import Recipient
from herald.deliver.outbox import enqueue_reports, list_outbox
from herald.deliver.settings import delivery_settings
from herald.errors import ConfigError
from herald.pipeline import run_day
from herald.store.db import open_db
from tests.deliver_support import DAY, make_report, make_settings

PARSER = BytesParser(policy=policy.default)


def _example(repo_root: Path, root: Path, mail: dict | None, attach: dict[str, bool]):
    raw = tomllib.loads((repo_root / "examples" / "herald.toml").read_text())
    shutil.copytree(repo_root / "examples" / "inbox", root / "inbox")
    raw["paths"] = {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"}
    raw["database"] = {"url": f"sqlite:///{root / 'data' / 'herald.db'}"}
    if mail is not None:
        raw["mail"] = mail
    for spec in raw["recipients"]:
        if spec["name"] in attach:
            spec["attach"] = attach[spec["name"]]
    return settings_from_dict(raw, base=root)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_attach_false_names_each_report_and_writes_the_same_reports(repo_root, tmp_path):
    default = run_day(_example(repo_root, tmp_path / "a", None, {}), DAY)
    named = run_day(_example(repo_root, tmp_path / "b", {"attach": False}, {"CERT.at": True}), DAY)
    assert default.ok and named.ok and len(named.reports) == len(default.reports) == 10
    # The reports themselves, their names and the counts do not change.
    assert _tree(tmp_path / "a" / "reports") == _tree(tmp_path / "b" / "reports")
    assert [(r["path"].replace(str(tmp_path / "a"), ""), r["sha256"], r["rows"])
            for r in default.reports] == \
        [(r["path"].replace(str(tmp_path / "b"), ""), r["sha256"], r["rows"]) for r in named.reports]
    sizes = {"a": 0, "b": 0}
    for rep in named.reports:
        msg = PARSER.parsebytes(Path(rep["message"]).read_bytes())
        data = Path(rep["path"]).read_bytes()
        sizes["b"] += Path(rep["message"]).stat().st_size
        flat = " ".join(msg.get_body(("plain",)).get_content().split())
        if rep["recipient"] == "CERT.at":  # attach = true overrides [mail] attach = false
            atts = list(msg.iter_attachments())
            assert [a.get_payload(decode=True) for a in atts] == [data]
            assert "attached is" in flat
            continue
        assert msg.get_content_type() == "text/plain"
        assert list(msg.iter_attachments()) == []
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert (" not attached: your reports are downloaded, not sent by e-mail.  Download it from "
                "the\n") in text
        assert f"Size:    {len(data)} bytes\n" in text  # no "(0.0 MiB)" for a small report
        assert "not attached: your reports are downloaded, not sent by e-mail" in flat
        assert "too large" not in flat and "attached is" not in flat
        assert f"File: {Path(rep['path']).name}" in flat
        assert f"Size: {len(data)} bytes" in flat
        assert f"SHA-256: {hashlib.sha256(data).hexdigest()}" in flat
        assert "Reports API" in flat and "portal" in flat
    sizes["a"] = sum(Path(r["message"]).stat().st_size for r in default.reports)
    assert sizes["b"] < sizes["a"]


def test_a_recipient_can_opt_out_under_the_default(repo_root, tmp_path):
    summary = run_day(_example(repo_root, tmp_path, None, {"CERT-Bund": False}), DAY)
    assert summary.ok
    attached = {r["recipient"]: bool(list(PARSER.parsebytes(Path(r["message"]).read_bytes())
                                          .iter_attachments()))
                for r in summary.reports}
    assert attached.pop("CERT-Bund") is False
    assert attached and all(attached.values())


def test_abuse_contacts_are_always_sent_the_report(tmp_path):
    settings, _ = make_settings(tmp_path, "sqlite://", mail={"attach": False})
    ds = delivery_settings(settings)
    abuse = Recipient(name="abuse@as64496.example", email="abuse@as64496.example",
                      kind="abuse_contact")
    owner = Recipient(name="Example ISP", email="abuse@isp.example", kind="network_owner")
    assert ds.attaches(abuse, 100) is True  # no account to download with
    assert ds.attaches(owner, 100) is False
    assert ds.attaches(abuse, ds.mail.attach_max + 1) is False  # the size cap still holds


@pytest.mark.parametrize("bad", ["no", 0, 1, None, [False]])
def test_attach_must_be_a_boolean(tmp_path, bad):
    settings, _ = make_settings(tmp_path, "sqlite://", mail={"attach": bad})
    with pytest.raises(ConfigError, match=r"mail\.attach must be true or false"):
        delivery_settings(settings)
    recips = [{"name": "X", "email": "x@x.example", "asns": [1], "attach": bad}]
    settings, _ = make_settings(tmp_path, "sqlite://", recipients=recips)
    with pytest.raises(ConfigError, match=r"recipient 'X': attach must be true or false"):
        delivery_settings(settings)


def test_a_digest_names_reports_that_are_not_sent(tmp_path):
    recips = [{"name": "CERT.at", "email": "reports@cert.at.example", "kind": "national_cert",
               "countries": ["AT"], "digest": True, "attach": False}]
    settings, _ = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", smtp={"port": 25},
                                recipients=recips)
    db = open_db(settings.database_url)
    reps = [make_report(tmp_path, "CERT.at", "scan_rdp", rows=2),
            make_report(tmp_path, "CERT.at", "scan_http", rows=3)]
    enqueue_reports(db, settings, reps, DAY)
    [entry] = list_outbox(db)
    msg = PARSER.parsebytes(Path(entry.path).read_bytes())
    assert list(msg.iter_attachments()) == []
    flat = " ".join(msg.get_body(("plain",)).get_content().split())
    for rep in reps:
        assert f"{Path(rep['path']).name}: not sent by e-mail" in flat and rep["sha256"] in flat
    assert "too large" not in flat and "attached" not in flat.replace("not attached", "")
    db.dispose()

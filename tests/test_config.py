"""Configuration checks: typos and risky values are errors that name the place, never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.config import load_settings, settings_from_dict
from herald.constituency.recipients import recipient_from_dict
from herald.errors import ConfigError


@pytest.mark.parametrize("raw, words", [
    ({"path": {"inbox": "x"}}, ["unknown section", "path"]),
    ({"report": {"tlpp": "RED"}}, ["[report]", "tlpp"]),
    ({"report": {"tlp": "PURPLE"}}, ["TLP 2.0"]),
    ({"paths": ["inbox"]}, ["[paths] must be a table"]),
])
def test_settings_errors(raw, words, tmp_path):
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(raw, base=tmp_path)
    for w in words:
        assert w in str(exc.value)


@pytest.mark.parametrize("spec, words", [
    ({"min_severty": "high"}, ["unknown key", "min_severty"]),
    ({"cidrs": "192.0.2.0/24"}, ["cidrs must be a list"]),
    ({"cidrs": ["75.74.1.1/16"]}, ["host bits", "75.74.0.0/16", "75.74.1.1/32"]),
    ({"cidrs": ["0.0.0.0/0"]}, ["whole address space"]),
    ({"cidrs": ["::/0"]}, ["whole address space"]),
    ({"asns": ["AS-bogus"]}, ["not an AS number"]),
    ({"countries": ["Austria"]}, ["ISO 3166-1"]),
    ({"domains": ["not a domain!"]}, ["not a DNS domain"]),
    ({"email": "nobody"}, ["not an email address"]),
    ({"kind": "isp"}, ["kind"]),
])
def test_recipient_errors_name_the_recipient_and_field(spec, words):
    base = {"name": "Example ISP", "email": "abuse@isp.example"}
    with pytest.raises(ConfigError) as exc:
        recipient_from_dict({**base, **spec}, "recipients[0]")
    assert "Example ISP" in str(exc.value) or "recipients[0]" in str(exc.value)
    for w in words:
        assert w in str(exc.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[paths]\ninbox = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[paths\ninbox = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(Path(tmp_path / "missing.toml"))


def test_example_configuration_is_valid(repo_root):
    settings = load_settings(repo_root / "examples/herald.toml")
    assert settings.tlp == "AMBER" and len(settings.recipients_spec) == 7

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


def _parse_section(name: str, settings) -> None:
    """Parse section ``name`` of ``settings`` with the parser of the module that owns it."""
    from herald.deliver.bounces import bounce_threshold
    from herald.deliver.settings import delivery_settings
    from herald.sensors.config import load_sinkhole_config
    from herald.store.purge import retention_from_settings
    from herald.web.state import WebConfig

    parsers = {"web": WebConfig.from_settings, "sinkhole": load_sinkhole_config,
               "smtp": delivery_settings, "pgp": delivery_settings, "mail": delivery_settings,
               "retention": retention_from_settings, "abuse_contacts": bounce_threshold}
    parsers[name](settings)


@pytest.mark.parametrize("section", ["paths", "report", "enrich", "database", "web", "sinkhole",
                                     "smtp", "pgp", "mail", "retention", "abuse_contacts"])
def test_unknown_key_in_any_section_is_an_error_naming_section_and_key(section, tmp_path):
    with pytest.raises(ConfigError) as exc:
        settings = settings_from_dict({section: {"bogus_key": 1}}, base=tmp_path)
        _parse_section(section, settings)
    assert f"[{section}]" in str(exc.value)
    assert "bogus_key" in str(exc.value)


@pytest.mark.parametrize("section", ["web", "sinkhole", "smtp", "pgp", "mail", "retention",
                                     "abuse_contacts"])
def test_known_keys_of_module_sections_still_parse(section, tmp_path):
    known = {"web": {"rate_per_key": 10}, "sinkhole": {"ttl": 60}, "smtp": {"host": "localhost"},
             "pgp": {}, "mail": {"digest": True}, "retention": {"events_days": 7},
             "abuse_contacts": {"bounce_threshold": 3}}
    _parse_section(section, settings_from_dict({section: known[section]}, base=tmp_path))


def test_typed_accessors_of_report_and_smtp(tmp_path):
    s = settings_from_dict({"report": {"formats": ["csv", "intelmq"]}}, base=tmp_path)
    assert s.report.formats == ["csv", "intelmq"] and s.report.tlp == "AMBER"
    assert not s.smtp_configured
    assert settings_from_dict({"smtp": {"host": "mx"}}, base=tmp_path).smtp_configured
    with pytest.raises(ConfigError, match="report.formats"):
        settings_from_dict({"report": {"formats": "csv"}}, base=tmp_path)

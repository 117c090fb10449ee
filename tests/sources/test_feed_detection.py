"""Format detection over EVERY sample file: a right answer or a clear refusal (issue 16).

Files: ``tests/data/samples/feeds`` (Herald's samples), ``tests/data/feeds/<feed>/`` (IntelMQ's parser
test files, see their LICENSE.md) and ``tests/data/samples/shadowserver`` (all Shadowserver).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herald.errors import InputError
from herald.sources import blocklists
from herald.sources.detect import detect_format, parse_any

DATA = Path(__file__).resolve().parents[1] / "data"

#: file (relative to tests/data) -> the format, or ("refuse", formats it must say it resembles).
EXPECTED: dict[str, str | tuple[str, tuple[str, ...]]] = {
    "samples/feeds/abusech_feodotracker_ipblocklist.json": "abusech_feodo",
    "samples/feeds/abusech_feodotracker_ipblocklist_2024-04-04.csv": "abusech_feodo",
    "samples/feeds/bambenek_c2-ipmasterlist.txt": "bambenek",
    "samples/feeds/blocklistde_imap.txt": "blocklistde",
    "samples/feeds/cert_eu_example.csv": "cert_eu",
    "samples/feeds/cymru_certname_20190327.txt": "cymru",
    "samples/feeds/cymru_infected_20171031.txt": "cymru",
    "samples/feeds/dataplane_sshpwauth.txt": "dataplane",
    "samples/feeds/dshield_block.txt": "dshield",
    # Generic CSV: read only with a mapping (tests/data/feeds/*.toml is not beside the file).
    "samples/feeds/generic_invalid_sample_report.csv": ("refuse", ()),
    "samples/feeds/generic_sample_report.csv": ("refuse", ()),
    "samples/feeds/html_table_feodotracker.html": "abusech_feodo",
    "samples/feeds/microsoft_ctip.txt": "ctip",
    "samples/feeds/microsoft_ctip_azure.txt": "ctip",
    "samples/feeds/shodan_tests.json": "shodan",
    "samples/feeds/spamhaus_asndrop.txt": "spamhaus_asndrop",
    "samples/feeds/spamhaus_cert.txt": "spamhaus_cert",
    "samples/feeds/spamhaus_drop.txt": "spamhaus_drop",
    "samples/feeds/spamhaus_drop_v4.excerpt.json": "spamhaus_drop",
    "samples/feeds/zoneh_defacement_accepted.csv": "zoneh",
    # Legacy abuse.ch lists: a bare list of addresses or domains under an abuse.ch banner.
    "feeds/abusech/feododomains.txt": ("refuse", ("abusech_feodo",)),
    "feeds/abusech/feodoips.txt": "abusech_feodo",  # 2019 CSV with the header in a comment
    "feeds/abusech/feodotracker.json": "abusech_feodo",
    "feeds/abusech/zeusips.txt": ("refuse", ("abusech_feodo", "blocklistde")),
    "feeds/bambenek/c2-dommasterlist.txt": ("refuse", ("bambenek",)),
    "feeds/bambenek/c2-ipmasterlist.txt": "bambenek",
    "feeds/bambenek/dga-feed.txt": ("refuse", ("bambenek",)),
    "feeds/blocklistde/imap.txt": "blocklistde",
    "feeds/cert_eu/example.csv": "cert_eu",
    "feeds/cymru/certname_20190327.txt": "cymru",
    "feeds/cymru/infected_20171031.txt": "cymru",
    **{f"feeds/dataplane/{n}.txt": "dataplane" for n in (
        "dnsrd", "dnsrdany", "dnsversion", "proto41", "sipinvitation", "sipquery", "sipregistration",
        "smtpdata", "smtpgreet", "sshclient", "sshpwauth", "telnetlogin", "vncrfb")},
    "feeds/dshield/asdetailsascii.html": "dshield_asn",
    "feeds/dshield/block.txt": "dshield",
    # Supported since the merge of the new feeds (issue 16): the banner and the 'Site' header prove it.
    "feeds/dshield/suspiciousdomains_High.txt": "dshield_domains",
    "feeds/dshield_domains/suspiciousdomains_High.txt": "dshield_domains",
    "feeds/dshield_domains/suspiciousdomains_High_intelmq.txt": "dshield_domains",
    "feeds/html_table/feodotracker.html": "abusech_feodo",
    "feeds/microsoft/bingmurls.json": ("refuse", ()),
    "feeds/microsoft/ctip.txt": "ctip",
    "feeds/microsoft/ctip_azure.txt": "ctip",
    "feeds/shodan/tests.json": "shodan",
    "feeds/spamhaus/asndrop.txt": "spamhaus_asndrop",
    "feeds/spamhaus/cert.txt": "spamhaus_cert",
    "feeds/spamhaus/drop.txt": "spamhaus_drop",
    # Supported since the merge of the new feeds (issue 16): the header 'Address,Tags' proves it.
    "feeds/turris/greylist-latest.csv": "turris",
    "feeds/turris/turris_greylist-latest.csv": "turris",
    "feeds/turris/greylist-latest_2019.csv": "turris",
    "feeds/urlhaus/urlhaus_csv_recent.csv": "urlhaus",
    "feeds/urlhaus/urlhaus_tld_ch.txt": "urlhaus",
    "feeds/threatfox/threatfox_recent.csv": "threatfox",
    "feeds/sslbl/sslipblacklist.csv": "sslbl",
    "feeds/phishtank/phishtank_online-valid.csv": "phishtank",
    "feeds/phishtank/phishtank_online-valid.json": "phishtank",
    # A bare list of URLs proves no feed (OpenPhish's has no banner): refused, read with --format openphish.
    "feeds/openphish/openphish_feed.txt": ("refuse", ("openphish",)),
    "feeds/openphish/openphish_feed_herald.txt": ("refuse", ("openphish",)),
    "feeds/zoneh/defacement_accepted.csv": "zoneh",
    "feeds/zoneh/defacement_accepted_RECONSTRUCTED.csv": "zoneh",
    "feeds/zoneh/defacement_pending.csv": ("refuse", ()),  # no accept_date column
}


def _is_sample(p: Path) -> bool:
    skip = (".license", ".toml", ".jsonl", ".intelmq-error.txt")
    return p.is_file() and p.name != "LICENSE.md" and not p.name.endswith(skip)


def _all_files() -> list[str]:
    out = [p for d in ("samples/feeds", "feeds") for p in (DATA / d).rglob("*") if _is_sample(p)]
    return sorted(str(p.relative_to(DATA)) for p in out)


SHADOWSERVER = sorted(str(p.relative_to(DATA)) for p in (DATA / "samples" / "shadowserver").glob("*.csv"))


def test_table_covers_every_sample_file():
    assert set(_all_files()) == set(EXPECTED)
    assert len(SHADOWSERVER) >= 70


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detection_is_right_or_refuses_clearly(name):
    path = str(DATA / name)
    want = EXPECTED[name]
    if isinstance(want, str):
        assert detect_format(path) == want
        parsed = parse_any(path, observed_at="2024-01-01 00:00:00")
        assert parsed.rows_in == parsed.table.num_rows + len(parsed.quarantine)
        assert parsed.table.num_rows > 0
        return
    _, resembles = want
    with pytest.raises(InputError) as exc:
        detect_format(path)
    msg = str(exc.value)
    assert "unsupported or ambiguous feed" in msg and "pass --format" in msg, msg
    for fmt in resembles:
        assert f"resembles {fmt}" in msg or f"; {fmt} (" in msg, (fmt, msg)
    with pytest.raises(InputError, match="unsupported or ambiguous feed"):
        parse_any(path)


@pytest.mark.parametrize("name", SHADOWSERVER)
def test_shadowserver_samples(name):
    assert detect_format(str(DATA / name)) == "shadowserver"


def test_file_name_is_not_evidence(tmp_path):
    """A legacy abuse.ch IP list named like a blocklist.de list is still refused; so is a bare
    list of addresses under any banner."""
    path = tmp_path / "blocklistde_ssh.txt"
    path.write_bytes((DATA / "feeds/abusech/zeusips.txt").read_bytes())
    with pytest.raises(InputError, match="unsupported or ambiguous feed.*resembles"):
        detect_format(str(path))
    mystery = tmp_path / "dshield_block.txt"
    mystery.write_text("hello world\n")
    with pytest.raises(InputError, match="resembles no supported format"):
        detect_format(str(mystery))


def test_legacy_abusech_list_is_not_read_as_blocklistde_with_mtime(tmp_path):
    """The old behaviour: read as blocklist.de, time from the file's mtime, exit 0.  Now detection
    refuses it, and forcing --format blocklistde fails with the reason."""
    path = tmp_path / "feodo_ips.txt"
    path.write_text("##########\n# Feodo IP Blocklist\n# Generated on 2016-02-23 15:11:38 UTC\n"
                    "# For questions please refer to https://feodotracker.abuse.ch/blocklist/\n"
                    "##########\n192.0.2.1\n192.0.2.2\n")
    os.utime(path, (1700000000, 1700000000))
    with pytest.raises(InputError, match="resembles abusech_feodo.*blocklistde"):
        detect_format(str(path))
    with pytest.raises(InputError, match="not a blocklist.de list.*comment lines") as exc:
        parse_any(str(path), "blocklistde")
    assert exc.value.line == 1


def test_ambiguous_content_names_every_candidate(tmp_path):
    """Content proving two formats at once is refused, naming both."""
    path = tmp_path / "both.txt"
    path.write_text("# DataPlane.org\n#category|address|asn|timestamp|optional_information|asninfo\n"
                    "NA  |  NA  |  192.0.2.1  |  2016-12-01 04:26:48  |  sshpwauth\n")
    with pytest.raises(InputError, match="matches several formats: .*(cymru|dataplane).*(cymru|dataplane)"):
        detect_format(str(path))


def test_suspicious_domains_forced_as_block_list_is_refused():
    """DShield's suspicious-domains list used to be read as block.txt with every row quarantined
    for a misleading reason; forcing --format dshield now fails with what the file is not."""
    with pytest.raises(InputError, match="not DShield's block list"):
        parse_any(str(DATA / "feeds/dshield/suspiciousdomains_High.txt"), "dshield")


def test_blocklists_variant_needs_proof():
    assert blocklists.detect_variant(str(DATA / "feeds/dshield/asdetailsascii.html")) == "dshield_asn"
    assert blocklists.detect_variant(str(DATA / "feeds/abusech/zeusips.txt")) is None


def test_empty_file_is_refused_as_empty(tmp_path):
    path = tmp_path / "blocklistde_imap.txt"
    path.write_text("\n \n")
    with pytest.raises(InputError, match="file is empty"):
        detect_format(str(path))


def test_last_line_without_newline_counts(tmp_path):
    """The last line of a file without a final newline is data, not a cut line."""
    path = tmp_path / "list.txt"
    path.write_text("192.0.2.1\n192.0.2.2\nnot an address")
    with pytest.raises(InputError, match="resembles no supported format"):
        detect_format(str(path))


@pytest.mark.parametrize("name", ["feododomains.txt", "zeusips.txt"])
def test_legacy_abusech_lists_forced_as_feodo_say_what_they_are_not(name):
    """Forced --format abusech_feodo used to fail with "required column 'dst_ip' is missing"."""
    with pytest.raises(InputError, match="not Feodo Tracker's CSV block list.*legacy abuse.ch"):
        parse_any(str(DATA / "feeds" / "abusech" / name), "abusech_feodo")

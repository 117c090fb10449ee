"""What the content of each supported text feed looks like: the evidence format detection uses.

A *sniffer* looks at the first bytes of a file (a :class:`Head`) and returns :class:`Clue` objects:
``proven=True`` when the content proves the format (a header line only that feed writes, a comment
banner together with data lines of the feed's shape), ``proven=False`` when the file merely
resembles it (a banner naming the publisher over data of another shape, a bare list of addresses
under someone else's banner).  :func:`herald.sources.detect.detect_format` reads a file as a format
only when exactly one format is proven; resemblances go into its refusal message.

Each feed's sniffer is one function in :data:`TEXT_SNIFFERS`; a new feed adds one function there.
The rules are listed in ``docs/feeds.md`` (section "Detection").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable

from herald.sources import dshield_domains, phishtank, sslbl, threatfox, turris, urlhaus

#: How many data lines a sniffer looks at.
SAMPLE_LINES = 50

_CYMRU_RE = re.compile(r"^[A-Za-z_]+\|[0-9A-Fa-f:.]+\|\d*\|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\|")
_DROP_LINE = re.compile(r"^[0-9A-Fa-f:.]+/\d{1,3}\s*;\s*SBL\d+\s*$")
_ASNDROP_LINE = re.compile(r"^AS\d+\s*;\s*(?:[A-Za-z]{2})?\s*\|")
_DP_SPLIT = re.compile(r"\s{2,}\|\s{2,}")
_DOTTED_QUAD = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_URL_LINE = re.compile(r"^https?://\S+$", re.I)


@dataclass(frozen=True)
class Clue:
    """One piece of evidence: the content proves (``proven``) or resembles format ``fmt``;
    ``why`` says what was seen (for messages)."""

    fmt: str
    proven: bool
    why: str


@dataclass
class Head:
    """The sniffed prefix of a file, split once for all sniffers.

    Attributes:
        text: the decoded prefix (UTF-8, undecodable bytes replaced); truncated: whether the file
            goes on after it.
        lines: its lines; ``low``: the first 80 lines joined, lower case.
        comments: stripped lines starting with ``#`` (``#`` kept); ``semicolons``: lines with ``;``.
        data: stripped lines that are neither blank nor comments (``#`` or ``;``), at most
            :data:`SAMPLE_LINES`.
    """

    text: str
    truncated: bool = False
    lines: list[str] = field(init=False)
    low: str = field(init=False)
    comments: list[str] = field(init=False)
    semicolons: list[str] = field(init=False)
    data: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()
        # A truncated prefix may end inside a line: drop the cut line unless it is the only one.
        if self.truncated and len(self.lines) > 1 and not self.text.endswith(("\n", "\r")):
            self.lines = self.lines[:-1]
        self.low = "\n".join(self.lines[:80]).lower()
        stripped = [ln.strip() for ln in self.lines]
        self.comments = [s for s in stripped if s.startswith("#")]
        self.semicolons = [s for s in stripped if s.startswith(";")]
        self.data = [s for s in stripped if s and not s.startswith(("#", ";"))][:SAMPLE_LINES]


def is_ip(text: str) -> bool:
    """``text`` is an IPv4 or IPv6 address (Python's :mod:`ipaddress` rules)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _all(lines: list[str], test: Callable[[str], bool]) -> bool:
    return bool(lines) and all(test(s) for s in lines)


def _mostly(lines: list[str], test: Callable[[str], bool]) -> bool:
    """The first data line and at least half of the sampled ones pass ``test``: the shape is the
    feed's, and damaged lines further down are left to the parser's quarantine."""
    return bool(lines) and test(lines[0]) and 2 * sum(map(test, lines)) >= len(lines)


def html(h: Head) -> list[Clue]:
    """An HTML page: Feodo Tracker's browse table (``id="botnet_c2s"``) is proven ``abusech_feodo``;
    any other page is proven ``html`` (recognised, and rejected by the parser)."""
    if not h.low.lstrip().startswith(("<!doctype html", "<html")):
        return []
    if 'id="botnet_c2s"' in h.text:
        return [Clue("abusech_feodo", True, "HTML table 'botnet_c2s'")]
    return [Clue("html", True, "an HTML page")]


def feodo(h: Head) -> list[Clue]:
    """Feodo Tracker's CSV block list: the header ``first_seen_utc,dst_ip`` (a data line) or
    ``# Firstseen,DstIP`` (a comment, 2019-2021) proves it; an abuse.ch banner over other data
    (the legacy plain IP and domain lists, the ZeuS list) only resembles it.  The header
    ``# Firstseen,DstIP,DstPort`` with nothing after it is SSL Blacklist's (:func:`sslbl_list`)."""
    header = h.low.replace('"', "").replace(" ", "")
    sslbl_only = "#firstseen,dstip,dstport\n" in header + "\n" and "#firstseen,dstip,dstport," not in header
    if "first_seen_utc,dst_ip" in header or ("#firstseen,dstip" in header and not sslbl_only):
        return [Clue("abusech_feodo", True, "Feodo Tracker CSV header")]
    if "abuse.ch" in h.low or "feodo" in h.low:
        return [Clue("abusech_feodo", False, "an abuse.ch banner, but not Feodo Tracker's CSV header")]
    return []


def spamhaus(h: Head) -> list[Clue]:
    """Spamhaus: the CERT portal header comment ``; ip, asn, country, lastseen``; DROP lines
    ``<CIDR> ; SBL<n>``; ASN-DROP lines ``AS<n> ; <CC> | <name>`` (the first line and most sampled
    ones).  ``;`` comments naming Spamhaus over other data resemble DROP."""
    for s in h.semicolons:
        if s.lstrip("; ").lower().startswith("ip, asn, country, lastseen"):
            return [Clue("spamhaus_cert", True, "Spamhaus CERT header comment")]
    if _mostly(h.data, lambda s: bool(_DROP_LINE.match(s))):
        return [Clue("spamhaus_drop", True, "'<CIDR> ; SBL<id>' lines")]
    if _mostly(h.data, lambda s: bool(_ASNDROP_LINE.match(s))):
        return [Clue("spamhaus_asndrop", True, "'AS<n> ; <CC> | <name>' lines")]
    if h.semicolons and "spamhaus" in h.low:
        return [Clue("spamhaus_drop", False, "a Spamhaus banner over lines of another shape")]
    return []


def cymru(h: Head) -> list[Clue]:
    """Team Cymru CAP: the format comment of either layout, or ``category|ip|asn|timestamp|`` lines."""
    flat = h.low.replace(" ", "")
    if "#category|address|asn|timestamp" in flat or "format:report|ip|asn" in flat:
        return [Clue("cymru", True, "Team Cymru CAP format comment")]
    if _mostly(h.data, lambda s: bool(_CYMRU_RE.match(s))):
        return [Clue("cymru", True, "'category|ip|asn|timestamp|' lines")]
    return []


def dshield(h: Head) -> list[Clue]:
    """DShield: ``block.txt`` has the header ``Start<TAB>End<TAB>Netblock<TAB>Attacks``; the AS
    details list (``asdetailsascii.html``) has the banner line ``source IP <tab> Reports <tab>
    Targets`` and tab-separated lines starting with a (zero-padded) IPv4 address.  Other files
    with a DShield banner (the suspicious-domains lists) only resemble ``dshield``."""
    if any(s.startswith("Start\tEnd\tNetblock") for s in h.data):
        return [Clue("dshield", True, "DShield block list header 'Start End Netblock'")]
    banner = "source ip <tab> reports <tab> targets" in h.low
    rows = [s.split("\t") for s in h.data]
    if banner and any(len(f) >= 6 and _DOTTED_QUAD.match(f[0]) for f in rows):
        return [Clue("dshield_asn", True, "DShield AS details banner and lines")]
    if "dshield" in h.low or banner:
        return [Clue("dshield", False, "a DShield banner, but neither the block list's nor the AS "
                                       "details' layout")]
    return []


def dataplane(h: Head) -> list[Clue]:
    """DataPlane.org: the ``DataPlane.org`` banner and lines of 5 or 6 fields separated by ``|`` with
    two spaces either side, the last one a category word (the first line and most sampled ones)."""
    def dp_row(s: str) -> bool:
        f = _DP_SPLIT.split(s)
        return len(f) >= 5 and bool(re.fullmatch(r"[a-z0-9]+", f[-1].strip()))

    shaped = _mostly(h.data, dp_row)
    if "dataplane.org" in h.low and shaped:
        return [Clue("dataplane", True, "DataPlane.org banner and '  |  '-separated lines")]
    if "dataplane" in h.low or shaped:
        return [Clue("dataplane", False, "a DataPlane banner or '  |  '-separated lines, not both")]
    return []


def bambenek(h: Head) -> list[Clue]:
    """Bambenek's C2 IP master list: a banner naming Bambenek and lines of four comma-separated fields
    ``ip,description,YYYY-MM-DD HH:MM,URL``, an address first (the first line and most sampled
    ones).  The domain master list and the DGA feed (a host name first) only resemble it."""
    def ip_row(s: str) -> bool:
        f = s.split(",")
        return len(f) == 4 and is_ip(f[0].strip())

    if "bambenek" not in h.low:
        return []
    if _mostly(h.data, ip_row):
        return [Clue("bambenek", True, "Bambenek banner and 'ip,description,time,url' lines")]
    return [Clue("bambenek", False, "a Bambenek banner over lines that are not 'ip,description,time,url' "
                                    "(the domain or DGA list?)")]


def csv_headers(h: Head) -> list[Clue]:
    """CSV files known by their header line: Zone-H, CERT-EU, Shadowserver (``timestamp`` first)."""
    first = (h.data[0] if h.data else "").lower()
    if first.startswith(('"add_date","accept_date"', "add_date,accept_date")):
        return [Clue("zoneh", True, "Zone-H header")]
    if first.startswith("feed code,source ip"):
        return [Clue("cert_eu", True, "CERT-EU header")]
    if re.match(r'^"?timestamp"?\s*,', first):
        return [Clue("shadowserver", True, "Shadowserver header ('timestamp' first)")]
    return []


def ip_list(h: Head) -> list[Clue]:
    """A bare list of addresses.  blocklist.de's lists are the only supported feed of this shape,
    and they carry no comment at all: a bare list without any comment line is ``blocklistde``;
    under a comment banner (abuse.ch's legacy Feodo and ZeuS lists) it only resembles it."""
    if not _all(h.data, is_ip):
        return []
    if h.comments or h.semicolons:
        return [Clue("blocklistde", False, "a bare list of addresses, but under a comment banner, "
                                           "which blocklist.de's lists never have")]
    return [Clue("blocklistde", True, "a bare list of addresses without comments")]


def urlhaus_csv(h: Head) -> list[Clue]:
    """abuse.ch URLhaus: the commented header of the CSV dumps (``# id,dateadded,url,url_status,...``)
    or of the per-TLD/country/ASN feeds (``# Dateadded (UTC),URL,URL_status,Threat,Host,IPaddress,...``);
    see :func:`herald.sources.urlhaus.looks_like`."""
    if urlhaus.looks_like(h.text):
        return [Clue("urlhaus", True, "URLhaus commented CSV header")]
    return []


def threatfox_csv(h: Head) -> list[Clue]:
    """abuse.ch ThreatFox: the commented header ``# "first_seen_utc","ioc_id","ioc_value","ioc_type",...``
    (:func:`herald.sources.threatfox.looks_like`)."""
    if threatfox.looks_like(h.text):
        return [Clue("threatfox", True, "ThreatFox commented CSV header")]
    return []


def sslbl_list(h: Head) -> list[Clue]:
    """abuse.ch SSL Blacklist: the commented header is exactly ``# Firstseen,DstIP,DstPort``
    (:func:`herald.sources.sslbl.looks_like`; Feodo Tracker's old list had two more columns)."""
    if sslbl.looks_like(h.text):
        return [Clue("sslbl", True, "SSL Blacklist header 'Firstseen,DstIP,DstPort'")]
    return []


def phishtank_csv(h: Head) -> list[Clue]:
    """PhishTank's CSV export: the first line is ``phish_id,url,phish_detail_url,...``
    (:func:`herald.sources.phishtank.looks_like_csv`; the JSON export is told by its keys)."""
    if phishtank.looks_like_csv(h.text):
        return [Clue("phishtank", True, "PhishTank CSV header")]
    return []


def turris_greylist(h: Head) -> list[Clue]:
    """Turris Sentinel greylist: the first non-comment line is the header ``Address,Tags`` (or the
    2019 ``Address,Country,Tags,ASN``; :func:`herald.sources.turris.looks_like`)."""
    if turris.looks_like(h.text):
        return [Clue("turris", True, "Turris greylist header 'Address,Tags'")]
    return []


def dshield_suspicious_domains(h: Head) -> list[Clue]:
    """DShield suspicious domain lists: a comment banner saying "suspicious domain" and the header
    line ``Site`` (:func:`herald.sources.dshield_domains.looks_like`)."""
    if dshield_domains.looks_like(h.text):
        return [Clue("dshield_domains", True, "DShield suspicious domain banner and 'Site' header")]
    return []


def url_list(h: Head) -> list[Clue]:
    """A bare list of http(s) URLs: OpenPhish's community feed has this layout, but so has any URL
    list, and the feed has no header or banner to prove it: it only resembles ``openphish``
    (read it with ``--format openphish``)."""
    if _all(h.data, lambda s: bool(_URL_LINE.match(s))):
        return [Clue("openphish", False, "a bare list of http(s) URLs, which proves no feed "
                                         "(OpenPhish's has no banner)")]
    return []


#: Every text sniffer, in no particular order (detection requires exactly one proven format).
TEXT_SNIFFERS: tuple[Callable[[Head], list[Clue]], ...] = (
    html, feodo, spamhaus, cymru, dshield, dataplane, bambenek, csv_headers, ip_list,
    urlhaus_csv, threatfox_csv, sslbl_list, phishtank_csv, turris_greylist, dshield_suspicious_domains, url_list)


def sniff_text(text: str, truncated: bool = False) -> list[Clue]:
    """All clues of all :data:`TEXT_SNIFFERS` for the decoded prefix ``text`` of a file
    (``truncated``: the file goes on after it)."""
    head = Head(text, truncated)
    return [clue for sniffer in TEXT_SNIFFERS for clue in sniffer(head)]

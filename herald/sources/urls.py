"""URLs of URL feeds (URLhaus, ThreatFox, PhishTank, OpenPhish) split into the columns routing reads.

A URL's host is either an IP literal (``http://192.0.2.7:8080/x``, ``http://[2001:db8::1]/``), which
becomes the event's ``ip`` (routed by CIDR, enriched with ASN and country), or a DNS name, which
becomes ``hostname`` (routed by the recipients' ``domains`` filters, see :mod:`herald.route`).
``port`` is the explicit port of the URL only (none when the URL has none: the scheme's default is
not invented).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.ipaddr import parse_ips

# scheme://[userinfo@]host[:port][/path...]; host is a bracketed IPv6 literal or has no / ? # :
_URL_RE = (r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?:[^/?#@]*@)?"
           r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^/?#:\[\]]*)(?::(?P<port>[^/?#]*))?")


@dataclass
class UrlParts:
    """Columns of a string column of URLs, each ``string[N]`` (``""`` where absent).

    Attributes:
        host: the host in lower case, IPv6 brackets and a final dot removed.
        ip: ``host`` when it is an IP address literal, else ``""``.
        hostname: ``host`` when it is not an IP literal, else ``""``.
        port: the explicit port text (digits expected; checked by the report type's integer column).
        no_host: ``bool[N]``: a non-empty URL without a host (``http:///x``, ``mailto:a``).
    """

    host: pa.Array
    ip: pa.Array
    hostname: pa.Array
    port: pa.Array
    no_host: np.ndarray


def split_urls(urls: pa.Array) -> UrlParts:
    """Split ``urls`` (``string[N]``, null or ``""`` = no URL) into :class:`UrlParts`.

    Vectorized with Arrow's regex kernels; IP literals are recognised with
    :func:`herald.ipaddr.parse_ips`.  Never raises on bad input: a URL without a host is flagged in
    :attr:`UrlParts.no_host` for the caller to quarantine.
    """
    s = pc.utf8_trim_whitespace(pc.fill_null(urls, ""))
    n = len(s)
    m = pc.extract_regex(s, _URL_RE)
    host = pc.fill_null(pc.struct_field(m, "host"), "")
    host = pc.utf8_lower(pc.replace_substring_regex(host, r"^\[|\]$|\.$", ""))
    port = pc.fill_null(pc.struct_field(m, "port"), "")
    empty_url = pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)
    empty_host = pc.equal(pc.utf8_length(host), 0).to_numpy(zero_copy_only=False)
    is_ip = parse_ips(host).version > 0 if n else np.zeros(0, dtype=bool)
    blank = pa.repeat(pa.scalar("", pa.string()), n)
    ip = pc.if_else(pa.array(is_ip, pa.bool_()), host, blank)
    hostname = pc.if_else(pa.array(is_ip, pa.bool_()), blank, host)
    return UrlParts(host=host, ip=ip, hostname=hostname, port=port, no_host=empty_host & ~empty_url)

"""Vectorized parsing of IP address columns.

IPv4 is stored as ``uint32`` and IPv6 as a pair of ``uint64`` (high and low 64 bits of the
big-endian 128-bit address), as DESIGN.md asks ("Store IPv4 as uint32, IPv6 as 16-byte big-endian
keys"; two big-endian halves order exactly like the 16-byte key and work with ``np.lexsort``).

IPv4 text is parsed with Arrow compute kernels (no Python loop).  IPv6 text, a small share of real
reports, is parsed with :func:`socket.inet_pton` over the *distinct* IPv6 values only.  Address syntax
follows RFC 4291 section 2.2 (IPv6 text forms) and the dotted-quad form of IPv4; IPv4 octets with
leading zeros are rejected, like Python's :mod:`ipaddress` does since 3.9.5 (they are ambiguous:
octal in some libc parsers).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_V4_RE = r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"


@dataclass
class ParsedIPs:
    """Parsed form of an IP address column of length N.

    Attributes:
        version: ``int8[N]``: 4, 6, 0 for empty/null, -1 for text that is not an address.
        v4: ``uint32[N]``: the IPv4 address where ``version == 4``, else 0.
        v6_hi, v6_lo: ``uint64[N]``: high and low halves of the IPv6 address where ``version == 6``.
        text: canonical text (``str`` Arrow array, length N): IPv4 as given (already canonical when
            valid), IPv6 compressed per RFC 5952; null where ``version <= 0``.
    """

    version: np.ndarray
    v4: np.ndarray
    v6_hi: np.ndarray
    v6_lo: np.ndarray
    text: pa.Array

    @property
    def invalid(self) -> np.ndarray:
        """``bool[N]``: non-empty text that is not an IP address."""
        return self.version < 0

    def __len__(self) -> int:
        return len(self.version)


def parse_ips(values: pa.Array | pa.ChunkedArray) -> ParsedIPs:
    """Parse a string column of IP addresses.

    Args:
        values: Arrow ``string`` array (or chunked array) of length N; nulls and ``""`` are "empty".
            Surrounding white space is ignored.

    Returns:
        :class:`ParsedIPs` with arrays of length N.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    n = len(values)
    s = pc.utf8_trim_whitespace(values)
    empty = pc.fill_null(pc.equal(pc.utf8_length(s), 0), True).to_numpy(zero_copy_only=False)
    is_v4 = pc.fill_null(pc.match_substring_regex(s, _V4_RE), False).to_numpy(zero_copy_only=False)

    version = np.zeros(n, dtype=np.int8)
    v4 = np.zeros(n, dtype=np.uint32)
    v6_hi = np.zeros(n, dtype=np.uint64)
    v6_lo = np.zeros(n, dtype=np.uint64)
    text = s

    if is_v4.any():
        idx = np.flatnonzero(is_v4)
        parts = pc.split_pattern(s.take(pa.array(idx)), ".")
        octets = pc.cast(pc.list_flatten(parts), pa.uint32()).to_numpy().reshape(-1, 4)
        v4[idx] = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        version[idx] = 4

    other = ~is_v4 & ~empty
    if other.any():
        idx = np.flatnonzero(other)
        cand = s.take(pa.array(idx))
        has_colon = pc.fill_null(pc.match_substring(cand, ":"), False).to_numpy(zero_copy_only=False)
        version[idx[~has_colon]] = -1
        v6_idx = idx[has_colon]
        if len(v6_idx):
            enc = pc.dictionary_encode(s.take(pa.array(v6_idx)))
            uniq = enc.dictionary.to_pylist()
            inverse = enc.indices.to_numpy(zero_copy_only=False)
            hi = np.zeros(len(uniq), dtype=np.uint64)
            lo = np.zeros(len(uniq), dtype=np.uint64)
            ok = np.zeros(len(uniq), dtype=bool)
            canon = np.empty(len(uniq), dtype=object)
            cache = _V6_CACHE
            for j, t in enumerate(uniq):
                hit = cache.get(t)
                if hit is None:
                    hit = _parse_v6(t)
                    if len(cache) >= _V6_CACHE_MAX:
                        cache.clear()
                    cache[t] = hit
                if hit[2] is None:
                    continue
                hi[j], lo[j], canon[j] = hit
                ok[j] = True
            version[v6_idx] = np.where(ok[inverse], 6, -1)
            v6_hi[v6_idx] = hi[inverse]
            v6_lo[v6_idx] = lo[inverse]
            # Canonical IPv6 text (RFC 5952) replaces what was given.
            canon_full = np.empty(n, dtype=object)
            canon_full[v6_idx] = canon[inverse]
            mask6 = np.zeros(n, dtype=bool)
            mask6[v6_idx] = True
            text = pc.if_else(pa.array(mask6), pa.array(canon_full, type=pa.string()), text)
    text = pc.if_else(pa.array(version > 0), text, pa.nulls(n, pa.string()))
    return ParsedIPs(version=version, v4=v4, v6_hi=v6_hi, v6_lo=v6_lo, text=text)


#: IPv6 text -> (hi, lo, canonical text or None): the same addresses recur across batches and
#: stages (parse, enrich, route), and Python's formatting is the costly part of IPv6 parsing.
_V6_CACHE: dict[str, tuple[int, int, str | None]] = {}
_V6_CACHE_MAX = 1 << 20


def _parse_v6(t: str) -> tuple[int, int, str | None]:
    """``(hi, lo, RFC 5952 text)`` of one IPv6 text, ``(0, 0, None)`` when it is not one."""
    try:
        packed = socket.inet_pton(socket.AF_INET6, t.split("%", 1)[0])
    except (OSError, ValueError):
        return 0, 0, None
    return (int.from_bytes(packed[:8], "big"), int.from_bytes(packed[8:], "big"),
            str(ipaddress.IPv6Address(packed)))


def format_v4(v4: np.ndarray) -> list[str]:
    """Dotted-quad text of a ``uint32`` array (for tests and generators, not hot paths)."""
    return [str(ipaddress.IPv4Address(int(x))) for x in v4]


def v6_keys(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """16-byte big-endian keys (``S16`` array of length N) from ``uint64[N]`` halves.

    NumPy orders ``S16`` values bytewise, which for fixed-width big-endian keys is numeric order,
    so ``np.sort`` and ``np.searchsorted`` work on IPv6 addresses at C speed.
    """
    k = np.empty((len(hi), 2), dtype=">u8")
    k[:, 0] = hi
    k[:, 1] = lo
    return k.view("S16").ravel()


def network_bounds(net) -> tuple[int, int, int]:
    """``(version, first, last)`` integer bounds of an ``ipaddress`` network (inclusive)."""
    return net.version, int(net.network_address), int(net.broadcast_address)

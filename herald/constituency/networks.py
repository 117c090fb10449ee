"""A compact list of IP networks: a recipient's CIDRs as numpy arrays, not Python objects.

A national constituency can hold a million CIDRs.  As :class:`ipaddress.IPv4Network` objects they
cost about 330 MB and 15 s to build; as :class:`Networks` they cost 18 bytes each and are parsed
vectorized.  :class:`Networks` is a read-only sequence: indexing and iteration give
``ipaddress`` network objects (made on demand), ``len``, ``bool``, ``==`` against a list of
networks and ``str`` of the items work as for the list it replaces, so code written for lists of
``ipaddress`` networks keeps working.  The router reads the arrays directly
(:meth:`Networks.arrays`).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.ipaddr import parse_ips

_M64 = (1 << 64) - 1


class Networks(Sequence):
    """Networks (CIDRs) as arrays of length M.

    Attributes:
        version: ``int8[M]``, 4 or 6.
        hi, lo: ``uint64[M]``: the network address (IPv4: ``lo`` holds it, ``hi`` is 0; IPv6: the
            high and low 64 bits of the 128-bit big-endian address).
        plen: ``uint8[M]``: the prefix length.
    """

    __slots__ = ("version", "hi", "lo", "plen")

    def __init__(self, version: np.ndarray, hi: np.ndarray, lo: np.ndarray, plen: np.ndarray) -> None:
        self.version = np.asarray(version, dtype=np.int8)
        self.hi = np.asarray(hi, dtype=np.uint64)
        self.lo = np.asarray(lo, dtype=np.uint64)
        self.plen = np.asarray(plen, dtype=np.uint8)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_networks(cls, nets: Iterable) -> "Networks":
        """From ``ipaddress`` network objects (or anything :func:`ipaddress.ip_network` takes)."""
        nets = [n if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                else ipaddress.ip_network(n) for n in nets]
        ints = [int(n.network_address) for n in nets]
        return cls(np.array([n.version for n in nets], dtype=np.int8),
                   np.array([i >> 64 for i in ints], dtype=np.uint64),
                   np.array([i & _M64 for i in ints], dtype=np.uint64),
                   np.array([n.prefixlen for n in nets], dtype=np.uint8))

    @classmethod
    def parse(cls, texts: Sequence[str]) -> tuple["Networks", np.ndarray]:
        """Parse CIDR texts (``192.0.2.0/24``, ``2001:db8::/32``; surrounding white space ignored).

        Only the plain ``<address>/<digits>`` form with host bits clear is decoded here,
        vectorized; every other text (a bare address, a netmask form, host bits set, garbage) is
        marked for the caller to check with :mod:`ipaddress`, which also gives the error message.

        Args:
            texts: M strings.

        Returns:
            ``(networks, ok)``: ``ok`` is ``bool[M]``; where it is False the entry of ``networks`` is
            a placeholder to be replaced (see :meth:`with_replaced`).
        """
        m = len(texts)
        if m == 0:
            return cls.empty(), np.zeros(0, dtype=bool)
        arr = pc.utf8_trim_whitespace(pa.array([str(t) for t in texts], pa.string()))
        parts = pc.extract_regex(arr, r"^(?P<addr>[0-9A-Fa-f:.]+)/(?P<plen>0|[1-9][0-9]?[0-9]?)$")
        digits = pc.is_valid(parts).to_numpy(zero_copy_only=False)
        addr = pc.struct_field(parts, "addr")
        plen = pc.fill_null(pc.cast(pc.struct_field(parts, "plen"), pa.int64()), 0).to_numpy(
            zero_copy_only=False).astype(np.int64)
        ips = parse_ips(addr)
        v4 = ips.version == 4
        v6 = ips.version == 6
        ok = digits & ((v4 & (plen <= 32)) | (v6 & (plen <= 128)))
        hi = np.where(v6, ips.v6_hi, np.uint64(0))
        lo = np.where(v6, ips.v6_lo, ips.v4.astype(np.uint64))
        # Host bits must be clear (ipaddress.ip_network(strict=True)).
        host_hi, host_lo = _host_masks(ips.version, plen)
        ok &= ((hi & host_hi) == 0) & ((lo & host_lo) == 0)
        version = np.where(v6, 6, 4).astype(np.int8)
        return cls(version, hi, lo, np.clip(plen, 0, 128).astype(np.uint8)), ok

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> "Networks":
        """CIDR texts as :class:`Networks`; what :meth:`parse` does not decode goes through
        :func:`ipaddress.ip_network` (strict).

        Raises:
            ValueError: a text is not a network (the message of :mod:`ipaddress`).
        """
        nets, ok = cls.parse(texts)
        bad = np.flatnonzero(~ok)
        if not len(bad):
            return nets
        return nets.with_replaced(bad, [ipaddress.ip_network(str(texts[i]).strip()) for i in bad])

    @classmethod
    def empty(cls) -> "Networks":
        """No networks."""
        return cls(np.zeros(0, np.int8), np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint8))

    def with_replaced(self, index: np.ndarray, nets: list) -> "Networks":
        """A copy where entries ``index`` (``int[K]``) are the ``ipaddress`` networks ``nets``."""
        other = Networks.from_networks(nets)
        out = Networks(self.version.copy(), self.hi.copy(), self.lo.copy(), self.plen.copy())
        out.version[index], out.hi[index], out.lo[index], out.plen[index] = (
            other.version, other.hi, other.lo, other.plen)
        return out

    # -- arrays ------------------------------------------------------------------------------------
    def arrays(self, version: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(hi, lo, plen, index)`` of the networks of one IP version (4 or 6), in list order;
        ``index`` (``int64``) gives their positions in this list."""
        idx = np.flatnonzero(self.version == version)
        return self.hi[idx], self.lo[idx], self.plen[idx], idx

    def texts(self) -> list[str]:
        """The canonical text of every network (``192.0.2.0/24``, ``2001:db8::/32``), in list
        order, as :func:`str` of the ``ipaddress`` network gives it.  IPv4 is formatted vectorized
        (a million networks in well under a second); IPv6 with :func:`socket.inet_ntop`."""
        n = len(self)
        if n == 0:
            return []
        lo = self.lo.astype(np.uint64)
        octets = [pa.array(((lo >> np.uint64(s)) & np.uint64(255)).astype(np.int64)).cast(pa.string())
                  for s in (24, 16, 8, 0)]
        plen = pa.array(self.plen.astype(np.int64)).cast(pa.string())
        v4 = pc.binary_join_element_wise(
            pc.binary_join_element_wise(*octets, "."), plen, "/").to_pylist()
        for i in np.flatnonzero(self.version != 4).tolist():
            # inet_ntop gives RFC 5952 text as ipaddress does, except for embedded IPv4 forms.
            addr = socket.inet_ntop(socket.AF_INET6, int(self.hi[i]).to_bytes(8, "big")
                                    + int(self.lo[i]).to_bytes(8, "big"))
            v4[i] = f"{addr}/{int(self.plen[i])}" if "." not in addr else str(self[i])
        return v4

    # -- sequence protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.version)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Networks(self.version[i], self.hi[i], self.lo[i], self.plen[i])
        if self.version[i] == 4:
            return ipaddress.IPv4Network((int(self.lo[i]), int(self.plen[i])))
        return ipaddress.IPv6Network(((int(self.hi[i]) << 64) | int(self.lo[i]), int(self.plen[i])))

    def __iter__(self) -> Iterator:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other) -> bool:
        if isinstance(other, Networks):
            return (len(self) == len(other) and bool(np.array_equal(self.version, other.version))
                    and bool(np.array_equal(self.hi, other.hi)) and bool(np.array_equal(self.lo, other.lo))
                    and bool(np.array_equal(self.plen, other.plen)))
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # mutable arrays inside, like the list it replaces

    def __repr__(self) -> str:
        head = ", ".join(str(n) for n in self[:5])
        more = f", ... ({len(self)} in all)" if len(self) > 5 else ""
        return f"Networks([{head}{more}])"

    def __reduce__(self):
        return (Networks, (self.version, self.hi, self.lo, self.plen))


def _host_masks(version: np.ndarray, plen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` ``uint64`` masks of the host bits of each network (IPv4 in ``lo``)."""
    bits = np.where(version == 6, 128, 32) - np.clip(plen, 0, None)
    bits = np.clip(bits, 0, 128)
    lo_bits = np.minimum(bits, 64).astype(np.uint64)
    hi_bits = np.clip(bits - 64, 0, 64).astype(np.uint64)
    lo = np.where(lo_bits == 64, np.uint64(_M64),
                  (np.uint64(1) << np.minimum(lo_bits, 63).astype(np.uint64)) - np.uint64(1))
    hi = np.where(hi_bits == 64, np.uint64(_M64),
                  (np.uint64(1) << np.minimum(hi_bits, 63).astype(np.uint64)) - np.uint64(1))
    return hi, lo

"""Tables of the IPv4 address space by /16 and /24 block, for step functions of the address.

The router's CIDR segments (:mod:`herald.route`) and the IP data's ranges
(:mod:`herald.enrich.iprange`) are both *step functions* of an IPv4 address: sorted bounds
``b[0] < b[1] < ...``, and a value that changes only at a bound.  Looking one up takes a sort of
the addresses and a ``searchsorted``.  A :class:`BlockTable` stores, per /16 block, the value of the
whole block when no bound falls inside it, and for the /16 blocks that hold a bound, the value of
each of their /24 blocks likewise: most addresses are then found with shifts and gathers, without
any sort, and only those in a /24 block with a bound inside take the sorted path.

Measured on the benchmark machine (bench/README.md, "Fourth round"): the 1M addresses of the
bench day against the router's 171k merged bounds, 36 ms -> 12 ms of CPU (2 % take the sorted
path); against the bundled IP data's 472k bounds, 42 ms -> 12 ms.  Hand-written for that speed.
A flat table of every /24 block (64 MiB) took 8 ms; the rows below keep most of that for a
quarter of the memory.

Size: 256 KiB for the /16 level, plus a row of 1 KiB per /16 block that holds a bound and one per
distinct value of the others (the bench router: 10,162 + 4,988 rows, 15 MiB, built in 29 ms; the
bundled IP data: 18,277 + 2,798 rows, 21 MiB, 50 ms; at most 65,536 rows, 64 MiB).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: The table value of a block that holds a bound (its addresses look further).
SPLIT = np.int32(np.iinfo(np.int32).min)

#: Rows built at a time (2 MiB of counts).
_SLICE = 1024


class BlockTable:
    """The value of every IPv4 address by /24 block, where a block holds no bound after its first
    address, stored as rows of 256 /24 blocks shared between the /16 blocks that can share them.

    A /16 block that holds a bound after its first address gets a row of its own; every other
    /16 block has one value throughout and shares the row of that value (all 256 entries alike).
    A lookup is then one gather into the small :attr:`row_of` and one into :attr:`rows`, for every
    address, without branches.

    Args:
        bounds: ``uint64[B]``, sorted, distinct: the addresses where the value changes (bounds
            above ``2**32 - 1``, such as the exclusive end of ``255.255.255.255``, are ignored).
        values: ``int[B + 1]``: ``values[j]`` is the value of an address with exactly ``j``
            bounds at or below it.  Each must fit an ``int32`` and differ from :data:`SPLIT`.

    Attributes:
        row_of: ``uint32[2**16]``: the row of :attr:`rows` of each /16 block.
        rows: ``int32[R, 256]``: the value of each /24 block of the row, or :data:`SPLIT` for a
            block with a bound inside (its addresses take the sorted path).

    Raises:
        ValueError: ``values`` is not one longer than ``bounds``, or a value does not fit.
    """

    def __init__(self, bounds: np.ndarray, values: np.ndarray) -> None:
        bounds = np.asarray(bounds, dtype=np.uint64)
        values = np.asarray(values)
        if len(values) != len(bounds) + 1:
            raise ValueError("BlockTable: values must be one longer than bounds")
        if values.max() > np.iinfo(np.int32).max or values.min() <= SPLIT:
            raise ValueError("BlockTable: values must fit an int32 above SPLIT")
        values = values.astype(np.int32)
        b = bounds[bounds <= np.uint64(0xFFFFFFFF)]
        top = _whole_blocks(b, values, 16)
        split = np.flatnonzero(top == SPLIT)
        whole = np.flatnonzero(top != SPLIT)
        shared, which = np.unique(top[whole], return_inverse=True)
        self.row_of = np.empty(1 << 16, dtype=np.uint32)
        self.row_of[split] = np.arange(len(split), dtype=np.uint32)
        self.row_of[whole] = len(split) + which.astype(np.uint32)
        self.rows = np.concatenate([_leaves(b, values, split), np.repeat(shared[:, None], 256, axis=1)])

    def lookup(self, addresses: np.ndarray, fallback: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The value of each address.

        Args:
            addresses: ``uint32[N]`` IPv4 addresses, any order.
            fallback: called with the addresses (``uint32[K]``) that fall in a /24 block holding a
                bound; returns their values (``int[K]``, in the same order).

        Returns:
            ``int64[N]``.
        """
        addresses = np.asarray(addresses, dtype=np.uint32)
        at = self.row_of[np.right_shift(addresses, 16)]
        at <<= np.uint32(8)
        at |= np.right_shift(addresses, 8) & np.uint32(0xFF)
        out = self.rows.reshape(-1)[at].astype(np.int64)
        split = np.flatnonzero(out == SPLIT)
        if len(split):
            out[split] = fallback(addresses[split])
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables."""
        return self.row_of.nbytes + self.rows.nbytes


def _whole_blocks(b: np.ndarray, values: np.ndarray, bits: int) -> np.ndarray:
    """``int32[2**bits]``: per ``/bits`` block, ``values[j]`` for the ``j`` bounds at or below the
    block's first address when no bound lies inside it (after its first address), else
    :data:`SPLIT`.

    Between two blocks that hold a bound, every block has the value after the lower one's bounds:
    the table is laid out as runs (``np.repeat``), two per such block.
    """
    n_blocks = 1 << bits
    if len(b) == 0:
        return np.full(n_blocks, values[0], dtype=np.int32)
    blk = (b >> np.uint64(32 - bits)).astype(np.int64)
    first = np.flatnonzero(np.concatenate(([True], blk[1:] != blk[:-1])))
    held = blk[first]                       # the blocks that hold a bound, ascending
    count = np.diff(np.append(first, len(blk)))
    # A block whose only bound is its first address has one value throughout.
    whole = (count == 1) & ((b[first] & np.uint64((1 << (32 - bits)) - 1)) == 0)
    after = values[first + count]           # the value after the block's bounds
    run_value = np.empty(2 * len(held) + 1, dtype=np.int32)
    run_len = np.empty(2 * len(held) + 1, dtype=np.int64)
    run_value[0], run_len[0] = values[0], held[0]
    run_value[1::2], run_len[1::2] = np.where(whole, after, SPLIT), 1
    run_value[2::2] = after
    run_len[2::2] = np.append(held[1:], n_blocks) - held - 1
    return np.repeat(run_value, run_len)


def _leaves(b: np.ndarray, values: np.ndarray, split: np.ndarray) -> np.ndarray:
    """``int32[len(split), 256]``: the /24 blocks of the /16 blocks ``split`` (ascending), each the
    value of its first address when no bound lies inside it, else :data:`SPLIT`.

    The value of /24 block ``x`` is ``values[j]`` for the ``j`` bounds at or below ``x << 8``: the
    bounds up to the /16 block's first address, plus the count of the bounds inside the /16 block
    up to ``x << 8`` (a cumulative sum over the 256 blocks).
    """
    leaves = np.empty((len(split), 256), dtype=np.int32)
    if len(split) == 0:
        return leaves
    starts = split.astype(np.uint64) << np.uint64(16)
    base = np.searchsorted(b, starts, side="right")          # bounds at or below each start
    row_of = np.full(1 << 16, -1, dtype=np.int64)
    row_of[split] = np.arange(len(split))
    row = row_of[(b >> np.uint64(16)).astype(np.intp)]
    inside = (row >= 0) & ((b & np.uint64(0xFFFF)) != 0)
    row, off = row[inside], (b[inside] & np.uint64(0xFFFF)).astype(np.int64)
    # A bound at offset o counts for the /24 blocks from ceil(o / 256) on; inside a block (o not a
    # multiple of 256) it splits that block.  In slices of _SLICE rows, so that the counts
    # (int64) never take more than a few MiB beside the table.
    first = (off + 255) >> 8
    edges = np.searchsorted(row, np.arange(0, len(split) + _SLICE, _SLICE))
    for lo in range(0, len(split), _SLICE):
        hi = min(lo + _SLICE, len(split))
        a, z = edges[lo // _SLICE], edges[lo // _SLICE + 1]
        step = np.bincount((row[a:z] - lo) * 257 + first[a:z], minlength=(hi - lo) * 257)
        j = np.cumsum(step.reshape(-1, 257)[:, :256], axis=1)
        j += base[lo:hi, None]
        leaves[lo:hi] = values[j]
    cut = (off & 255) != 0
    leaves[row[cut], off[cut] >> 8] = SPLIT
    return leaves

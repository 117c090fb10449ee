"""A dense table over the IPv4 address space in equal blocks, for step functions of the address.

The router's CIDR segments (:mod:`herald.route`) and the IP data's ranges
(:mod:`herald.enrich.iprange`) are both *step functions* of an IPv4 address: sorted bounds
``b[0] < b[1] < ...``, and a value that changes only at a bound.  Looking one up takes a sort of
the addresses and a ``searchsorted``.  A :class:`BlockTable` cuts the address space into ``2**bits``
equal blocks and stores, per block, the value of the whole block when no bound falls inside it:
most addresses are then found with one shift and one gather, without any sort, and only those in
a block with a bound inside take the sorted path.

Measured on the benchmark machine (bench/README.md, "Fourth round"): the 1M addresses of the
bench day against the router's 171k merged bounds, 35 ms -> 8 ms of CPU (2 % take the sorted
path); against the bundled IP data's 472k bounds, 41 ms -> 8 ms.  Hand-written for that speed.

Size: the smallest ``bits`` (at most 24, /24 blocks) that gives at least 64 blocks per bound, so
that at most one block in 64 holds a bound; an ``int32`` per block: 64 MiB at 24 bits, 32 KiB for a
hundred bounds.  Built in one ``np.repeat`` of the runs between the blocks that hold a bound
(13-33 ms for the tables above).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: The table value of a block that holds a bound (its addresses take the sorted path).
SPLIT = np.int32(np.iinfo(np.int32).min)

#: The most blocks: /24 blocks, 2**24 ``int32`` (64 MiB).
MAX_BITS = 24

#: Blocks per bound that the table aims for (see the module docstring).
BLOCKS_PER_BOUND = 64


class BlockTable:
    """The value of every IPv4 address, block by block, where a block holds no bound.

    Args:
        bounds: ``uint64[B]``, sorted, distinct: the addresses where the value changes (bounds
            above ``2**32 - 1``, such as the exclusive end of ``255.255.255.255``, are ignored).
        values: ``int[B + 1]``: ``values[j]`` is the value of an address with exactly ``j``
            bounds at or below it.  Each must fit an ``int32`` and differ from :data:`SPLIT`.

    Attributes:
        bits: ``log2`` of the number of blocks; a block is a ``/bits`` network.
        table: ``int32[2**bits]``: the value of each block, or :data:`SPLIT`.

    Raises:
        ValueError: ``values`` is not one longer than ``bounds``, or a value does not fit.
    """

    def __init__(self, bounds: np.ndarray, values: np.ndarray) -> None:
        bounds = np.asarray(bounds, dtype=np.uint64)
        values = np.asarray(values)
        if len(values) != len(bounds) + 1:
            raise ValueError("BlockTable: values must be one longer than bounds")
        if len(values) and (values.max() > np.iinfo(np.int32).max or values.min() <= SPLIT):
            raise ValueError("BlockTable: values must fit an int32 above SPLIT")
        b = bounds[bounds <= np.uint64(0xFFFFFFFF)]
        bits = max(int(len(b) * BLOCKS_PER_BOUND - 1).bit_length(), 1)
        self.bits = min(bits, MAX_BITS)
        self._shift = 32 - self.bits
        self.table = _build(b, values.astype(np.int32), self.bits)

    def lookup(self, addresses: np.ndarray, fallback: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The value of each address.

        Args:
            addresses: ``uint32[N]`` IPv4 addresses, any order.
            fallback: called with the addresses (``uint32[K]``) that fall in a block holding a
                bound; returns their values (``int[K]``, in the same order).

        Returns:
            ``int64[N]``.
        """
        out = self.table[np.right_shift(addresses, self._shift, dtype=np.uint32)].astype(np.int64)
        split = np.flatnonzero(out == SPLIT)
        if len(split):
            out[split] = fallback(addresses[split])
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return self.table.nbytes


def _build(b: np.ndarray, values: np.ndarray, bits: int) -> np.ndarray:
    """``int32[2**bits]``: per block, ``values[j]`` for the ``j`` bounds at or below the block's
    first address when no bound lies inside it (after its first address), else :data:`SPLIT`.

    Between two blocks that hold a bound, every block has the value after the lower one's bounds:
    the table is laid out as runs (``np.repeat``), two per such block, so nothing of the size of
    the table is built but the table itself.
    """
    n_blocks = 1 << bits
    if len(b) == 0:
        return np.full(n_blocks, values[0], dtype=np.int32)
    shift = np.uint64(32 - bits)
    blk = (b >> shift).astype(np.int64)
    first = np.flatnonzero(np.concatenate(([True], blk[1:] != blk[:-1])))
    held = blk[first]                       # the blocks that hold a bound, ascending
    count = np.diff(np.append(first, len(blk)))
    upto = first + count                    # bounds at or below the end of each such block
    # A block whose only bound is its first address has one value throughout.
    whole = (count == 1) & ((b[first] & np.uint64((1 << (32 - bits)) - 1)) == 0)
    after = values[upto]
    run_value = np.empty(2 * len(held) + 1, dtype=np.int32)
    run_len = np.empty(2 * len(held) + 1, dtype=np.int64)
    run_value[0], run_len[0] = values[0], held[0]
    run_value[1::2], run_len[1::2] = np.where(whole, after, SPLIT), 1
    run_value[2::2] = after
    run_len[2::2] = np.append(held[1:], n_blocks) - held - 1
    return np.repeat(run_value, run_len)

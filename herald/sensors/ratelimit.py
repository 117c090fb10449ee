"""Per-client token buckets (response rate limiting for the DNS sinkhole).

Each client address owns a bucket of ``burst`` tokens that refills at ``rate`` tokens per second; a
query spends one token and is dropped when the bucket is empty.  The table of buckets is bounded:
when it holds ``max_clients`` entries the least recently used one is evicted (an evicted client
starts again with a full bucket, which only ever errs towards answering).
"""

from __future__ import annotations

import time
from collections import OrderedDict


class TokenBucketLimiter:
    """Token bucket per key (client IP address text).

    Args:
        rate: tokens added per second (queries per second allowed in the long run); > 0.
        burst: bucket size (queries allowed at once); >= 1.
        max_clients: most buckets kept in memory.
        clock: monotonic clock in seconds (tests pass a fake one).

    Attributes:
        dropped: number of refused requests since start.
    """

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000,
                 clock=time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, last time]
        self.dropped = 0

    def allow(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; ``False`` (and count a drop) when it is empty."""
        now = self._clock()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
            b = self._buckets[key] = [self.burst, now]
        else:
            self._buckets.move_to_end(key)
            b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
            b[1] = now
        if b[0] >= 1.0:
            b[0] -= 1.0
            return True
        self.dropped += 1
        return False

    def __len__(self) -> int:
        return len(self._buckets)

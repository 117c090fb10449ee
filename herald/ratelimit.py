"""In-process token buckets, one per key: request rate limits of the web API and portal (per API
key and per client address) and of the sinkhole sensors (per client address).

Each key owns a bucket of ``burst`` tokens that refills at ``rate`` tokens per second; a request
spends one token and is refused when the bucket is empty.  The table of buckets is bounded: when
it holds ``max_keys`` entries the least recently used one is evicted (an evicted key starts again
with a full bucket, which only ever errs towards allowing).  The state is in memory, per process
(run one process per host, or put a shared limiter in front when scaling out).  Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

#: Default bound on the number of buckets kept in memory.
MAX_KEYS = 100_000


class TokenBucketLimiter:
    """Token bucket per key (an API key id, a client IP address text).

    Args:
        rate: tokens added per second (requests per second allowed in the long run); > 0.
        burst: bucket size (requests allowed at once); >= 1.
        max_keys: most buckets kept in memory (least recently used evicted first).
        clock: monotonic clock in seconds (tests pass a fake one).

    Attributes:
        dropped: number of refused requests since start.

    Raises:
        ValueError: ``rate`` <= 0 or ``burst`` < 1.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self.dropped = 0
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, last time]
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; ``False`` (and count a drop) when it is empty."""
        now = self.clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
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

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` has a token again (at least 1)."""
        with self._lock:
            b = self._buckets.get(key)
            tokens = b[0] if b is not None else self.burst
        return max(1, int((1.0 - tokens) / self.rate + 0.999))

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter(TokenBucketLimiter):
    """A :class:`TokenBucketLimiter` configured per minute, where 0 or less means no limit.

    Args:
        per_minute: refill rate in requests per minute; 0 or less disables the limit.
        burst: bucket size (default: ``per_minute``).
        clock: time source in seconds (tests).
        max_keys: most buckets kept in memory.
    """

    def __init__(self, per_minute: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.unlimited = per_minute <= 0
        if self.unlimited:
            per_minute = burst = 60.0
        super().__init__(float(per_minute) / 60.0, float(burst if burst is not None else per_minute),
                         max_keys, clock)

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; ``False`` when its bucket is empty (always ``True`` without
        a limit)."""
        return True if self.unlimited else super().allow(key)

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` has a token again (at least 1; 0 without a limit)."""
        return 0 if self.unlimited else super().retry_after(key)

"""In-process token buckets: request rate limits per API key and per client address.

One bucket per key: ``rate`` requests per minute on average, bursts up to ``burst``.  The state is
in memory, per server process (run one process per host, or put a shared limiter in front when
scaling out); old buckets are dropped so memory stays bounded.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Token-bucket limiter keyed by strings.

    Args:
        per_minute: refill rate; 0 or less disables the limit.
        burst: bucket size (default: ``per_minute``).
        clock: time source in seconds (tests).
    """

    def __init__(self, per_minute: float, burst: float | None = None, clock=time.monotonic) -> None:
        self.rate = float(per_minute) / 60.0
        self.burst = float(burst if burst is not None else per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; ``False`` when its bucket is empty."""
        if self.rate <= 0:
            return True
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
            if len(self._buckets) > 100_000:
                full = [k for k, (t, ts) in self._buckets.items()
                        if t + (now - ts) * self.rate >= self.burst]
                for k in full:
                    del self._buckets[k]
            return ok

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` has a token again (at least 1)."""
        if self.rate <= 0:
            return 0
        with self._lock:
            tokens, _ = self._buckets.get(key, (self.burst, 0.0))
        return max(1, int((1.0 - tokens) / self.rate + 0.999))

"""Token-bucket rate limits kept in memory, in a bounded number of buckets.

A flood of distinct keys (client addresses, tenant ids) must not grow memory
without bound, so the buckets live in an LRU map of fixed capacity: the least
recently seen key is dropped when a new one arrives. A dropped key starts again
with a full bucket, which is the generous side to err on for an honest client
and costs an attacker a whole burst of distinct keys per reset.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class TokenBuckets:
    """Per-key token buckets: ``rate`` tokens per second, at most ``burst`` held."""

    __slots__ = ("_buckets", "_capacity", "_clock", "burst", "rate")

    def __init__(self, rate: float, burst: int, capacity: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._capacity = capacity
        self._clock = clock
        # key -> (tokens, last refill time)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token (0 if it has one now), without spending it."""
        if self.rate <= 0:
            return 0.0
        entry = self._buckets.get(key)
        if entry is None:
            return 0.0
        tokens = min(self.burst, entry[0] + (self._clock() - entry[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str) -> float:
        """Spend one token for ``key``; return 0 if allowed, else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        entry = self._buckets.get(key)
        if entry is None:
            tokens = self.burst
            if len(self._buckets) >= self._capacity:
                self._buckets.popitem(last=False)
        else:
            tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
            self._buckets.move_to_end(key)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

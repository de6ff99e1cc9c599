"""Token-bucket rate limits kept in memory, in a bounded number of buckets.

A flood of distinct keys (client addresses, tenant ids) must not grow memory
without bound, so the buckets live in an LRU map of fixed capacity: the least
recently seen key is dropped when a new one arrives. A dropped key starts again
with a full bucket, which is the generous side to err on for an honest client
and costs an attacker a whole burst of distinct keys per reset.

A client address is keyed by :func:`client_key`: an IPv4 address by itself, an
IPv6 address by its /64 prefix. One IPv6 subscriber normally holds a whole /64
and can send from any of its 2**64 addresses, so keying the full address would
give it as many buckets as it cares to use.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

#: The part of an IPv6 address that one subscriber holds, in bits.
IPV6_PREFIX = 64
_IPV6_HOST_BITS = 128 - IPV6_PREFIX


def address_key(host: str) -> str:
    """The rate-limit key of a client address.

    IPv4 is keyed per address. IPv6 is keyed per /64 (``2001:db8:1:2::/64``),
    except an IPv4-mapped address (``::ffff:192.0.2.1``), which is its IPv4
    address. Anything that is not an IPv6 address is its own key.
    """
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    network = ipaddress.IPv6Address(int(address) >> _IPV6_HOST_BITS << _IPV6_HOST_BITS)
    return f"{network}/{IPV6_PREFIX}"


def client_key(scope: Mapping[str, Any]) -> str:
    """The rate-limit key of the client of an ASGI request (``scope["client"]``).

    Every per-address limit takes its key here. The relay does not trust
    forwarded headers (``server.py``): the client is the connection's peer.
    """
    client = scope.get("client")
    return address_key(client[0]) if client else ""


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

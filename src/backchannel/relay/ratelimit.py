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

Behind a reverse proxy every connection comes from the proxy. A relay whose
``trusted_proxies`` names it keys each request by the client the proxy names
in ``X-Forwarded-For`` instead (:func:`client_keyer`); any other peer's
header is ignored.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

#: The rate-limit key of an ASGI request's client (``scope`` -> key).
ClientKey = Callable[[Mapping[str, Any]], str]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

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

    The key of a relay that trusts no proxy (the default): the client is the
    connection's peer, and forwarded headers are never read.
    """
    client = scope.get("client")
    return address_key(client[0]) if client else ""


def client_keyer(trusted_proxies: str) -> ClientKey:
    """The function every per-address limit takes its key from, for a relay's setting.

    With no trusted proxy it is :func:`client_key` itself: the fast paths pay
    nothing for a setting they do not use.
    """
    networks = trusted_networks(trusted_proxies)
    return _ProxiedClientKey(networks) if networks else client_key


def trusted_networks(spec: str) -> tuple[_Network, ...]:
    """The networks of ``trusted_proxies``: comma-separated addresses or CIDR networks.

    Raises ValueError naming the first entry that is not one. An IPv4-mapped
    IPv6 entry means its IPv4 form (peers are compared in that form).
    """
    networks: list[_Network] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        try:
            network: _Network = ipaddress.ip_network(entry)
        except ValueError:
            try:
                hint = f"; the network is {ipaddress.ip_network(entry, strict=False)}"
            except ValueError:
                hint = ""
            raise ValueError(
                f"{entry!r} is not an IP address or CIDR network "
                f"(e.g. 127.0.0.1, ::1, 10.0.0.0/8){hint}"
            ) from None
        if "%" in entry:
            raise ValueError(f"{entry!r} has a zone index (%); name the proxy without it")
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
            mapped = network.network_address.ipv4_mapped
            if mapped is not None:
                network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
        if network.prefixlen == 0:
            raise ValueError(
                f"{entry!r} trusts every address: any client could choose its rate-limit key"
            )
        networks.append(network)
    return tuple(networks)


#: Longer ``X-Forwarded-For`` entries are no address (45 characters hold any IPv6).
_MAX_ENTRY = 64


def _address(text: str | bytes) -> _Address | None:
    """``text`` as an IP address (an IPv4-mapped one as IPv4), or None."""
    if len(text) > _MAX_ENTRY:
        return None
    try:
        address = ipaddress.ip_address(text.decode("latin-1") if isinstance(text, bytes) else text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def _entries_from_right(values: list[bytes]) -> Iterator[bytes]:
    """The comma-separated entries of header lines, the last line's last entry first.

    Read from the right, so a long list of the client's own claims on the left
    is never split or parsed.
    """
    for value in reversed(values):
        end = len(value)
        while True:
            start = value.rfind(b",", 0, end)
            yield value[start + 1 : end].strip()
            if start < 0:
                break
            end = start


class _ProxiedClientKey:
    """:func:`client_key` for a relay behind proxies it trusts.

    A request whose peer is a trusted proxy is keyed by the rightmost
    ``X-Forwarded-For`` entry that is not itself a trusted proxy: the address
    the outermost trusted proxy saw. Every proxy appends the peer it saw, so
    entries to the left of that one are the client's own claims. A missing,
    empty or malformed header (or one naming trusted proxies only) keys the
    request by its peer, never by anything the client wrote. Any other peer is
    keyed as by :func:`client_key`, its header ignored.
    """

    __slots__ = ("_literals", "_networks")

    def __init__(self, networks: Iterable[_Network]) -> None:
        self._networks = tuple(networks)
        # The proxy's address as written in the setting: a set lookup, no parsing.
        self._literals = frozenset(
            str(n.network_address) for n in self._networks if n.num_addresses == 1
        )

    def _holds(self, address: _Address) -> bool:
        return any(address in network for network in self._networks)

    def trusts(self, host: str) -> bool:
        """Whether the peer ``host`` is a trusted proxy."""
        if host in self._literals:
            return True
        address = _address(host)
        return address is not None and self._holds(address)

    def forwarded(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The client a trusted proxy names, or None to key by the peer."""
        values = [value for name, value in headers if name == b"x-forwarded-for"]
        for entry in _entries_from_right(values):
            address = _address(entry)
            if address is None:
                return None  # not what a proxy appends: the header cannot be read
            if not self._holds(address):
                return str(address)
        return None

    def __call__(self, scope: Mapping[str, Any]) -> str:
        client = scope.get("client")
        if not client:
            return ""
        peer = client[0]
        if self.trusts(peer):
            forwarded = self.forwarded(scope.get("headers") or ())
            if forwarded is not None:
                return address_key(forwarded)
        return address_key(peer)


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

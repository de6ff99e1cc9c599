"""The key a client address is rate-limited under (``relay/ratelimit.py``)."""

from __future__ import annotations

import pytest

from backchannel.relay.ratelimit import address_key, client_key


@pytest.mark.parametrize(
    ("host", "key"),
    [
        # IPv4: each address is its own client.
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.2", "192.0.2.2"),
        # IPv6: the /64 a subscriber holds, however the address is written.
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:0DB8:0001:0002:0:0:0:1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        # IPv4-mapped IPv6 is the IPv4 address, in either notation.
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::ffff:c000:201", "192.0.2.1"),
        # Not an address (a test client, a socket path): its own key.
        ("testclient", "testclient"),
        ("not:an:address", "not:an:address"),
        ("", ""),
    ],
)
def test_address_key(host: str, key: str) -> None:
    assert address_key(host) == key


def test_client_key_reads_the_scope_client() -> None:
    assert client_key({"client": ("2001:db8:1:2::7", 443)}) == "2001:db8:1:2::/64"
    assert client_key({"client": ("::ffff:198.51.100.7", 443)}) == "198.51.100.7"
    assert client_key({"client": None}) == ""
    assert client_key({}) == ""

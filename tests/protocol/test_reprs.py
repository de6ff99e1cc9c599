"""What the core's objects show when printed or logged: sizes, positions and
counters, never cell data, plaintext or a whole hash."""

from __future__ import annotations

import hashlib

from backchannel.protocol.cells import Fragment
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.payload import note


def test_a_fragment_shows_its_place_and_size_not_its_data() -> None:
    f = Fragment(bytes(range(16)), 1, 3, b"SECRET-FRAGMENT-BYTES")
    assert repr(f) == "Fragment(2/3, 21 bytes)"
    assert "SECRET" not in repr(f) and bytes(range(16)).hex() not in repr(f)


def test_a_tree_head_shows_a_prefix_of_its_root() -> None:
    root = hashlib.sha256(b"root").digest()
    assert repr(TreeHead(7, root, 1_700_000_000)) == (
        f"TreeHead(size=7, root={root.hex()[:16]}…, t=1700000000)"
    )


def test_a_payload_shows_its_kind_and_length_only() -> None:
    assert repr(note("meet at noon")) == "Payload(kind=NOTE, <12 chars>)"

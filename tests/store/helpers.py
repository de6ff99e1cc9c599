"""Deterministic slots and cells for the store tests (no randomness to pin)."""

from __future__ import annotations

import hashlib

from backchannel.protocol.constants import CELL_SIZE

CRED = hashlib.sha256(b"fetch credential").digest()


def slot(n: int, tag: bytes = b"") -> bytes:
    return hashlib.sha256(b"slot:" + tag + n.to_bytes(8, "big")).digest()


def cell(n: int, tag: bytes = b"") -> bytes:
    """A full-size cell whose every block depends on ``n`` and ``tag``."""
    seed = hashlib.sha256(b"cell:" + tag + n.to_bytes(8, "big")).digest()
    out = bytearray()
    counter = 0
    while len(out) < CELL_SIZE:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:CELL_SIZE])


def cell_for_slot(slot_bytes: bytes) -> bytes:
    """The cell the crash worker deposits at ``slot_bytes``."""
    return cell(int.from_bytes(slot_bytes[:8], "big"), tag=b"crash")

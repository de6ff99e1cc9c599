"""Deterministic slots and cells for the store tests (no randomness to pin),
a counter of the event loop's ticks, and checks shared by the backends."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from backchannel.errors import StoreUnavailable
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store.relay_store import RelayStore

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


@contextmanager
def ticking() -> Iterator[list[int]]:
    """Count 10 ms ticks of the running event loop while the block runs: a
    block that held the loop counts none."""
    ticks = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    beat = asyncio.get_running_loop().create_task(tick())
    try:
        yield ticks
    finally:
        beat.cancel()


def reopens_after_its_loop_ended(store: RelayStore) -> None:
    """Open ``store`` and deposit on one loop that ends without close(); on
    the next, a deposit must say to open the store again (never wait for a
    writer that is gone), opening must work, and nothing committed may be
    lost."""

    async def first() -> None:
        await store.open()
        await store.create_tenant("a", CRED, 10, now=0)
        assert (await store.deposit("a", slot(1), cell(1), now=1)).created

    asyncio.run(first())

    async def second() -> None:
        with pytest.raises(StoreUnavailable, match="open the store again"):
            await asyncio.wait_for(store.deposit("a", slot(2), cell(2), now=1), 10)
        await store.open()
        try:
            assert (await store.deposit("a", slot(2), cell(2), now=1)).created
            got = await store.fetch("a", [slot(1), slot(2)])
            assert got == {slot(1): cell(1), slot(2): cell(2)}
        finally:
            await store.close()

    asyncio.run(second())

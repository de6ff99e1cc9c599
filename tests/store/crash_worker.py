"""Deposits into a relay store without end, printing each acknowledged call.

Run by ``test_crash.py``, which SIGKILLs this process mid-flight and checks that
every call printed here as acknowledged survived. Usage:
``crash_worker.py DB SEED MODE``: ``DB`` is a SQLite file or a ``postgresql://``
URL; ``MODE`` is ``deposit`` (one cell per call, to tenant ``crash``) or
``deposit_many`` (a batch of :data:`BATCH` cells per call, to the tenants in
turn). Output, one line each:

* ``ready`` once the tenants exist;
* ``t <tenant>:<slot> ...`` just before a call: the cells it may store;
* ``a <tenant>:<slot> ...`` once the call returned, i.e. after its commit;
* ``h <hex>``, a signed head handed out with a receipt of the call, whenever it
  is larger than the last one printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from backchannel.store.factory import relay_store_from_url
from backchannel.store.relay_store import DepositResult
from backchannel.store.sqlite import SQLiteRelayStore
from helpers import cell_for_slot  # run as a script from tests/store

CONCURRENCY = 64
TENANTS = ("crash", "crash-b")
#: Cells per ``deposit_many`` call (CONCURRENCY calls in flight stay below one
#: group commit's most, so each call can share a single commit).
BATCH = 5


def _cells(seed: str, n: int, mode: str) -> list[tuple[str, bytes]]:
    if mode == "deposit":
        return [(TENANTS[0], hashlib.sha256(f"{seed}:{n}".encode()).digest())]
    return [
        (TENANTS[k % len(TENANTS)], hashlib.sha256(f"{seed}:{n}:{k}".encode()).digest())
        for k in range(BATCH)
    ]


async def main(db: str, seed: str, mode: str) -> None:
    if mode not in ("deposit", "deposit_many"):
        raise SystemExit(f"unknown mode {mode!r}")
    store = relay_store_from_url(db) if "://" in db else SQLiteRelayStore(db)
    await store.open()
    for tenant in TENANTS:
        await store.create_tenant(tenant, b"\x00" * 32, 10_000_000, now=0)
    print("ready", flush=True)
    counter = 0
    printed = -1

    async def one(n: int) -> None:
        nonlocal printed
        cells = _cells(seed, n, mode)
        named = " ".join(f"{tenant}:{slot.hex()}" for tenant, slot in cells)
        sys.stdout.write(f"t {named}\n")
        sys.stdout.flush()
        deposits = [(tenant, slot, cell_for_slot(slot)) for tenant, slot in cells]
        if mode == "deposit":
            tenant, slot, cell = deposits[0]
            results: list[DepositResult | BaseException] = [
                await store.deposit(tenant, slot, cell, now=n)
            ]
            if n % 7 == 0:  # an idempotent retry must never make a second copy
                await store.deposit(tenant, slot, cell, now=n + 1)
        else:
            results = await store.deposit_many(deposits, now=n)
            for result in results:
                if not isinstance(result, DepositResult):
                    raise result
            if n % 7 == 0:  # the same batch again: held already, each at its place
                again = await store.deposit_many(deposits, now=n + 1)
                for first, second in zip(results, again, strict=True):
                    assert isinstance(first, DepositResult)
                    assert isinstance(second, DepositResult) and not second.created, second
                    assert (second.leaf_index, second.batch_position) == (
                        first.leaf_index,
                        first.batch_position,
                    )
        lines = f"a {named}\n"
        first = results[0]
        assert isinstance(first, DepositResult)
        if first.leaf_index is not None and first.batch_position is not None:
            # What the relay would answer: a signed head covering the cells.
            signed, _ = await store.log_receipt(first.leaf_index, first.batch_position)
            size = int.from_bytes(signed[1:9], "big")
            if size > printed:
                printed = size
                lines = f"h {signed.hex()}\n" + lines
        sys.stdout.write(lines)
        sys.stdout.flush()

    running: set[asyncio.Task[None]] = set()
    while True:
        while len(running) < CONCURRENCY:
            running.add(asyncio.create_task(one(counter)))
            counter += 1
        done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))

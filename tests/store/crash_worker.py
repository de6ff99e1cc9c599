"""Deposits into a SQLite relay store without end, printing each acknowledged slot.

Run by ``test_crash.py``, which SIGKILLs this process mid-flight and checks that
every slot printed here (acknowledged) survived. Usage: ``crash_worker.py DB SEED``.
A slot is printed only after ``deposit`` returned, i.e. after its commit. Each
signed head handed out with a deposit's receipt is printed too (``h <hex>``),
whenever it is larger than the last one printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from backchannel.store.sqlite import SQLiteRelayStore
from helpers import cell_for_slot  # run as a script from tests/store

CONCURRENCY = 64


async def main(path: str, seed: str) -> None:
    store = SQLiteRelayStore(path)
    await store.open()
    await store.create_tenant("crash", b"\x00" * 32, 10_000_000, now=0)
    print("ready", flush=True)
    counter = 0
    printed = -1

    async def one(n: int) -> None:
        nonlocal printed
        slot = hashlib.sha256(f"{seed}:{n}".encode()).digest()
        result = await store.deposit("crash", slot, cell_for_slot(slot), now=n)
        if n % 7 == 0:  # an idempotent retry must never make a second copy
            await store.deposit("crash", slot, cell_for_slot(slot), now=n + 1)
        lines = slot.hex() + "\n"
        if result.leaf_index is not None and result.batch_position is not None:
            # What the relay would answer: a signed head covering the cell.
            signed, _ = await store.log_receipt(result.leaf_index, result.batch_position)
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
    asyncio.run(main(sys.argv[1], sys.argv[2]))

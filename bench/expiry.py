"""What expiry does to the deposits that arrive while it runs.

For each backend (SQLite; PostgreSQL when reachable) the bench fills a store
with ``old`` cells, deposited and acknowledged the way devices do (so they
are spent slots, the rows expiry deletes), then times two windows of the
same open-loop stream of new deposits (``rate`` per second, each one awaited
on its own task, latency counted from its scheduled start so a stall shows
up in every deposit it delays):

- ``quiet``: the old cells are not yet past the retention; nothing expires.
- ``expiring``: the clock has passed the retention; ``store.expire`` runs
  from the window's start, deleting every old cell while the deposits go on.

Same store, same database size, same stream, side by side: ``p99_ratio`` is
the expiring window's p99 over the quiet one's (1.0: expiry costs the
depositors nothing). ``expire_s`` is how long expiry took to remove them all
while deposits went on; it must stay far below a minute (the relay's expiry
interval), or expiry falls behind the deposits it has to remove.

Run: ``python -m bench.expiry [--quick]`` (full: 30,000 old cells, a
minute of the soak's load; quick: 10,000). PostgreSQL from
``BACKCHANNEL_BENCH_PG_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

try:
    import backchannel  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from backchannel.errors import BackchannelError
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store import pg_scratch
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

PG_DSN = os.environ.get("BACKCHANNEL_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TENANT = "bench"
RETENTION = 3600
T0 = 1_000_000
#: The soak's load: 1,000 channels, one round every 2 s.
RATE = 500
WINDOW_S = 8.0
_POOL = [os.urandom(CELL_SIZE) for _ in range(64)]  # ciphertext does not compress


def _slot(tag: bytes, i: int) -> bytes:
    return hashlib.blake2b(tag + i.to_bytes(8, "big"), digest_size=32).digest()


async def _fill(store: RelayStore, old: int) -> None:
    """``old`` cells deposited at T0 and acknowledged, 64 depositors at a time."""
    await store.create_tenant(TENANT, b"\x00" * 32, 10**9, now=T0)
    todo = iter(range(old))

    async def depositor() -> None:
        for i in todo:
            await store.deposit(TENANT, _slot(b"old", i), _POOL[i % 64], now=T0)

    await asyncio.gather(*(depositor() for _ in range(64)))
    for start in range(0, old, 512):
        slots = [_slot(b"old", i) for i in range(start, min(old, start + 512))]
        await store.ack(TENANT, slots, now=T0)


async def _window(store: RelayStore, now: int, tag: bytes) -> list[float]:
    """Latencies (ms) of an open-loop stream of deposits at ``RATE`` per second."""
    latencies: list[float] = []
    count = int(RATE * WINDOW_S)
    start = time.perf_counter()

    async def one(i: int, due: float) -> None:
        await store.deposit(TENANT, _slot(tag, i), _POOL[i % 64], now=now)
        latencies.append((time.perf_counter() - due) * 1000)

    tasks = []
    for i in range(count):
        due = start + i / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "p50_ms": round(cuts[49], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(latencies), 2),
    }


async def _measure(store: RelayStore, old: int) -> dict[str, Any]:
    """One pair of windows on a fresh store: quiet, then expiring."""
    await _fill(store, old)
    quiet = await _window(store, T0 + 10, b"quiet")
    late = T0 + RETENTION + 3600
    began = time.perf_counter()
    expired: list[int] = []
    took: list[float] = []

    async def expire() -> None:
        expired.append(await store.expire(late, RETENTION))
        took.append(time.perf_counter() - began)

    expiry = asyncio.create_task(expire())
    expiring = await _window(store, late, b"expiring")
    await expiry
    left = await store.count_cells(TENANT)
    q, e = _summary(quiet), _summary(expiring)
    return {
        "old": old,
        "quiet": q,
        "expiring": e,
        "p99_ratio": round(e["p99_ms"] / q["p99_ms"], 2),
        "expire_s": round(took[0], 2),
        # Expiry removes the old cells and the quiet window's (past the
        # retention too); every cell of the expiring window must be left.
        "cells_left": left,
        "cells_left_expected": int(RATE * WINDOW_S),
    }


async def _sqlite(old: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bc-expiry-") as tmp:
        store = SQLiteRelayStore(Path(tmp) / "relay.db")
        await store.open()
        try:
            return await _measure(store, old)
        finally:
            await store.close()


async def _pg(old: int) -> dict[str, Any]:
    with pg_scratch.scratch_schema(PG_DSN, f"bc_expiry_{os.getpid()}_") as dsn:
        store = PostgresRelayStore(dsn)
        await store.open()
        try:
            return await _measure(store, old)
        finally:
            await store.close()


def _median_of(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pair with the median p99 ratio, and every pair's ratio beside it."""
    ranked = sorted(pairs, key=lambda p: p["p99_ratio"])
    return {**ranked[len(ranked) // 2], "p99_ratios": [p["p99_ratio"] for p in pairs]}


def run(quick: bool, pairs: int = 3) -> dict[str, Any]:
    """Measure both backends, ``pairs`` times each on a fresh store, and keep
    the median pair; see the module docstring for the keys."""
    old = 10_000 if quick else 30_000

    async def repeated(bench: Callable[[int], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        try:
            return _median_of([await bench(old) for _ in range(pairs)])
        except BackchannelError as exc:  # one backend failing keeps the other's figures
            return {"skipped": f"failed: {exc}"}

    async def both() -> dict[str, Any]:
        reason = pg_scratch.unreachable_reason(PG_DSN)
        return {
            "rate_per_s": RATE,
            "window_s": WINDOW_S,
            "pairs": pairs,
            "sqlite": await repeated(_sqlite),
            "postgres": {"skipped": reason} if reason else await repeated(_pg),
        }

    return asyncio.run(both())


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"expiry under load: {result['rate_per_s']} deposits/s for {result['window_s']} s,"
        " a quiet window then one with every old cell expiring;"
        f" median of {result['pairs']} pairs by p99 ratio",
        f"{'backend':<10}{'old':>7}  {'quiet p50/p99/max ms':<22}{'expiring p50/p99/max ms':<25}"
        f"{'p99 ratio':>10}{'expire s':>10}  ratios",
    ]
    for backend in ("sqlite", "postgres"):
        row = result[backend]
        if "skipped" in row:
            lines.append(f"{backend:<10}skipped: {row['skipped']}")
            continue
        q, e = row["quiet"], row["expiring"]
        quiet = f"{q['p50_ms']:.2f}/{q['p99_ms']:.2f}/{q['max_ms']:.1f}"
        expiring = f"{e['p50_ms']:.2f}/{e['p99_ms']:.2f}/{e['max_ms']:.1f}"
        lines.append(
            f"{backend:<10}{row['old']:>7}  {quiet:<22}{expiring:<25}"
            f"{row['p99_ratio']:>10.2f}{row['expire_s']:>10.2f}  {row['p99_ratios']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = run(quick="--quick" in sys.argv[1:])
    if "--json" in sys.argv[1:]:
        print(json.dumps(outcome, indent=2))
    else:
        print(_table(outcome))

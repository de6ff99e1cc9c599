"""The relay log's cost: deposit throughput with and without it, proof sizes and times.

1. **Deposits.** Durable deposits per second through the SQLite store API
   (``SQLiteRelayStore.deposit``, 16 concurrent depositors, 4 KiB cells), with
   the log and with ``log=False``, in the same run: off, on, off, on, ...
   (five pairs; quick: three), so both of a pair see the same disk and the
   same noise. ``ratio`` is the median of the pairs' ratios (with log /
   without; the goal is >= 0.9), ``ratio_runs`` all of them, and
   ``c16_log`` / ``c16_no_log`` the pair whose ratio is the median.
2. **Proofs.** Inclusion and consistency proof sizes (bytes) and generation
   times (median microseconds over a few hundred proofs, through the store's
   own ``inclusion_proof`` / ``consistency_proof``, i.e. one read transaction on
   the reader pool each) at 10^6 and 10^7 leaves (quick: 10^5 and 10^6). The
   log is not grown by 10^7 real deposits: a fresh relay database gets
   ``log_leaves`` rows (leaf and nodes) bulk-inserted, computed with the real RFC
   9162 hashing from synthetic leaves (``LogLeaf(i, 1000, sha256(i), 60 i)``),
   and ``log_head`` set to the matching frontier, so the store serves real,
   verifiable proofs (a sample is verified). ``bytes_per_leaf`` is the
   database file size divided by the leaves (nodes and leaves, page overhead
   included): what the log keeps forever per committed batch. Nodes come
   from SQLite (OS page cache warm); the relay's in-process node cache is not
   used on this path.

Run: ``python -m bench.log [--quick]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import backchannel  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from backchannel.protocol.constants import CELL_SIZE
from backchannel.protocol.merkle import (
    Frontier,
    TreeHead,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from backchannel.protocol.misbehaviour import LogLeaf
from backchannel.store.sqlite import SQLiteRelayStore

CONCURRENCY = 16
TENANT = "bench"
#: (deposits per phase, rounds of off/on)
DEPOSITS = {True: (3000, 3), False: (15000, 5)}
SIZES = {True: (10**5, 10**6), False: (10**6, 10**7)}
PROOFS = {True: 200, False: 400}
_POOL = [os.urandom(CELL_SIZE) for _ in range(64)]
_INSERT_CHUNK = 200_000


# -- 1. deposits with and without the log --------------------------------------------


async def _deposits(directory: Path, log: bool, n: int, salt: bytes) -> dict[str, Any]:
    store = SQLiteRelayStore(directory / f"relay-{int(log)}-{salt.hex()}.db", log=log)
    await store.open()
    try:
        await store.create_tenant(TENANT, b"\x00" * 32, 10 * n, now=0)
        counter = iter(range(n))
        latencies: list[float] = []

        async def worker() -> None:
            for i in counter:
                slot = hashlib.sha256(salt + i.to_bytes(8, "big")).digest()
                began = time.perf_counter()
                await store.deposit(TENANT, slot, _POOL[i % 64], now=60)
                latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        stats = store.stats
        size = (await store.log_head()).size if log else 0
    finally:
        await store.close()
    latencies.sort()
    return {
        "deposits_per_s": n / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "writes_per_commit": stats.writes / max(1, stats.transactions),
        "leaves": size,
    }


async def _bench_deposits(quick: bool) -> dict[str, Any]:
    n, rounds = DEPOSITS[quick]
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="bc-bench-log-") as tmp:
        for r in range(rounds):
            salt = os.urandom(4) + bytes([r])
            off = await _deposits(Path(tmp), False, n, salt)
            on = await _deposits(Path(tmp), True, n, salt)
            pairs.append((on, off))
    ratios = [on["deposits_per_s"] / off["deposits_per_s"] for on, off in pairs]
    # The pair whose ratio is the median (the upper one of an even count).
    middle = sorted(range(len(pairs)), key=lambda i: ratios[i])[len(pairs) // 2]
    on, off = pairs[middle]
    return {
        "c16_log": on,
        "c16_no_log": off,
        "ratio": statistics.median(ratios),
        "ratio_runs": [round(x, 3) for x in ratios],
        "cells_per_leaf": n / on["leaves"] if on["leaves"] else None,
    }


# -- 2. proofs from a bulk-built log -----------------------------------------------------


def _build(db: Path, n: int) -> Frontier:
    """Fill ``db``'s log tables with a real tree of ``n`` synthetic leaves."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    stack: list[bytes] = []  # the frontier, largest first
    leaves: list[tuple[int, bytes, int, bytes]] = []
    sha = hashlib.sha256

    def flush() -> None:
        conn.executemany(
            "INSERT INTO log_leaves (leaf_index, leaf, time, nodes) VALUES (?, ?, ?, ?)", leaves
        )
        leaves.clear()

    conn.execute("BEGIN")
    for i in range(n):
        leaf = LogLeaf(i, 1000, sha(i.to_bytes(8, "big")).digest(), 60 * i).encode()
        h = leaf_hash(leaf)
        nodes = [h]  # the subtrees leaf i completes, level 0 first, as the store keeps them
        j = i
        while j & 1:
            h = node_hash(stack.pop(), h)
            j >>= 1
            nodes.append(h)
        stack.append(h)
        leaves.append((i, leaf, 60 * i, b"".join(nodes)))
        if len(leaves) >= _INSERT_CHUNK:
            flush()
    flush()
    frontier = Frontier(n, tuple(stack))
    conn.execute(
        "UPDATE log_head SET size = ?, frontier = ?, time = ? WHERE id = 1",
        (n, b"".join(stack), 60 * (n - 1)),
    )
    conn.execute("COMMIT")
    conn.close()
    return frontier


async def _bench_proofs(n: int, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bc-bench-log-") as tmp:
        db = Path(tmp) / "relay.db"
        store = SQLiteRelayStore(db)
        await store.open()  # creates the schema
        await store.close()
        began = time.perf_counter()
        frontier = _build(db, n)
        build_s = time.perf_counter() - began
        bytes_per_leaf = db.stat().st_size / n
        head = TreeHead(n, frontier.root(), 60 * (n - 1))
        store = SQLiteRelayStore(db)
        await store.open()
        try:
            assert (await store.log_head()).root == head.root
            rng = random.Random(n)
            inc_t: list[float] = []
            inc_len: list[int] = []
            for k in range(count):
                index = rng.randrange(n)
                t0 = time.perf_counter()
                proof = await store.inclusion_proof(index, n)
                inc_t.append(time.perf_counter() - t0)
                inc_len.append(len(proof))
                if k < 20:
                    leaf = await store.log_leaf(index)
                    verify_inclusion(leaf_hash(leaf), index, n, proof, head.root)
            con_t: list[float] = []
            con_len: list[int] = []
            for k in range(count):
                old = rng.randrange(1, n)
                t0 = time.perf_counter()
                proof = await store.consistency_proof(old, n)
                con_t.append(time.perf_counter() - t0)
                con_len.append(len(proof))
                if k < 5:
                    old_root = await _root(store, old)
                    verify_consistency(old, n, old_root, head.root, proof)
        finally:
            await store.close()
    return {
        "leaves": n,
        "build_s": build_s,
        "bytes_per_leaf": bytes_per_leaf,
        "inclusion_bytes_median": 32 * int(statistics.median(inc_len)),
        "inclusion_bytes_max": 32 * max(inc_len),
        "inclusion_us_median": statistics.median(inc_t) * 1e6,
        "consistency_bytes_median": 32 * int(statistics.median(con_len)),
        "consistency_bytes_max": 32 * max(con_len),
        "consistency_us_median": statistics.median(con_t) * 1e6,
    }


async def _root(store: SQLiteRelayStore, size: int) -> bytes:
    """The root of an older size, recomputed from the leaves' nodes (for verification)."""
    from backchannel.protocol import merkle
    from backchannel.store import _log_proofs
    from backchannel.store._sqlite_log import _nodes

    def work(conn: sqlite3.Connection) -> bytes:
        wanted = _log_proofs.plan_nodes(size, [lambda r: merkle.tree_root(r, size)])
        return merkle.tree_root(_nodes(conn, size, wanted), size)

    return await store._read(work)


def run(quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"deposits": asyncio.run(_bench_deposits(quick))}
    for n in SIZES[quick]:
        result[f"proofs_{n}"] = asyncio.run(_bench_proofs(n, PROOFS[quick]))
    return result


def _table(result: dict[str, Any]) -> str:
    d = result["deposits"]
    lines = [
        "SQLite store API, 16 concurrent durable deposits (the pair of the median ratio):",
        f"  {'':<10}{'dep/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'writes/commit':>15}",
    ]
    for name in ("c16_no_log", "c16_log"):
        r = d[name]
        lines.append(
            f"  {name:<10}{r['deposits_per_s']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['writes_per_commit']:>15.1f}"
        )
    lines.append(
        f"  ratio log/no-log: median {d['ratio']:.3f} of {d['ratio_runs']};"
        f" cells per leaf: {d['cells_per_leaf']:.1f}"
    )
    lines.append("")
    lines.append(
        f"  {'leaves':>10}{'B/leaf':>8}{'incl B':>8}{'incl µs':>9}{'cons B':>8}{'cons µs':>9}"
        f"{'build s':>9}"
    )
    for key, r in result.items():
        if not key.startswith("proofs_"):
            continue
        lines.append(
            f"  {r['leaves']:>10}{r['bytes_per_leaf']:>8.0f}{r['inclusion_bytes_median']:>8}"
            f"{r['inclusion_us_median']:>9.0f}{r['consistency_bytes_median']:>8}"
            f"{r['consistency_us_median']:>9.0f}{r['build_s']:>9.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    print(_table(run(quick="--quick" in sys.argv[1:])))


if __name__ == "__main__":
    main()

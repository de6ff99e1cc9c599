"""Durable deposit throughput of the relay stores, small database vs large.

For each backend (SQLite; PostgreSQL when reachable) the bench bulk-loads
``small_n`` and then ``large_n`` cells (one big transaction each, not timed),
then times ``deposits`` new durable deposits through the store API with 16
concurrent depositors. Full mode: 10^4 vs 10^6 stored cells (about 4 GB of
cells per backend, minutes). Quick mode: 10^3 vs 10^5.

``ratio`` is ``deposits_per_s_large / deposits_per_s_small``: 1.0 means the
store does not slow down as it fills. ``rss_mb_large`` is this process's
resident memory right after the large run.

Run: ``python bench/store_scale.py [--quick]`` (PostgreSQL from
``BACKCHANNEL_BENCH_PG_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``;
a random schema is created and dropped).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import backchannel  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import psycopg

from backchannel.errors import BackchannelError
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store import pg_scratch
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

PG_DSN = os.environ.get("BACKCHANNEL_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 16
TENANT = "bench"
#: Stop timing deposits after this long even if not all were made.
DEPOSIT_TIME_LIMIT_S = 30.0
_POOL = [os.urandom(CELL_SIZE) for _ in range(64)]  # ciphertext does not compress
_POOL_IDS = [hashlib.sha256(c).digest() for c in _POOL]


def _rows(n: int, salt: bytes) -> Iterator[tuple[str, bytes, bytes, bytes, int]]:
    for i in range(n):
        slot = hashlib.blake2b(salt + i.to_bytes(8, "big"), digest_size=32).digest()
        yield TENANT, slot, _POOL_IDS[i % 64], _POOL[i % 64], 0


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, in KiB on Linux


async def _time_deposits(store: RelayStore, count: int) -> float:
    """Deposits per second for ``count`` new cells, ``CONCURRENCY`` at a time."""
    salt = secrets.token_bytes(8)
    next_index = 0
    done = 0
    deadline = time.perf_counter() + DEPOSIT_TIME_LIMIT_S

    async def depositor() -> None:
        nonlocal next_index, done
        while next_index < count and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            slot = hashlib.blake2b(b"new" + salt + i.to_bytes(8, "big"), digest_size=32).digest()
            await store.deposit(TENANT, slot, _POOL[i % 64], now=1)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(depositor() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - start)


# -- SQLite ----------------------------------------------------------------


async def _sqlite_at(n: int, deposits: int, workdir: Path) -> tuple[float, float]:
    path = workdir / f"scale-{n}.db"
    store = SQLiteRelayStore(path)
    await store.open()
    await store.create_tenant(TENANT, b"\x00" * 32, 10**9, now=0)
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at)"
            " VALUES (?, ?, ?, ?, ?)",
            _rows(n, b"sqlite"),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    store = SQLiteRelayStore(path)
    await store.open()
    try:
        assert await store.count_cells(TENANT) == n
        rate = await _time_deposits(store, deposits)
        return rate, _rss_mb()  # RSS with the store still open
    finally:
        await store.close()


async def _bench_sqlite(small_n: int, large_n: int, deposits: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bc-store-scale-") as tmp:
        small, _ = await _sqlite_at(small_n, deposits, Path(tmp))
        large, rss = await _sqlite_at(large_n, deposits, Path(tmp))
    return _result(small_n, large_n, small, large, rss)


# -- PostgreSQL --------------------------------------------------------------


def _pg_reason() -> str | None:
    return pg_scratch.unreachable_reason(PG_DSN)


async def _pg_at(n: int, deposits: int) -> tuple[float, float]:
    with pg_scratch.scratch_schema(PG_DSN, f"bc_bench_{os.getpid()}_") as dsn:
        store = PostgresRelayStore(dsn)
        await store.open()
        await store.create_tenant(TENANT, b"\x00" * 32, 10**9, now=0)
        await store.close()
        with psycopg.connect(dsn) as conn:  # one transaction
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY cells (tenant_id, slot, cell_id, cell, deposited_at) FROM STDIN"
                ) as copy,
            ):
                for row in _rows(n, b"postgres"):
                    copy.write_row(row)
            conn.commit()
            conn.execute("ANALYZE cells")
            conn.commit()
        store = PostgresRelayStore(dsn)
        await store.open()
        try:
            assert await store.count_cells(TENANT) == n
            rate = await _time_deposits(store, deposits)
            return rate, _rss_mb()  # RSS with the store still open
        finally:
            await store.close()


async def _bench_pg(small_n: int, large_n: int, deposits: int) -> dict[str, Any]:
    reason = _pg_reason()
    if reason is not None:
        return {"skipped": reason}
    small, _ = await _pg_at(small_n, deposits)
    large, rss = await _pg_at(large_n, deposits)
    return _result(small_n, large_n, small, large, rss)


# -- entry points --------------------------------------------------------------


def _result(small_n: int, large_n: int, small: float, large: float, rss: float) -> dict[str, Any]:
    return {
        "small_n": small_n,
        "large_n": large_n,
        "deposits_per_s_small": round(small, 1),
        "deposits_per_s_large": round(large, 1),
        "ratio": round(large / small, 3) if small else 0.0,
        "rss_mb_large": round(rss, 1),
    }


def run(quick: bool) -> dict[str, Any]:
    """Measure both backends; see the module docstring for the keys."""
    small_n, large_n = (10**3, 10**5) if quick else (10**4, 10**6)
    deposits = 2000 if quick else 10_000

    async def guarded(bench: Any) -> dict[str, Any]:
        # One backend failing must not lose the other's figures.
        try:
            result: dict[str, Any] = await bench(small_n, large_n, deposits)
        except BackchannelError as exc:
            return {"skipped": f"failed: {exc}"}
        return result

    async def both() -> dict[str, Any]:
        return {
            "mode": "quick (10^3 vs 10^5 stored)" if quick else "full (10^4 vs 10^6 stored)",
            "concurrency": CONCURRENCY,
            "deposits_timed": deposits,
            "sqlite": await guarded(_bench_sqlite),
            "postgres": await guarded(_bench_pg),
        }

    return asyncio.run(both())


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"relay store scale: {result['mode']}, {result['deposits_timed']} durable deposits, "
        f"concurrency {result['concurrency']}",
        f"{'backend':<10}{'small_n':>10}{'large_n':>10}{'dep/s small':>14}"
        f"{'dep/s large':>14}{'ratio':>8}{'RSS MB':>9}",
    ]
    for backend in ("sqlite", "postgres"):
        row = result[backend]
        if "skipped" in row:
            lines.append(f"{backend:<10}skipped: {row['skipped']}")
            continue
        lines.append(
            f"{backend:<10}{row['small_n']:>10}{row['large_n']:>10}"
            f"{row['deposits_per_s_small']:>14.1f}{row['deposits_per_s_large']:>14.1f}"
            f"{row['ratio']:>8.3f}{row['rss_mb_large']:>9.1f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(_table(run(quick="--quick" in sys.argv[1:])))

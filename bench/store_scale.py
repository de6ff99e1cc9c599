"""Durable deposit throughput and memory of the relay stores as they fill.

For each backend (SQLite; PostgreSQL when reachable) the bench bulk-loads one
store per level (full: 10^4, 10^6 and 10^7 cells, about 4 and 40 GB of cells;
quick: 10^3 and 10^5), untimed, then times ``deposits`` new durable deposits
through the store API with 16 concurrent depositors in each store, in turn:
10^4, 10^6, 10^7, then again, five times (quick: three). Each timing runs in a
fresh process that opens the store as a relay does, so its resident memory
(RSS) is what a relay holding that store needs, not what the bench's own
earlier work left behind; after timing it deletes the cells it added
(untimed), so every level keeps its size.

Figures per backend: for each level the median rate and RSS of its runs; the
*pairwise* ratios (the large store's rate over the small one's in the same
round, both seeing the same disk and the same noise) and their median, which
is what the goals are judged on (``ratio``, ``ratio_huge``: 10^6 and 10^7
against 10^4); ``rss_ratio_huge`` is the RSS at 10^7 over that at 10^4.

The fill writes once: SQLite's fill connection turns its journal off (the
store puts WAL back when it opens the file), PostgreSQL's uses binary ``COPY``
in transactions of ``PG_FILL_BATCH`` rows with a ``CHECKPOINT`` after each, so
neither its WAL nor the cells trigger's transition table grows with the level.
One backend's levels are on disk at once (SQLite about 50 GB with 10^7,
PostgreSQL about 65 GB); a level the free disk cannot hold is left
out, with the reason in ``levels_left_out``, rather than run the disk (and a
database server) full; a backend whose fill fails reports why and the other's
figures stand.

Run: ``python -m bench.store_scale [--quick] [--levels 4,6,7] [--repeats 5]
[--backend sqlite|postgres]``
(PostgreSQL from ``BACKCHANNEL_BENCH_PG_DSN``, default
``postgresql://postgres@127.0.0.1:5432/test``; a random schema per level is
created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import resource
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
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

REPO = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("BACKCHANNEL_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 16
TENANT = "bench"
#: Cells stored before timing, per mode; the first level is the one the others are divided by.
LEVELS = {True: (10**3, 10**5), False: (10**4, 10**6, 10**7)}
#: Rounds of timings (one per level each), per mode: the ratios are medians over them.
REPEATS = {True: 3, False: 5}
DEPOSITS = {True: 2000, False: 10_000}
#: Disk a stored cell needs while its store is filled, with room to spare: SQLite
#: kept 10^7 + 1.01 x 10^6 cells in 49 GB. PostgreSQL (measured 2026-12-06 at
#: 10^6 cells): the cells table takes 5,747 B a cell with TOAST and indexes (a
#: 4 KiB cell is three TOAST chunks, two of 2 KB at four a page: 5,530 B), and
#: its fill, in batches, grew the data directory by 6.2 GB at its peak. In one
#: COPY it grew it by 10.5 GB: the cells trigger's transition table spilled
#: every row to a temporary file (4.2 GB), which at 10^7 ran a 77 GB disk full.
#: With FILL_RESERVE, 6,900 B a cell (+20%) admits a full run (11.01 x 10^6
#: cells) only with 78 GB free, and its peak is about 66 GB (cells, the timed
#: deposits' dead rows, WAL, one batch's transition table): 12 GB to spare.
BYTES_PER_CELL = {"sqlite": 5_000, "pg": 6_900}
#: Disk a fill holds only while it runs, besides its cells: PostgreSQL's WAL
#: (up to about max_wal_size, 1.2 GB measured) and one batch's transition table.
FILL_RESERVE = {"sqlite": 0, "pg": 2 * 10**9}
#: Rows per PostgreSQL fill transaction (its transition table: 0.42 GB on disk).
PG_FILL_BATCH = 100_000
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


# -- one timing, in a fresh process -------------------------------------------------


def _new_slots(count: int) -> list[bytes]:
    salt = secrets.token_bytes(8)
    return [
        hashlib.blake2b(b"new" + salt + i.to_bytes(8, "big"), digest_size=32).digest()
        for i in range(count)
    ]


async def _time_deposits(store: RelayStore, slots: Sequence[bytes]) -> tuple[float, int]:
    """Deposits per second into ``slots``, ``CONCURRENCY`` at a time; and how many were made."""
    next_index = 0
    done = 0
    deadline = time.perf_counter() + DEPOSIT_TIME_LIMIT_S

    async def depositor() -> None:
        nonlocal next_index, done
        while next_index < len(slots) and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            await store.deposit(TENANT, slots[i], _POOL[i % 64], now=1)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(depositor() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - start), done


def _open_store(backend: str, target: str) -> RelayStore:
    if backend == "sqlite":
        return SQLiteRelayStore(Path(target))
    return PostgresRelayStore(target)


async def _timing(backend: str, target: str, n: int, deposits: int) -> dict[str, Any]:
    """Open the store holding ``n`` cells, time the deposits, put the store back at ``n``."""
    store = _open_store(backend, target)
    await store.open()
    slots = _new_slots(deposits)
    try:
        stored = await store.count_cells(TENANT)
        if stored != n:
            raise RuntimeError(f"{backend} store holds {stored} cells, not {n}")
        rate, made = await _time_deposits(store, slots)
        rss = _rss_mb()  # with the store open and warm, as a relay holds it
    finally:
        await store.close()
    _delete(backend, target, slots[:made])
    return {"deposits_per_s": rate, "rss_mb": rss}


def _delete(backend: str, target: str, slots: Sequence[bytes]) -> None:
    """Remove the timed deposits' cells (untimed), so the level keeps its size."""
    rows = [(TENANT, s) for s in slots]
    if backend == "sqlite":
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM cells WHERE tenant_id = ? AND slot = ?", rows)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    with psycopg.connect(target) as pg, pg.cursor() as cur:
        cur.executemany("DELETE FROM cells WHERE tenant_id = %s AND slot = %s", rows)


def _child(backend: str, target: str, n: int, deposits: int) -> dict[str, Any]:
    """One timing in a process of its own (see :func:`_timing`)."""
    spec = json.dumps({"backend": backend, "target": target, "n": n, "deposits": deposits})
    out = subprocess.run(
        [sys.executable, "-m", "bench.store_scale", "--child", spec],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEPOSIT_TIME_LIMIT_S + 600,
        check=False,
    )
    if out.returncode != 0:
        raise BackchannelError(f"a timing at {n} cells failed: {out.stderr.strip()[-400:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- filling a store ----------------------------------------------------------------


async def _create(store: RelayStore) -> None:
    await store.open()
    try:
        await store.create_tenant(TENANT, b"\x00" * 32, 10**9, now=0)
    finally:
        await store.close()


async def _fill_sqlite(workdir: Path, n: int) -> str:
    path = workdir / f"scale-{n}.db"
    await _create(SQLiteRelayStore(path))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # One write of every page: no journal and no sync for the (untimed)
        # fill; the store turns WAL and full sync back on when it opens.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at)"
            " VALUES (?, ?, ?, ?, ?)",
            _rows(n, b"sqlite" + n.to_bytes(8, "big")),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return str(path)


async def _fill_pg(dsn: str, n: int) -> str:
    await _create(PostgresRelayStore(dsn))
    rows = _rows(n, b"postgres" + n.to_bytes(8, "big"))
    checkpoint = True
    with psycopg.connect(dsn, autocommit=True) as conn:
        # COPY in transactions of PG_FILL_BATCH rows, not one: the cells trigger's
        # transition table keeps every row of a statement (to disk) until it ends,
        # and a checkpoint after each lets the server recycle that batch's WAL.
        for _ in range(0, n, PG_FILL_BATCH):
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    "COPY cells (tenant_id, slot, cell_id, cell, deposited_at)"
                    " FROM STDIN (FORMAT BINARY)"  # no hex text of each 4 KiB cell
                ) as copy,
            ):
                copy.set_types(["text", "bytea", "bytea", "bytea", "int8"])
                for row in itertools.islice(rows, PG_FILL_BATCH):
                    copy.write_row(row)
            if checkpoint:
                try:
                    conn.execute("CHECKPOINT")
                except psycopg.errors.InsufficientPrivilege:
                    # Neither superuser nor pg_checkpoint: the server's own
                    # checkpoints (max_wal_size) still bound the WAL.
                    checkpoint = False
        conn.execute("ANALYZE cells")
    return dsn


# -- the rounds ---------------------------------------------------------------------


def summarise(levels: Sequence[int], runs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per level and of the pairwise ratios against the first level."""
    base = levels[0]
    out: dict[str, Any] = {"levels": {}}
    for n in levels:
        rates = [r["deposits_per_s"] for r in runs[n]]
        out["levels"][str(n)] = {
            "deposits_per_s": round(statistics.median(rates), 1),
            "deposits_per_s_runs": [round(x, 1) for x in rates],
            "rss_mb": round(statistics.median(r["rss_mb"] for r in runs[n]), 1),
        }
    named = dict(zip(("small", "large", "huge"), levels, strict=False))
    for name, n in named.items():
        level = out["levels"][str(n)]
        out[f"{name}_n"] = n
        out[f"deposits_per_s_{name}"] = level["deposits_per_s"]
        out[f"rss_mb_{name}"] = level["rss_mb"]
        if n == base:
            continue
        pairs = [
            b["deposits_per_s"] / a["deposits_per_s"]
            for a, b in zip(runs[base], runs[n], strict=True)
            if a["deposits_per_s"] > 0
        ]
        key = "ratio" if name == "large" else f"ratio_{name}"
        out[key] = round(statistics.median(pairs), 3) if pairs else 0.0
        out[f"{key}_runs"] = [round(p, 3) for p in pairs]
        out[f"rss_ratio_{name}"] = (
            round(level["rss_mb"] / out["rss_mb_small"], 3) if out["rss_mb_small"] else 0.0
        )
    return out


def _rounds(backend: str, targets: dict[int, str], deposits: int, repeats: int) -> dict[str, Any]:
    levels = sorted(targets)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in levels}
    for _ in range(repeats):
        for n in levels:
            runs[n].append(_child(backend, targets[n], n, deposits))
    return summarise(levels, runs)


def room(
    levels: Sequence[int], per_cell: int, free: int, reserve: int = 0
) -> tuple[list[int], dict[str, str]]:
    """The levels a disk with ``free`` bytes holds all at once (smallest first),
    besides ``reserve`` bytes a fill holds while it runs, and why the others are
    left out: a fill that runs a disk full can take the database server down with it."""
    kept: list[int] = []
    left: dict[str, str] = {}
    need = reserve
    for n in sorted(levels):
        need += n * per_cell
        if need > free:
            left[str(n)] = (
                f"needs about {need / 1e9:.0f} GB of free disk with the smaller levels, "
                f"{free / 1e9:.0f} GB free"
            )
        else:
            kept.append(n)
    return kept, left


def _with_room(result: dict[str, Any], left: dict[str, str]) -> dict[str, Any]:
    if left:
        result["levels_left_out"] = left
    return result


async def _bench_sqlite(levels: Sequence[int], deposits: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bc-store-scale-") as tmp:
        free = shutil.disk_usage(tmp).free
        kept, left = room(levels, BYTES_PER_CELL["sqlite"], free, FILL_RESERVE["sqlite"])
        if not kept:
            return {"skipped": f"no level fits the disk: {left}"}
        targets = {n: await _fill_sqlite(Path(tmp), n) for n in kept}
        return _with_room(_rounds("sqlite", targets, deposits, repeats), left)


def _pg_free() -> int | None:
    """Free bytes where the PostgreSQL server keeps its data, when it is on this machine."""
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        return shutil.disk_usage(row[0]).free if row else None
    except (psycopg.Error, OSError):
        return None  # not ours to see (another host, no rights): no check


async def _bench_pg(levels: Sequence[int], deposits: int, repeats: int) -> dict[str, Any]:
    reason = pg_scratch.unreachable_reason(PG_DSN)
    if reason is not None:
        return {"skipped": reason}
    free = _pg_free()
    kept, left = (
        (list(levels), {})
        if free is None
        else room(levels, BYTES_PER_CELL["pg"], free, FILL_RESERVE["pg"])
    )
    if not kept:
        return {"skipped": f"no level fits the disk: {left}"}
    with contextlib.ExitStack() as stack:
        targets = {}
        for n in kept:
            dsn = stack.enter_context(pg_scratch.scratch_schema(PG_DSN, f"bc_bench_{n}_"))
            targets[n] = await _fill_pg(dsn, n)
        return _with_room(_rounds("postgres", targets, deposits, repeats), left)


BACKENDS = ("sqlite", "postgres")


def run(
    quick: bool,
    levels: Sequence[int] | None = None,
    repeats: int | None = None,
    backends: Sequence[str] = BACKENDS,
) -> dict[str, Any]:
    """Measure the backends (both by default); see the module docstring for the keys."""
    chosen = tuple(levels or LEVELS[quick])
    rounds = repeats or REPEATS[quick]
    deposits = DEPOSITS[quick]

    async def guarded(bench: Any) -> dict[str, Any]:
        # One backend failing (a disk too small for 10^7, say) must not lose the other's figures.
        try:
            result: dict[str, Any] = await bench(chosen, deposits, rounds)
        except (BackchannelError, OSError, sqlite3.Error, psycopg.Error) as exc:
            return {"skipped": f"failed: {type(exc).__name__}: {str(exc)[:300]}"}
        return result

    async def both() -> dict[str, Any]:
        shown = " vs ".join(f"10^{len(str(n)) - 1}" for n in chosen)
        return {
            "mode": f"{'quick' if quick else 'full'} ({shown} stored)",
            "concurrency": CONCURRENCY,
            "deposits_timed": deposits,
            "repeats": rounds,
            "sqlite": (
                await guarded(_bench_sqlite) if "sqlite" in backends else {"skipped": "not chosen"}
            ),
            "postgres": (
                await guarded(_bench_pg) if "postgres" in backends else {"skipped": "not chosen"}
            ),
        }

    return asyncio.run(both())


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"relay store scale: {result['mode']}, {result['deposits_timed']} durable deposits, "
        f"concurrency {result['concurrency']}, medians of {result['repeats']} rounds",
        f"{'backend':<10}{'cells':>10}{'dep/s':>10}{'RSS MB':>9}  vs first: median [pairs]",
    ]
    for backend in ("sqlite", "postgres"):
        row = result[backend]
        if "skipped" in row:
            lines.append(f"{backend:<10}skipped: {row['skipped']}")
            continue
        for n, level in row["levels"].items():
            which = {row.get("large_n"): "ratio", row.get("huge_n"): "ratio_huge"}.get(int(n))
            ratio = f"  {row[which]:.3f} {row[which + '_runs']}" if which else "  -"
            lines.append(
                f"{backend:<10}{int(n):>10}{level['deposits_per_s']:>10.0f}"
                f"{level['rss_mb']:>9.1f}{ratio}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="10^3 vs 10^5 cells, three rounds")
    ap.add_argument("--levels", help="powers of ten of the stored cells, e.g. 4,6,7")
    ap.add_argument("--repeats", type=int, help="rounds of timings (default 5, quick 3)")
    ap.add_argument("--backend", choices=BACKENDS, action="append", help="only this one")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        got = asyncio.run(_timing(spec["backend"], spec["target"], spec["n"], spec["deposits"]))
        print(json.dumps(got))
        return
    levels = [10 ** int(x) for x in args.levels.split(",")] if args.levels else None
    result = run(args.quick, levels, args.repeats, args.backend or BACKENDS)
    print(_table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Space: acknowledged and expired cells give their space back, so the
database levels off under a steady load and shrinks back after a burst.

Each round deposits cells, acknowledges them all (as devices do once they
fetched them) and runs expiry, which removes the rows of the rounds before
(spent slots past the retention). SQLite files are measured after a
checkpoint, so the write-ahead log is folded in: the main file plus the log.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backchannel.store._sqlite_conn import APPLICATION_ID
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

from .helpers import CRED, cell, slot

#: Time between rounds; the retention lets each round's rows go at the next.
ROUND = 100
RETENTION = ROUND // 2
CELLS = 300
ROUNDS = 8


async def _round(store: RelayStore, k: int, cells: int) -> None:
    """Round ``k``: deposit, acknowledge everything, expire what is past the retention."""
    now = k * ROUND
    tag = k.to_bytes(4, "big")
    slots = [slot(n, tag) for n in range(cells)]
    results = await store.deposit_many(
        [("a", s, cell(n, tag)) for n, s in enumerate(slots)], now=now
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    for start in range(0, cells, 4096):
        assert await store.ack("a", slots[start : start + 4096], now) == len(
            slots[start : start + 4096]
        )
    await store.expire(now, RETENTION)


def _file(path: Path) -> tuple[int, int]:
    """(bytes on disk, free pages kept in the file), after a checkpoint."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0), free


def _auto_vacuum(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    finally:
        conn.close()


async def _opened(path: Path) -> SQLiteRelayStore:
    store = SQLiteRelayStore(path)
    await store.open()
    if await store.get_tenant("a") is None:
        await store.create_tenant("a", CRED, 1_000_000, now=0)
    return store


# -- SQLite ------------------------------------------------------------------


async def test_sqlite_new_file_gives_free_pages_back_on_request(tmp_path: Path) -> None:
    store = await _opened(tmp_path / "relay.db")
    await store.close()
    assert _auto_vacuum(tmp_path / "relay.db") == 2  # INCREMENTAL


async def test_sqlite_file_levels_off_under_a_steady_load(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = await _opened(path)
    sizes = []
    try:
        for k in range(1, ROUNDS + 1):
            await _round(store, k, CELLS)
            sizes.append(_file(path)[0])
    finally:
        await store.close()
    # From round 2 on the file holds one round's spent slots and the log's
    # leaves, as every later round does: it must not grow from there.
    assert max(sizes[2:]) <= sizes[1] * 1.1, sizes


async def test_sqlite_acknowledged_pages_wait_for_expiry_then_go(tmp_path: Path) -> None:
    """Deposits reuse the pages an ``ack`` frees; only expiry gives them back."""
    path = tmp_path / "relay.db"
    store = await _opened(path)
    try:
        tag = b"ack"
        slots = [slot(n, tag) for n in range(CELLS)]
        await store.deposit_many([("a", s, cell(n, tag)) for n, s in enumerate(slots)], now=1)
        await store.ack("a", slots, now=1)
        full, free = _file(path)
        assert free >= CELLS  # each cell's overflow page, kept for reuse
        assert await store.expire(2, RETENTION) == 0  # nothing is past the retention
        after, free = _file(path)
    finally:
        await store.close()
    assert free == 0
    assert after < full / 2


async def test_sqlite_file_shrinks_back_after_a_burst_expires(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = await _opened(path)
    try:
        for k in (1, 2):
            await _round(store, k, CELLS)
        steady, _ = _file(path)
        # A burst: ten rounds' worth at once. Its cells are acknowledged, but
        # its spent slots stay until the next round's expiry.
        await _round(store, 3, 10 * CELLS)
        burst, _ = _file(path)
        await _round(store, 4, CELLS)
        after, free = _file(path)
    finally:
        await store.close()
    assert burst > 3 * steady
    assert free == 0
    assert after <= steady * 1.1, (steady, burst, after)


async def test_sqlite_older_file_without_auto_vacuum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file made before ``auto_vacuum = INCREMENTAL`` keeps its free pages
    for reuse (expiry still works), and the relay says so when it opens it;
    the one-time step in docs/storage.md ("Space") converts it, and then
    expiry gives pages back."""
    path = tmp_path / "relay.db"
    with caplog.at_level(logging.WARNING, logger="backchannel.store.sqlite"):
        store = await _opened(path)
        await store.close()
    assert not caplog.records  # a new file gives space back: nothing to say
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")
    conn.close()
    assert _auto_vacuum(path) == 0

    with caplog.at_level(logging.WARNING, logger="backchannel.store.sqlite"):
        store = await _opened(path)
    assert any("one-time VACUUM" in r.getMessage() for r in caplog.records)
    caplog.clear()
    try:
        for k in (1, 2):
            await _round(store, k, CELLS)
        kept, free = _file(path)
        assert free >= CELLS  # reused by later deposits, never given back
    finally:
        await store.close()

    # The step, with the relay stopped.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert _auto_vacuum(path) == 2

    with caplog.at_level(logging.WARNING, logger="backchannel.store.sqlite"):
        store = await _opened(path)
    assert not caplog.records
    try:
        assert await store.count_cells("a") == 0
        await _round(store, 3, CELLS)
        after, free = _file(path)
    finally:
        await store.close()
    assert free == 0
    assert after < kept / 2


async def test_sqlite_log_leaves_give_back_their_members_space(tmp_path: Path) -> None:
    """A leaf stays for ever, its member hashes only until retention: once
    they are forgotten, a leaf of a large batch takes as little room as one
    of a single cell (its row, about 150 bytes), not the page its members
    filled."""
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path, cell_size=64)
    await store.open()
    leaves, per_batch = 200, 100
    try:
        await store.create_tenant("a", CRED, 1_000_000, now=0)
        for b in range(leaves):
            tag = b.to_bytes(4, "big")
            batch = [("a", slot(n, tag), slot(n, b"cell" + tag) * 2) for n in range(per_batch)]
            await store.deposit_many(batch, now=1)
        await store.expire(1 + ROUND, RETENTION)  # every cell, and every leaf's members
        assert await store.count_cells() == 0
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*), count(members) FROM log_leaves").fetchone() == (
            leaves,
            0,
        )
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()
    # The whole file, every other table included, per leaf.
    assert pages * page_size / leaves < 600


# -- PostgreSQL --------------------------------------------------------------


async def _vacuumed(conn: psycopg.AsyncConnection[Any]) -> None:
    """``VACUUM cells`` until no dead row version is left in it or its TOAST
    table (what autovacuum does in its own time). Another session's open
    snapshot can keep dead versions for a while: wait, then give up."""
    for _ in range(60):
        await conn.execute("VACUUM cells")
        cur = await conn.execute(
            "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_all_tables WHERE relid IN"
            " ('cells'::regclass, (SELECT reltoastrelid FROM pg_class"
            " WHERE oid = 'cells'::regclass))"
        )
        row = await cur.fetchone()
        if row is not None and int(row[0]) == 0:
            return
        await asyncio.sleep(0.5)
    pytest.skip("another session's open snapshot kept VACUUM from removing dead rows")


@pytest.mark.postgres
async def test_postgres_cells_level_off_once_vacuumed(pg_dsn: str) -> None:
    store = PostgresRelayStore(pg_dsn)
    await store.open()
    side = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
    sizes = []
    try:
        await store.create_tenant("a", CRED, 1_000_000, now=0)
        cur = await side.execute(
            "SELECT c.reloptions, t.reloptions FROM pg_class c"
            " JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.oid = 'cells'::regclass"
        )
        # No per-table setting: autovacuum treats cells like any table.
        assert await cur.fetchone() == (None, None)
        for k in range(1, ROUNDS + 1):
            await _round(store, k, CELLS)
            await _vacuumed(side)
            cur = await side.execute("SELECT pg_total_relation_size('cells')")
            row = await cur.fetchone()
            assert row is not None
            sizes.append(int(row[0]))
    finally:
        await side.close()
        await store.close()
    # Heap, TOAST (the cells' bytes) and indexes together: the later rounds
    # reuse the space the earlier ones freed.
    assert max(sizes[4:]) <= max(sizes[1:4]) * 1.1, sizes

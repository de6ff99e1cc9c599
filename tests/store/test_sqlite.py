"""SQLite-only behaviour: damaged files, a full disk, a held lock, the journal mode."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from backchannel.errors import StoreUnavailable
from backchannel.store.relay_store import DepositResult
from backchannel.store.sqlite import SQLiteRelayStore

from .helpers import CRED, cell, slot, ticking


async def _filled(path: Path, cells: int) -> None:
    store = SQLiteRelayStore(path)
    await store.open()
    await store.create_tenant("a", CRED, 10_000, now=0)
    await asyncio.gather(*(store.deposit("a", slot(n), cell(n), now=1) for n in range(cells)))
    await store.close()


def _damage(kind: str, good: bytes) -> bytes:
    if kind == "random bytes":
        return os.urandom(16384)
    if kind == "sqlite magic then garbage":
        return good[:16] + os.urandom(16384)
    if kind == "first page cut short":
        return good[:2000]
    if kind == "half written":
        return good[: len(good) // 2]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["random bytes", "sqlite magic then garbage", "first page cut short", "half written"],
)
async def test_damaged_file_is_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    good = tmp_path / "good.db"
    await _filled(good, 100)
    damaged = tmp_path / "damaged.db"
    content = _damage(kind, good.read_bytes())
    damaged.write_bytes(content)
    files = sorted(p.name for p in tmp_path.iterdir())

    store = SQLiteRelayStore(damaged)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    message = str(caught.value)
    assert "damaged" in message and "backup" in message
    assert "\n" not in message
    assert damaged.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # not even a key file
    with pytest.raises(StoreUnavailable):
        await store.deposit("a", slot(1), cell(1), now=1)


async def test_other_applications_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreUnavailable, match="another application"):
        await SQLiteRelayStore(path).open()
    assert path.read_bytes() == before


async def test_missing_directory_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="directory exists"):
        await SQLiteRelayStore(tmp_path / "absent" / "relay.db").open()


async def test_full_disk_acknowledges_only_what_is_stored(tmp_path: Path) -> None:
    """``max_db_bytes`` makes SQLite fail exactly as on a full disk (SQLITE_FULL)."""
    path = tmp_path / "relay.db"
    capped = SQLiteRelayStore(path, max_db_bytes=512 * 1024)
    await capped.open()
    await capped.create_tenant("a", CRED, 10_000, now=0)
    outcomes = await asyncio.gather(
        *(capped.deposit("a", slot(n), cell(n), now=1) for n in range(300)),
        return_exceptions=True,
    )
    acked = {n for n, o in enumerate(outcomes) if isinstance(o, DepositResult)}
    failures = [o for o in outcomes if not isinstance(o, DepositResult)]
    assert 0 < len(acked) < 300
    assert all(isinstance(o, StoreUnavailable) for o in failures)
    assert all("disk full" in str(o) and slot(0).hex() not in str(o) for o in failures)

    # Space freed by acks is reused: the store keeps working once there is room.
    freed = sorted(acked)[:10]
    assert await capped.ack("a", [slot(n) for n in freed], now=2) == 10
    acked -= set(freed)
    assert (await capped.deposit("a", slot(1000), cell(1000), now=3)).created
    acked.add(1000)
    await capped.close()

    reopened = SQLiteRelayStore(path)
    await reopened.open()
    try:
        everything = [*range(300), 1000]
        found = await reopened.fetch("a", [slot(n) for n in everything])
        assert found == {slot(n): cell(n) for n in acked}
        assert await reopened.count_cells("a") == len(acked)
    finally:
        await reopened.close()


async def test_held_lock_gives_store_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path, busy_timeout_ms=100)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 10, now=0)
        await store.deposit("a", slot(1), cell(1), now=1)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreUnavailable, match="locked by another process"):
                await store.deposit("a", slot(2), cell(2), now=2)
            # Readers are not blocked by a writer in WAL mode.
            assert await store.fetch("a", [slot(1), slot(2)]) == {slot(1): cell(1)}
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert (await store.deposit("a", slot(2), cell(2), now=3)).created
        assert await store.count_cells("a") == 2
    finally:
        await store.close()


async def test_database_uses_write_ahead_logging(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x42434852
    finally:
        conn.close()


async def test_counters_match_rows_after_mixed_work(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path)
    await store.open()
    await store.create_tenant("a", CRED, 100, now=0)
    await store.create_tenant("b", CRED, 100, now=0)
    await asyncio.gather(
        *(store.deposit("ab"[n % 2], slot(n), cell(n), now=n) for n in range(60)),
        store.ack("a", [slot(n) for n in range(0, 20, 2)], now=30),
        store.expire(now=40, retention_seconds=10),
    )
    total = await store.count_cells()
    await store.close()
    conn = sqlite3.connect(path)
    try:
        # Acknowledged slots stay as spent rows (no cell bytes) and count for nothing.
        rows = dict(
            conn.execute(
                "SELECT tenant_id, count(*) FROM cells WHERE length(cell) > 0 GROUP BY tenant_id"
            )
        )
        spent = conn.execute("SELECT count(*) FROM cells WHERE length(cell) = 0").fetchone()[0]
        assert spent <= 10
        counters = dict(conn.execute("SELECT tenant_id, cell_count FROM tenants"))
        assert counters == {t: rows.get(t, 0) for t in ("a", "b")}
        assert sum(counters.values()) == total
    finally:
        conn.close()


async def test_waiting_deposits_share_one_transaction(tmp_path: Path) -> None:
    """Group commit: deposits queued while the writer waits commit together."""
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path, busy_timeout_ms=20_000)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 1000, now=0)
        before = store.stats
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # the writer's next transaction must wait
        tasks = [
            asyncio.create_task(store.deposit("a", slot(n), cell(n), now=1)) for n in range(200)
        ]
        await asyncio.sleep(0)  # every task has now queued its deposit
        other.execute("ROLLBACK")
        other.close()
        results = await asyncio.gather(*tasks)
        after = store.stats
        assert all(r.created for r in results)
        assert after.writes - before.writes == 200
        assert after.transactions - before.transactions <= 2
        assert after.queued == 0
        assert await store.count_cells("a") == 200
    finally:
        await store.close()


async def test_writer_connection_is_durable_and_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    try:
        pragmas = await store._write(
            lambda conn: [
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys")
            ]
        )
        assert pragmas == ["wal", 2, 1]  # synchronous 2 is FULL
    finally:
        await store.close()


async def test_writer_page_cache_is_bounded_whatever_the_store_holds(tmp_path: Path) -> None:
    # The relay's memory must not grow with the store: the writer's cache is
    # fixed at 16 MiB (measured against 64 MiB in docs/benchmarks.md), new
    # store or full.
    path = tmp_path / "relay.db"

    async def cache_kib(store: SQLiteRelayStore) -> int:
        value = await store._write(lambda conn: conn.execute("PRAGMA cache_size").fetchone()[0])
        return -int(value)  # negative: KiB

    store = SQLiteRelayStore(path)
    await store.open()
    try:
        assert await cache_kib(store) == 16 * 1024
        await store.create_tenant("a", CRED, 10_000, now=0)
        await asyncio.gather(*(store.deposit("a", slot(n), cell(n), now=1) for n in range(300)))
    finally:
        await store.close()
    store = SQLiteRelayStore(path)
    await store.open()
    try:
        assert await store.count_cells("a") == 300
        assert await cache_kib(store) == 16 * 1024
    finally:
        await store.close()


async def test_read_meeting_a_lock_waits_on_the_pool_not_the_event_loop(tmp_path: Path) -> None:
    """Reads run on the event loop's connection without a busy wait; one that
    meets a lock is run again on the pool, where it waits out the lock while
    the loop goes on serving. (A WAL reader meets a lock only in rare moments,
    such as another process recovering the file, so the lock is simulated.)"""
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    loop_thread = threading.get_ident()
    runs: list[bool] = []

    def work(conn: sqlite3.Connection) -> int:
        on_loop = threading.get_ident() == loop_thread
        runs.append(on_loop)
        if on_loop:
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise busy
        time.sleep(0.3)  # the lock held a while longer
        return int(conn.execute("SELECT count(*) FROM tenants").fetchone()[0])

    try:
        await store.create_tenant("a", CRED, 10, now=0)
        with ticking() as ticks:
            assert await store._read(work) == 1
        assert runs == [True, False]
        assert ticks[0] >= 10  # the loop ran while the read waited
        # Any other failure on the loop's connection is the caller's, not retried.
        runs.clear()

        def broken(conn: sqlite3.Connection) -> None:
            runs.append(True)
            conn.execute("SELECT * FROM no_such_table")

        with pytest.raises(StoreUnavailable):
            await store._read(broken)
        assert runs == [True]
    finally:
        await store.close()


async def test_reads_from_another_thread_go_through_the_pool(tmp_path: Path) -> None:
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    try:
        await store.create_tenant("a", CRED, 10, now=0)
        await store.deposit("a", slot(1), cell(1), now=1)

        threads: list[str] = []

        def where(conn: sqlite3.Connection) -> None:
            threads.append(threading.current_thread().name)

        def elsewhere() -> dict[bytes, bytes]:
            asyncio.run(store._read(where))
            return asyncio.run(store.fetch("a", [slot(1), slot(2)]))

        assert await asyncio.to_thread(elsewhere) == {slot(1): cell(1)}
        await store._read(where)
        # Off the loop's thread: a pool thread; on it: right there.
        assert threads[0].startswith("backchannel-sqlite-reader")
        assert threads[1] == threading.current_thread().name
    finally:
        await store.close()


async def test_a_failed_read_leaves_no_snapshot_open(tmp_path: Path) -> None:
    """A read that fails inside its transaction rolls it back: the next read
    on the same connection sees what was committed since."""
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    try:
        await store.create_tenant("a", CRED, 10, now=0)

        def failing(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM cells").fetchone()
            raise LookupError("gone")

        with pytest.raises(LookupError):
            await store._read(failing)
        await store.deposit("a", slot(1), cell(1), now=1)
        assert await store.fetch("a", [slot(1)]) == {slot(1): cell(1)}
    finally:
        await store.close()

"""The SQLite writer: a group's SQL on the event loop, its COMMIT (the fsync)
on the writer's thread, and the loop never held by a lock or a disk sync."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from backchannel.errors import StoreUnavailable
from backchannel.store import _sqlite_jobs as _jobs
from backchannel.store.sqlite import SQLiteRelayStore

from .helpers import CRED, cell, reopens_after_its_loop_ended, slot, ticking


async def test_a_groups_sql_runs_on_the_loop_and_its_commit_on_the_writer_thread(
    tmp_path: Path,
) -> None:
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    commits: list[str] = []
    commit_now = store._commit_now

    def recording(conn: sqlite3.Connection) -> sqlite3.Error | None:
        commits.append(threading.current_thread().name)
        return commit_now(conn)

    store._commit_now = recording  # type: ignore[method-assign]
    try:
        await store.create_tenant("a", CRED, 10, now=0)
        ran_on = await store._write(lambda conn: threading.get_ident())
        assert ran_on == threading.get_ident()
        assert (await store.deposit("a", slot(1), cell(1), now=1)).created
        assert commits and all(name.startswith("backchannel-sqlite-writer") for name in commits)
    finally:
        await store.close()


async def test_the_loop_serves_while_a_commit_syncs(tmp_path: Path) -> None:
    """A slow disk sync holds the writer's thread, not the loop; what arrives
    meanwhile is one group for the next commit."""
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    commit_now = store._commit_now
    slow = threading.Event()

    def slow_commit(conn: sqlite3.Connection) -> sqlite3.Error | None:
        if slow.is_set():
            time.sleep(0.3)
        return commit_now(conn)

    store._commit_now = slow_commit  # type: ignore[method-assign]
    try:
        await store.create_tenant("a", CRED, 100, now=0)
        slow.set()
        with ticking() as ticks:
            first = asyncio.create_task(store.deposit("a", slot(0), cell(0), now=1))
            await asyncio.sleep(0.05)  # its commit is syncing now
            before = store.stats
            rest = [store.deposit("a", slot(n), cell(n), now=1) for n in range(1, 21)]
            results = await asyncio.gather(first, *rest)
        after = store.stats
        assert all(r.created for r in results)
        assert ticks[0] >= 20  # the loop ran through both syncs
        assert after.transactions - before.transactions == 2  # the first, then the other 20
        assert await store.count_cells("a") == 21
    finally:
        await store.close()


async def test_a_write_meeting_a_lock_waits_on_the_thread_not_the_loop(tmp_path: Path) -> None:
    """The loop's BEGIN does not wait: a group that meets another connection's
    write lock goes whole to the writer's thread, which waits for it."""
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path, busy_timeout_ms=5_000)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 10, now=0)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            loop = asyncio.get_running_loop()
            loop.call_later(0.4, other.execute, "ROLLBACK")
            with ticking() as ticks:
                started = time.monotonic()
                result = await store.deposit("a", slot(1), cell(1), now=1)
                waited = time.monotonic() - started
        finally:
            other.close()
        assert result.created
        assert waited >= 0.35  # it did wait for the lock
        assert ticks[0] >= 20  # and the loop ran meanwhile
        assert await store.fetch("a", [slot(1)]) == {slot(1): cell(1)}
        # The next write runs on the loop again (its connection back to no busy wait).
        assert await store._write(lambda conn: threading.get_ident()) == threading.get_ident()
    finally:
        await store.close()


async def test_writes_from_another_thread_are_handed_to_the_stores_loop(tmp_path: Path) -> None:
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    try:
        await store.create_tenant("a", CRED, 10, now=0)

        def elsewhere() -> tuple[bool, int]:
            created = asyncio.run(store.deposit("a", slot(1), cell(1), now=1)).created
            return created, asyncio.run(store._write(lambda conn: threading.get_ident()))

        created, ran_on = await asyncio.to_thread(elsewhere)
        assert created
        assert ran_on == threading.get_ident()  # the store's loop ran it
        assert await store.fetch("a", [slot(1)]) == {slot(1): cell(1)}
    finally:
        await store.close()


async def test_a_write_reaching_the_writer_after_close_is_refused(tmp_path: Path) -> None:
    """A write handed over from another thread can land after close() stopped
    the writer: its caller gets a clear refusal, not a wait without end."""
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    await store.close()
    job = _jobs.Job(lambda conn: None, asyncio.get_running_loop(), single=True)
    store._submit(job)  # as the store's loop runs a late hand-over
    with pytest.raises(StoreUnavailable, match="closed before this write ran"):
        await asyncio.wait_for(job.future, 5)
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.deposit("a", slot(1), cell(1), now=1)


async def test_a_store_whose_writer_stopped_says_so_and_opens_again(tmp_path: Path) -> None:
    """A writer task cancelled under an open store (its loop shutting down, a
    stray cancel): a write says to open the store again, and opening does."""
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    try:
        await store.create_tenant("a", CRED, 10, now=0)
        assert (await store.deposit("a", slot(1), cell(1), now=1)).created
        task = store._writer_task
        assert task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(StoreUnavailable, match="writer has stopped; open the store again"):
            await store.deposit("a", slot(2), cell(2), now=1)
        await store.open()
        assert (await store.deposit("a", slot(2), cell(2), now=1)).created
        assert await store.fetch("a", [slot(1), slot(2)]) == {slot(1): cell(1), slot(2): cell(2)}
    finally:
        await store.close()


def test_a_store_whose_loop_ended_opens_again_on_a_new_loop(tmp_path: Path) -> None:
    """``asyncio.run`` returning without close() cancels the writer with its
    loop: the next loop's write says to open the store again, and opening does,
    with nothing committed lost."""
    reopens_after_its_loop_ended(SQLiteRelayStore(tmp_path / "relay.db"))

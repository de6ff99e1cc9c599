"""The intake's cap counts what the mission has not fetched, on every backend.

Attacks: junk that fills a mission's intake must shut it only until the
mission fetches past the junk, not for the retention; a lagging device's
fetch must neither free a place twice nor take one back; a fetch from the
future must not free places in advance; expiry still deletes, without
freeing a place twice; and concurrent submissions, fetches and expiry (one
relay process or two) must leave the count exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import psycopg
import pytest

from backchannel.errors import QuotaExceeded
from backchannel.store._common import EXPIRE_STEP_ROWS
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

from .conftest import StoreMaker
from .helpers import CRED
from .test_intake import opened, request


async def places(store: RelayStore, tenant: str, cap: int, first: int, now: int = 1000) -> int:
    """How many new requests (numbered from ``first`` in :func:`request`) fit
    before the cap refuses one; stops at ``cap + 1``."""
    for n in range(cap + 1):
        try:
            await store.intake_put(tenant, request(first + n), cap, now=now)
        except QuotaExceeded:
            return n
    return cap + 1


async def test_a_filled_intake_takes_honest_requests_once_the_mission_fetched_past_the_junk(
    store: RelayStore,
) -> None:
    tenant = await opened(store)
    assert await places(store, tenant, 5, first=100) == 5  # junk: numbers 1 to 5
    with pytest.raises(QuotaExceeded):
        await store.intake_put(tenant, request(1), 5, now=1000)
    # A device's first fetch passes nothing (after 0): the junk still counts.
    assert [seq for seq, _ in await store.intake_fetch(tenant, 0, 3)] == [1, 2, 3]
    with pytest.raises(QuotaExceeded):
        await store.intake_put(tenant, request(1), 5, now=1000)
    # Its next round fetches after 3: those three places are free at once.
    assert [seq for seq, _ in await store.intake_fetch(tenant, 3, 3)] == [4, 5]
    honest = await store.intake_put(tenant, request(1), 5, now=1000)
    assert (honest.seq, honest.created) == (6, True)
    assert await places(store, tenant, 5, first=200) == 2
    # Fetched requests stay stored for the mission's other devices.
    everything = await store.intake_fetch(tenant, 0, 256)
    assert [seq for seq, _ in everything] == list(range(1, 9))
    assert everything[5] == (6, request(1))


async def test_a_lagging_device_neither_frees_places_twice_nor_takes_them_back(
    store: RelayStore,
) -> None:
    tenant = await opened(store)
    assert await places(store, tenant, 4, first=100) == 4  # 1 to 4
    await store.intake_fetch(tenant, 4, 10)  # a device fetched past all four
    assert await places(store, tenant, 4, first=200) == 4  # 5 to 8
    # Other devices, behind, ask with older numbers: nothing is freed twice.
    for after in (0, 2, 4):
        await store.intake_fetch(tenant, after, 10)
        with pytest.raises(QuotaExceeded):
            await store.intake_put(tenant, request(1), 4, now=1000)
    await store.intake_fetch(tenant, 6, 10)
    assert await places(store, tenant, 4, first=300) == 2  # 9, 10
    # And a lagging fetch after a release takes no place back.
    await store.intake_fetch(tenant, 10, 10)
    await store.intake_fetch(tenant, 1, 10)
    assert await places(store, tenant, 4, first=400) == 4


async def test_a_fetch_from_the_future_frees_no_place_in_advance(store: RelayStore) -> None:
    tenant = await opened(store)
    await store.intake_put(tenant, request(1), 3, now=1000)
    # A device claims to hold up to number 1000 while only 1 exists.
    assert await store.intake_fetch(tenant, 1000, 10) == []
    assert await places(store, tenant, 3, first=100) == 3  # 2, 3, 4 still count
    await store.intake_fetch(tenant, 1000, 10)
    assert await places(store, tenant, 3, first=200) == 3
    # Another tenant's fetch frees nothing of this one's.
    await store.create_tenant("mission-b", CRED, 10, now=1000)
    await store.intake_fetch("mission-b", 1000, 10)
    with pytest.raises(QuotaExceeded):
        await store.intake_put(tenant, request(999), 3, now=1000)


async def test_expiry_still_deletes_and_frees_only_unfetched_places(store: RelayStore) -> None:
    tenant = await opened(store)
    await store.intake_put(tenant, request(1), 3, now=1000)
    await store.intake_put(tenant, request(2), 3, now=1000)
    await store.intake_put(tenant, request(3), 3, now=5000)
    await store.intake_fetch(tenant, 1, 10)  # number 1 fetched: two count
    assert await store.intake_expire(now=5000, retention_seconds=3600) == 2
    assert await store.intake_fetch(tenant, 0, 10) == [(3, request(3))]
    # Number 1 was freed by the fetch, number 2 by expiry; number 3 still counts.
    assert await places(store, tenant, 3, first=100, now=5000) == 2
    assert await store.intake_expire(now=5000, retention_seconds=3600) == 0


async def test_expiry_of_a_backlog_goes_in_steps_and_frees_each_unfetched_place_once(
    store: RelayStore,
) -> None:
    # More expired requests than one step of expiry takes, of two tenants, the
    # first half fetched past: all go, and only the unfetched free places.
    tenant = await opened(store)
    other = await opened(store, "mission-b")
    backlog = 3 * EXPIRE_STEP_ROWS // 2
    for n in range(backlog):
        await store.intake_put(tenant, request(n), 1000, now=1000)
        await store.intake_put(other, request(n), 1000, now=1000)
    await store.intake_put(tenant, request(backlog), 1000, now=5000)  # not due
    await store.intake_fetch(tenant, backlog // 2, 10)
    assert await store.intake_expire(now=5000, retention_seconds=3600) == 2 * backlog
    assert await store.intake_fetch(tenant, 0, 10) == [(backlog + 1, request(backlog))]
    assert await store.intake_fetch(other, 0, 10) == []
    # One request still counts for the first tenant, none for the other.
    assert await places(store, tenant, 3, first=10_000, now=5000) == 2
    assert await places(store, other, 3, first=10_000, now=5000) == 3


async def test_a_fetch_past_expired_requests_frees_nothing_twice(store: RelayStore) -> None:
    tenant = await opened(store)
    await store.intake_put(tenant, request(1), 3, now=1000)
    await store.intake_put(tenant, request(2), 3, now=1000)
    await store.intake_put(tenant, request(3), 3, now=5000)
    assert await store.intake_expire(now=5000, retention_seconds=3600) == 2
    await store.intake_fetch(tenant, 3, 10)  # passes 1 and 2 (gone) and 3
    assert await places(store, tenant, 3, first=100, now=5000) == 3  # 4, 5, 6
    # And expiring fetched requests later frees nothing either.
    await store.intake_fetch(tenant, 5, 10)  # 6 still counts
    assert await store.intake_expire(now=10_000, retention_seconds=3600) == 4
    assert await places(store, tenant, 3, first=200, now=10_000) == 3


async def test_concurrent_submissions_never_pass_the_cap(store: RelayStore) -> None:
    tenant = await opened(store)

    async def put(n: int) -> bool:
        try:
            return (await store.intake_put(tenant, request(n), 10, now=1000)).created
        except QuotaExceeded:
            return False

    stored = await asyncio.gather(*(put(n) for n in range(1, 61)))
    assert sum(stored) == 10
    rows = await store.intake_fetch(tenant, 0, 256)
    assert [seq for seq, _ in rows] == list(range(1, 11))


async def test_concurrent_submissions_fetches_and_expiry_keep_the_count_exact(
    store: RelayStore,
) -> None:
    tenant = await opened(store)
    cap = 20
    await store.intake_put(tenant, request(0), cap, now=0)  # expires below

    async def put(n: int) -> None:
        with contextlib.suppress(QuotaExceeded):
            await store.intake_put(tenant, request(n), cap, now=1000)

    async def fetch(after: int) -> None:
        await store.intake_fetch(tenant, after, 10)

    work = [put(n) for n in range(1, 81)]
    work += [fetch(after) for after in (3, 1, 9, 30, 12, 60, 5, 45)]
    work.append(store.intake_expire(now=1000, retention_seconds=500))
    for n in range(0, len(work), 3):  # interleave the kinds
        work[n], work[-1 - n] = work[-1 - n], work[n]
    await asyncio.gather(*work)
    # Whatever the order was: once a device fetched past everything, the
    # whole cap is free again, neither more nor less.
    last = max([seq for seq, _ in await store.intake_fetch(tenant, 0, 256)] or [0])
    await store.intake_fetch(tenant, last, 10)
    assert await places(store, tenant, cap, first=1000) == cap


async def test_two_relay_processes_share_one_count(maker: StoreMaker) -> None:
    async with maker.two() as (first, second):
        tenant = await opened(first)

        async def put(store: RelayStore, n: int) -> bool:
            try:
                return (await store.intake_put(tenant, request(n), 8, now=1000)).created
            except QuotaExceeded:
                return False

        stored = await asyncio.gather(*(put(first if n % 2 else second, n) for n in range(1, 41)))
        assert sum(stored) == 8
        # One process serves the fetch, the other takes the next request.
        await first.intake_fetch(tenant, 5, 10)
        assert await places(second, tenant, 8, first=100) == 5


async def _old_sqlite(path: str) -> None:
    """A database as the relay wrote it before migration 0008: no fetched mark."""
    store = SQLiteRelayStore(path)
    await store.open()
    tenant = await opened(store)
    for n in (1, 2, 3):
        await store.intake_put(tenant, request(n), 10, now=1000)
    await store.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("ALTER TABLE intake_tenants DROP COLUMN fetched_seq")
        conn.execute("DELETE FROM schema_version WHERE version >= 8")
    conn.close()


async def test_sqlite_0008_keeps_the_count_of_an_existing_intake(tmp_path: Path) -> None:
    path = str(tmp_path / "relay.db")
    await _old_sqlite(path)
    store = SQLiteRelayStore(path)
    await store.open()
    try:
        # The three requests stored before still count, until a device fetches past them.
        assert await places(store, "mission-a", 4, first=100) == 1
        await store.intake_fetch("mission-a", 4, 10)
        assert await places(store, "mission-a", 4, first=200) == 4
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (8,)
    finally:
        conn.close()


@pytest.mark.postgres
async def test_postgres_0007_keeps_the_count_of_an_existing_intake(pg_dsn: str) -> None:
    store = PostgresRelayStore(pg_dsn)
    await store.open()
    tenant = await opened(store)
    for n in (1, 2, 3):
        await store.intake_put(tenant, request(n), 10, now=1000)
    await store.close()
    with psycopg.connect(pg_dsn) as conn:  # as the relay wrote it before 0007
        conn.execute("ALTER TABLE intake_tenants DROP COLUMN fetched_seq")
        conn.execute("DELETE FROM schema_version WHERE version >= 7")
    again = PostgresRelayStore(pg_dsn)
    await again.open()
    try:
        assert await places(again, tenant, 4, first=100) == 1
        await again.intake_fetch(tenant, 4, 10)
        assert await places(again, tenant, 4, first=200) == 4
    finally:
        await again.close()
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        assert row == (7,)


async def _blocked_behind(dsn: str, holder: int, count: int) -> None:
    """Wait until ``count`` sessions wait (directly or in line) on ``holder``'s locks."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as watch:
        for _ in range(500):
            cur = await watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
                " OR EXISTS (SELECT 1 FROM unnest(pg_blocking_pids(pid)) AS b (pid)"
                " WHERE %s = ANY(pg_blocking_pids(b.pid)))",
                (holder, holder),
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the sessions never queued behind the lock")


@pytest.mark.postgres
async def test_postgres_expiry_racing_a_fetch_frees_each_place_once(pg_dsn: str) -> None:
    # The fetch counts requests that expiry is deleting (not yet committed),
    # then expiry's count meets the mark the fetch raised: each place is
    # freed once, whichever of the two takes the tenant's row first.
    store = PostgresRelayStore(pg_dsn)
    await store.open()
    try:
        tenant = await opened(store)
        await store.intake_put(tenant, request(1), 3, now=1000)
        await store.intake_put(tenant, request(2), 3, now=1000)
        await store.intake_put(tenant, request(3), 3, now=5000)
        hold = await psycopg.AsyncConnection.connect(pg_dsn)
        async with hold, hold.transaction():
            await hold.execute(
                "SELECT 1 FROM intake_tenants WHERE tenant_id = %s FOR UPDATE", (tenant,)
            )
            fetch = asyncio.create_task(store.intake_fetch(tenant, 3, 10))
            await _blocked_behind(pg_dsn, hold.info.backend_pid, 1)
            expire = asyncio.create_task(store.intake_expire(now=5000, retention_seconds=3600))
            await _blocked_behind(pg_dsn, hold.info.backend_pid, 2)
        assert len(await fetch) == 0
        assert await expire == 2
        assert await places(store, tenant, 3, first=100, now=5000) == 3
    finally:
        await store.close()

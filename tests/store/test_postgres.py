"""PostgreSQL-only behaviour: unreachable servers and wrong schemas fail clearly."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from backchannel.errors import StoreUnavailable
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import DepositResult

from .conftest import dsn_with_schema, require_pg
from .helpers import CRED, cell, reopens_after_its_loop_ended, slot

pytestmark = pytest.mark.postgres


async def test_unreachable_server_gives_store_unavailable_without_the_password() -> None:
    store = PostgresRelayStore("postgresql://relay:hunter2@127.0.0.1:1/test", connect_timeout=1)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_missing_schema_is_named_as_the_problem() -> None:
    require_pg()
    store = PostgresRelayStore(dsn_with_schema("bc_test_no_such_schema"), connect_timeout=5)
    with pytest.raises(StoreUnavailable, match="search_path"):
        await store.open()


async def test_deposits_waiting_on_a_lock_share_one_transaction(pg_dsn: str) -> None:
    store = PostgresRelayStore(pg_dsn)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 1000, now=0)
        other = psycopg.connect(pg_dsn)
        # Another relay process holds the tenant's row: our deposits must wait.
        other.execute("SELECT 1 FROM tenants WHERE tenant_id = 'a' FOR UPDATE")
        tasks = [
            asyncio.create_task(store.deposit("a", slot(n), cell(n), now=1)) for n in range(200)
        ]
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in tasks)
        other.rollback()
        other.close()
        results = await asyncio.gather(*tasks)
        assert all(r.created for r in results)
        assert store.stats.writes == 200
        assert store.stats.transactions <= 2
        assert await store.count_cells("a") == 200
    finally:
        await store.close()


def test_a_store_whose_loop_ended_opens_again_on_a_new_loop(pg_dsn: str) -> None:
    """``asyncio.run`` returning without close() takes the writer and the
    pool's connections with its loop: on the next loop calls say to open the
    store again (a deposit used to wait for ever), and opening does."""
    store = PostgresRelayStore(pg_dsn, connect_timeout=5)
    reopens_after_its_loop_ended(store)

    async def open_on_a_loop_that_ends() -> None:
        await store.open()
        assert await store.count_cells("a") == 2

    asyncio.run(open_on_a_loop_that_ends())  # a fetch on the next loop is refused too
    with pytest.raises(StoreUnavailable, match="open the store again"):
        asyncio.run(store.fetch("a", [slot(1)]))

    asyncio.run(asyncio.wait_for(store.close(), 10))  # on a new loop, returns
    with pytest.raises(StoreUnavailable, match="not open"):
        asyncio.run(store.fetch("a", [slot(1)]))


async def test_a_store_whose_writer_stopped_says_so_and_opens_again(pg_dsn: str) -> None:
    """A writer task cancelled under an open store on a live loop: calls say to
    open the store again, and opening closes the old pool and starts afresh."""
    store = PostgresRelayStore(pg_dsn, connect_timeout=5)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 10, now=0)
        assert (await store.deposit("a", slot(1), cell(1), now=1)).created
        old_pool, task = store._pool, store._writer
        assert old_pool is not None and task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(StoreUnavailable, match="open the store again"):
            await asyncio.wait_for(store.deposit("a", slot(2), cell(2), now=1), 10)
        await store.open()
        assert old_pool.closed
        assert (await store.deposit("a", slot(2), cell(2), now=1)).created
        assert await store.fetch("a", [slot(1), slot(2)]) == {slot(1): cell(1), slot(2): cell(2)}
    finally:
        await store.close()


async def test_a_connection_lost_during_ack_leaves_the_quota_count_true(pg_dsn: str) -> None:
    # The connection dies after ack's first statement reaches the server: what
    # the tenant's count says must still be what its cells hold, or the quota
    # drifts for good (the pool's connections commit each statement on its own).
    store = PostgresRelayStore(pg_dsn)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 1000, now=0)
        for n in range(3):
            await store.deposit("a", slot(n), cell(n), now=1)

        async def lose_the_connection(conn: psycopg.AsyncConnection[Any], calls: int) -> None:
            if calls > 1:
                await conn.close()
                raise psycopg.OperationalError("the connection was lost")

        with (
            _before_each_statement(store, lose_the_connection),
            contextlib.suppress(StoreUnavailable),
        ):
            await store.ack("a", [slot(0), slot(1)], now=2)
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM cells WHERE tenant_id = 'a' AND octet_length(cell) > 0"
            ).fetchone()
        assert row is not None
        assert await store.count_cells("a") == row[0]
        assert row[0] in (1, 3)  # the ack happened whole, or not at all
    finally:
        await store.close()


async def test_a_batch_deposit_is_never_split_between_commits(pg_dsn: str) -> None:
    # The writer gathers at most max_batch cells a commit; a call's cells still
    # go whole into one commit and one log leaf, whatever waits beside them.
    store = PostgresRelayStore(pg_dsn, max_batch=8, log_interval=0.05)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 1000, now=0)
        singles = [
            asyncio.create_task(store.deposit("a", slot(n), cell(n), now=1)) for n in range(5)
        ]
        batch = asyncio.create_task(
            store.deposit_many([("a", slot(n), cell(n)) for n in range(100, 106)], now=1)
        )
        larger = asyncio.create_task(
            store.deposit_many([("a", slot(n), cell(n)) for n in range(200, 220)], now=1)
        )
        await asyncio.gather(*singles)
        for results in (await batch, await larger):
            assert all(isinstance(r, DepositResult) and r.created for r in results)
            done = [r for r in results if isinstance(r, DepositResult)]
            assert len({r.leaf_index for r in done}) == 1
            assert done[0].batch_size is not None and done[0].batch_size >= len(done)
        # The five singles shared a commit of their own: the batch did not fit beside them.
        leaves = {(await t).leaf_index for t in singles}
        first = (await batch)[0]
        assert isinstance(first, DepositResult)
        assert len(leaves) == 1 and first.leaf_index not in leaves
    finally:
        await store.close()


async def test_an_older_rotation_cannot_overwrite_a_newer_one_from_another_process(
    pg_dsn: str,
) -> None:
    # Two relay processes take two rotations of one tenant at once: the older
    # (version 1) checks the row, then the newer (version 2) arrives at the other
    # process. Whatever the interleaving, the relay must end on the newer one:
    # an older credential may be one the roster change took away.
    older_store, newer_store = PostgresRelayStore(pg_dsn), PostgresRelayStore(pg_dsn)
    await older_store.open()
    await newer_store.open()
    try:
        await older_store.create_tenant("a", CRED, 10, now=0)
        older, newer = hashlib.sha256(b"v1").digest(), hashlib.sha256(b"v2").digest()
        roster = b"\x01" * 32
        checked, go_on = asyncio.Event(), asyncio.Event()

        async def pause_before_the_write(conn: psycopg.AsyncConnection[Any], calls: int) -> None:
            if calls == 2:  # the row was read and checked: the write is next
                checked.set()
                await go_on.wait()

        with _before_each_statement(older_store, pause_before_the_write):
            first = asyncio.create_task(older_store.rotate_credential("a", older, 1, 0, roster))
            await asyncio.wait_for(checked.wait(), 10)
            second = asyncio.create_task(newer_store.rotate_credential("a", newer, 2, 0, roster))
            await asyncio.sleep(0.3)  # the newer one goes as far as the database lets it
            go_on.set()
            assert await asyncio.wait_for(first, 10) == "rotated"
        assert await asyncio.wait_for(second, 10) == "rotated"
        record = await newer_store.get_tenant("a")
        assert record is not None and record.credential_hash == newer
    finally:
        await older_store.close()
        await newer_store.close()


class _Intercepted:
    """A pooled connection whose statements first await ``hook(conn, n)``
    (``n`` counts this connection's statements from 1)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], hook: Any) -> None:
        self.conn, self.hook, self.calls = conn, hook, 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        await self.hook(self.conn, self.calls)
        return await self.conn.execute(*args, **kwargs)

    def transaction(self) -> Any:
        return self.conn.transaction()


@contextlib.contextmanager
def _before_each_statement(store: PostgresRelayStore, hook: Any) -> Iterator[None]:
    """Every call's work, while inside, sees its connection through :class:`_Intercepted`."""
    real = store._attempt

    async def attempt(work: Any) -> Any:
        return await real(lambda conn: work(_Intercepted(conn, hook)))

    store._attempt = attempt  # type: ignore[method-assign]
    try:
        yield
    finally:
        store._attempt = real  # type: ignore[method-assign]

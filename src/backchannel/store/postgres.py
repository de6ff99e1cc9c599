"""The relay store on PostgreSQL, shareable by several relay processes.

Every invariant lives in the database, none in this process: the slot is the
primary key, a deposit is decided by the ``bc_deposit`` SQL function (tenant
row lock, conflict check, quota check, ``INSERT ... ON CONFLICT DO NOTHING``),
the per-tenant cell count is kept by statement triggers and bounded by a
``CHECK`` constraint. Any number of relay processes may therefore deposit into
one database at once.

Group commit: deposits are queued to one writer task per process, which sends
everything pending in one transaction (pipelined, one round trip) and resolves
the callers only after ``COMMIT`` returned, i.e. after PostgreSQL flushed the
commit record to its WAL (``synchronous_commit`` is forced on if the server
default turned it off). Deposits are ordered by tenant inside a batch so that
tenant row locks are always taken in the same order; a deadlock with another
process's maintenance (ack, expire) is retried.

The schema is the connection's current schema (``search_path``); put
``options=-csearch_path=<schema>`` in the DSN to use another than ``public``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backchannel.errors import (
    ConfigError,
    StoreUnavailable,
)
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store import _common, _log, _pg_conn
from backchannel.store._pg_deposit import (
    CREATED,
    DUPLICATE,
    Deposit,
    deposit_batch,
    refusal,
    settle,
)
from backchannel.store._pg_errors import RETRYABLE, translate
from backchannel.store._pg_intake import PostgresIntake
from backchannel.store._pg_log import PostgresLogReads
from backchannel.store._pg_tenants import PostgresTenants
from backchannel.store.relay_store import (
    DepositResult,
    LogReceipt,
)

T = TypeVar("T")
_logger = logging.getLogger(__name__)

#: How often a transaction that hit a deadlock or serialization failure is retried.
_ATTEMPTS = 5

#: Most batches whose member hashes one expiry transaction deletes.
_MEMBER_LEAVES_CHUNK = 256


class PostgresRelayStore(PostgresLogReads, PostgresIntake, PostgresTenants):
    """:class:`~backchannel.store.relay_store.RelayStore` on PostgreSQL (psycopg 3, async).

    ``pool_size`` bounds this process's connections; ``max_batch`` bounds one
    group commit; ``connect_timeout`` (seconds) bounds waiting for a connection.
    ``log_interval`` (seconds) paces this process's commits, as for SQLite.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        max_batch: int = 512,
        connect_timeout: float = 10.0,
        cell_size: int = CELL_SIZE,
        log_interval: float = 0.0,
    ) -> None:
        if log_interval < 0:
            raise ConfigError("log_interval must be >= 0 seconds")
        if pool_size < 2 or max_batch < 1 or connect_timeout <= 0:
            raise ConfigError("pool_size must be >= 2, max_batch >= 1, connect_timeout > 0")
        self._dsn = dsn
        self._pool_size = pool_size
        self._max_batch = max_batch
        self._timeout = connect_timeout
        self._cell_size = _common.check_cell_size(cell_size)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        # One item per call: a deposit's cell, or a batch's cells, which the
        # writer never splits between two commits (nor two log leaves).
        self._queue: asyncio.Queue[list[Deposit] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._transactions = 0
        self._writes = 0
        self._cache: _log.LogCache | None = None
        self._log_interval = float(log_interval)

    @property
    def stats(self) -> _common.GroupCommitStats:
        """How many deposits shared each commit so far (group commit at work)."""
        return _common.GroupCommitStats(self._transactions, self._writes, self._queue.qsize())

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect, apply pending migrations, start the writer task."""
        if self._pool is not None:
            if self._writer_alive():
                return
            await self._abandon()  # its writer or its event loop ended: start again
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=_pg_conn.configure,
            timeout=self._timeout,
            open=False,
            name="backchannel-relay-store",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
            async with pool.connection() as conn:
                await _pg_conn.apply_migrations(conn)
                ahead = await _pg_conn.drop_head_ahead(conn)
                if ahead is not None:
                    _logger.error(
                        "the stored signed head was ahead of the log (%d leaves): dropped; "
                        "was the database restored while a relay served it?",
                        ahead,
                    )
                self._cache = _log.LogCache(await _pg_conn.load_or_create_key(conn))
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise translate(exc) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._writer_main(), name="backchannel-pg-writer")
        self._accepting = True

    async def close(self) -> None:
        """Finish every deposit already submitted, then close the connections."""
        pool, writer = self._pool, self._writer
        if pool is None or not self._accepting:
            return
        if not self._writer_alive():
            await self._abandon()  # nothing left to finish
            return
        self._accepting = False  # refuse new calls; the writer still has the pool
        if writer is not None:
            self._queue.put_nowait(None)
            await writer
        self._writer = None
        self._pool = self._loop = None
        await pool.close()

    # -- plumbing ------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._accepting:
            raise _common.not_open()
        if not self._writer_alive():
            # The writer ended (its event loop ended without close(), or it
            # was cancelled): a deposit queued now would wait for ever, and
            # an ended loop took the pool's connections with it.
            raise StoreUnavailable("the relay store's writer has stopped; open the store again")

    def _writer_alive(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def _abandon(self) -> None:
        """Forget a pool whose writer has ended. On the loop that opened it,
        close it; connections of an ended loop cannot be closed from another,
        and the server ends them when the garbage collector closes their
        sockets."""
        pool, loop = self._pool, self._loop
        self._accepting = False
        self._writer = None
        self._pool = self._loop = None
        if pool is not None and loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await pool.close()

    async def _attempt(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection, retrying deadlocks; psycopg errors escape."""
        pool = self._pool
        if pool is None:
            raise _common.not_open()
        for attempt in range(_ATTEMPTS):
            try:
                async with pool.connection() as conn:
                    return await work(conn)
            except RETRYABLE:
                if attempt == _ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """:meth:`_attempt` for a caller, with errors translated at this boundary."""
        self._require_open()
        try:
            return await self._attempt(work)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc) from None

    # -- group commit ----------------------------------------------------------

    async def _writer_main(self) -> None:
        stop = False
        loop = asyncio.get_running_loop()
        last_commit = 0.0
        held: list[Deposit] | None = None  # a call that did not fit the last commit
        while not stop:
            first = held if held is not None else await self._queue.get()
            held = None
            if first is None:
                return
            groups = [first]
            size = len(first)
            # Pacing: wait for the interval since the last commit to pass,
            # gathering what arrives meanwhile into this batch. A call's cells
            # go whole into one commit: past max_batch, it waits for the next
            # (a call larger than max_batch has a commit of its own).
            due = last_commit + self._log_interval
            while size < self._max_batch:
                wait = due - loop.time()
                if wait > 0:
                    try:
                        group = await asyncio.wait_for(self._queue.get(), wait)
                    except TimeoutError:
                        break
                elif self._queue.empty():
                    break
                else:
                    group = self._queue.get_nowait()
                if group is None:
                    stop = True
                    break
                if size + len(group) > self._max_batch:
                    held = group
                    break
                groups.append(group)
                size += len(group)
            # Skip cancelled callers.
            live = [[job for job in g if not job.future.done()] for g in groups]
            live = [g for g in live if g]
            try:
                await self._commit(live)
                last_commit = loop.time()
            except Exception as exc:  # a bug: never leave a caller waiting
                _logger.error("relay store writer failed: %s", type(exc).__name__)
                settle(
                    [job for g in live for job in g],
                    StoreUnavailable("the relay store's writer failed; retry"),
                )

    async def _commit(self, groups: list[list[Deposit]]) -> None:
        """One transaction for every call in ``groups``; one call at a time if
        one of them fails it, and one cell at a time within a failing call."""
        if not groups:
            return
        jobs = sorted((job for g in groups for job in g), key=lambda job: job.tenant_id)
        # (sorted: one lock order in every process)
        cache = self._cache
        assert cache is not None
        try:
            outcome = await self._attempt(lambda conn: deposit_batch(conn, jobs, cache))
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # The server or the connection failed: every deposit in the batch did.
            settle(jobs, translate(exc))
            return
        except psycopg.Error as exc:
            if len(jobs) == 1:
                settle(jobs, translate(exc))
                return
            # Something in one deposit failed the whole batch: isolate it.
            for part in groups if len(groups) > 1 else [[job] for job in groups[0]]:
                await self._commit([part])
            return
        except StoreUnavailable as exc:
            settle(jobs, exc)
            return
        self._transactions += 1
        self._writes += len(jobs)
        rows, appended, sizes = outcome
        tree, step = appended if appended is not None else (None, None)
        head = None
        if tree is not None and step is not None:
            cache.committed(tree, step)
            head = step.head
        for job, (code, leaf, position) in zip(jobs, rows, strict=True):
            if job.future.done():
                continue
            if code not in (CREATED, DUPLICATE):
                job.future.set_exception(refusal(code))
                continue
            receipt = None
            size = sizes.get(leaf) if leaf is not None else None
            if tree is not None and step is not None and leaf == step.leaf_index:
                size = len(tree.members)
                if code == CREATED and position is not None and head is not None:
                    receipt = LogReceipt(tree, position, head, step.inclusion_proof)
            job.future.set_result(
                DepositResult(job.cell_id, code == CREATED, leaf, position, size, receipt)
            )

    # -- the RelayStore interface -----------------------------------------

    async def keep_checkpoint(self, size: int, cosignatures: int, note: bytes) -> None:
        _common.check_checkpoint(size, cosignatures, note)

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "INSERT INTO log_checkpoint (id, size, cosignatures, note) VALUES (1, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET size = excluded.size,"
                " cosignatures = excluded.cosignatures, note = excluded.note"
                " WHERE excluded.size > log_checkpoint.size OR (excluded.size = log_checkpoint.size"
                " AND excluded.cosignatures >= log_checkpoint.cosignatures)",
                (size, cosignatures, note),
            )

        await self._run(work)

    async def kept_checkpoint(self) -> bytes | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> bytes | None:
            cur = await conn.execute("SELECT note FROM log_checkpoint WHERE id = 1")
            row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(work)

    async def deposit_many(
        self, cells: Sequence[tuple[str, bytes, bytes]], now: int
    ) -> list[DepositResult | BaseException]:
        """Each cell as :meth:`deposit` stores it, all of them in one commit and
        one log leaf: the writer never splits a call."""
        out: list[DepositResult | BaseException | None] = [None] * len(cells)
        group: list[tuple[int, Deposit]] = []
        loop = asyncio.get_running_loop()
        for i, (tenant_id, slot, cell) in enumerate(cells):
            try:
                group.append((i, self._job(tenant_id, slot, cell, now, loop)))
            except ConfigError as exc:
                out[i] = exc
        if group:
            self._require_open()
            self._queue.put_nowait([job for _, job in group])
            done = await asyncio.gather(*(job.future for _, job in group), return_exceptions=True)
            for (i, _), result in zip(group, done, strict=True):
                out[i] = result
        return [r for r in out if r is not None]

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        job = self._job(tenant_id, slot, cell, now, asyncio.get_running_loop())
        self._require_open()
        self._queue.put_nowait([job])
        return await job.future

    def _job(
        self, tenant_id: str, slot: bytes, cell: bytes, now: int, loop: asyncio.AbstractEventLoop
    ) -> Deposit:
        _common.check_tenant_id(tenant_id)
        _common.check_slot(slot)
        _common.check_cell(cell, self._cell_size)
        return Deposit(tenant_id, slot, _common.cell_id_of(cell), cell, now, loop.create_future())

    async def fetch(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, bytes]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return {}

        async def work(conn: psycopg.AsyncConnection[Any]) -> dict[bytes, bytes]:
            cur = await conn.execute(
                "SELECT slot, cell FROM cells WHERE tenant_id = %s AND slot = ANY(%s)"
                " AND octet_length(cell) > 0",
                (tenant_id, wanted),
            )
            return {bytes(slot): bytes(cell) for slot, cell in await cur.fetchall()}

        found = await self._run(work)
        return {slot: found[slot] for slot in wanted if slot in found}

    async def ack(self, tenant_id: str, slots: Sequence[bytes], now: int) -> int:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return 0

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            # The slot stays, spent, until retention: slots are write-once. A
            # spent row no longer counts towards the quota. One statement, so one
            # transaction on the pool's autocommit connections: the count and the
            # cells cannot part if the connection or the process dies between.
            cur = await conn.execute(
                "WITH spent AS (UPDATE cells SET cell = ''::bytea"
                " WHERE tenant_id = %s AND slot = ANY(%s) AND octet_length(cell) > 0"
                " RETURNING 1),"
                " n AS (SELECT count(*) AS c FROM spent),"
                " counted AS (UPDATE tenants SET cell_count = cell_count - n.c FROM n"
                " WHERE tenant_id = %s AND n.c > 0)"
                " SELECT c FROM n",
                (tenant_id, wanted, tenant_id),
            )
            row = await cur.fetchone()
            return int(row[0]) if row is not None else 0

        return await self._run(work)

    async def expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        cutoff = now - retention_seconds

        async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
            # A cell's age counts from its batch's time (its leaf's), which never
            # goes backwards, so it outlives its leaf by the retention.
            cur = await conn.execute(
                "DELETE FROM cells c USING (SELECT x.tenant_id, x.slot FROM cells x"
                " LEFT JOIN log_leaves l ON l.leaf_index = x.leaf_index"
                " WHERE x.deposited_at <= %s AND (l.time IS NULL OR l.time <= %s)"
                " ORDER BY x.tenant_id LIMIT %s) d"
                " WHERE c.tenant_id = d.tenant_id AND c.slot = d.slot"
                " RETURNING octet_length(c.cell) > 0",
                (cutoff, cutoff, _common.EXPIRE_STEP_ROWS),
            )
            rows = await cur.fetchall()
            return len(rows), sum(1 for (live,) in rows if live)

        async def forget_members(conn: psycopg.AsyncConnection[Any]) -> bool:
            # Members of whole batches past retention, a few batches at a time.
            # Leaf times never decrease with the index, so the batches past
            # retention are a prefix: look only just above the oldest kept.
            cur = await conn.execute("SELECT min(leaf_index) FROM log_members")
            row = await cur.fetchone()
            if row is None or row[0] is None:
                return False
            low = int(row[0])
            top = low + _MEMBER_LEAVES_CHUNK - 1
            cur = await conn.execute(
                "SELECT max(leaf_index) FROM log_leaves"
                " WHERE leaf_index BETWEEN %s AND %s AND time <= %s",
                (low, top, cutoff),
            )
            row = await cur.fetchone()
            if row is None or row[0] is None:
                return False
            high = int(row[0])
            await conn.execute(
                "DELETE FROM log_members WHERE leaf_index BETWEEN %s AND %s", (low, high)
            )
            return high == top

        removed = 0

        async def step() -> bool:
            nonlocal removed
            count, cells = await self._run(work)
            removed += cells
            return count == _common.EXPIRE_STEP_ROWS

        await _common.in_steps(step)
        await _common.in_steps(lambda: self._run(forget_members))
        return removed

    async def count_cells(self, tenant_id: str | None = None) -> int:
        if tenant_id is not None:
            _common.check_tenant_id(tenant_id)

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            if tenant_id is None:
                cur = await conn.execute("SELECT coalesce(sum(cell_count), 0) FROM tenants")
            else:
                cur = await conn.execute(
                    "SELECT cell_count FROM tenants WHERE tenant_id = %s", (tenant_id,)
                )
            row = await cur.fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(work)

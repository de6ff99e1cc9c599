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
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backchannel.errors import (
    ConfigError,
    QuotaExceeded,
    SlotConflict,
    StoreUnavailable,
    TenantExists,
    UnknownTenant,
)
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store import _common, _migrations
from backchannel.store._pg_errors import RETRYABLE, translate
from backchannel.store.relay_store import DepositResult, TenantRecord

T = TypeVar("T")
_log = logging.getLogger(__name__)

#: Most rows one ``expire`` transaction deletes, so deposits interleave with it.
_EXPIRE_CHUNK = 5000
#: How often a transaction that hit a deadlock or serialization failure is retried.
_ATTEMPTS = 5

_DEPOSIT_SQL = "SELECT bc_deposit(%s, %s, %s, %s, %s)"
_CREATED, _DUPLICATE, _CONFLICT, _QUOTA, _UNKNOWN = 0, 1, 2, 3, 4


@dataclass(slots=True)
class _Deposit:
    tenant_id: str
    slot: bytes
    cell_id: bytes
    cell: bytes
    now: int
    future: asyncio.Future[DepositResult] = field(repr=False)

    def params(self) -> tuple[str, bytes, bytes, bytes, int]:
        return (self.tenant_id, self.slot, self.cell_id, self.cell, self.now)


class PostgresRelayStore:
    """:class:`~backchannel.store.relay_store.RelayStore` on PostgreSQL (psycopg 3, async).

    ``pool_size`` bounds this process's connections; ``max_batch`` bounds one
    group commit; ``connect_timeout`` (seconds) bounds waiting for a connection.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        max_batch: int = 512,
        connect_timeout: float = 10.0,
        cell_size: int = CELL_SIZE,
    ) -> None:
        if pool_size < 2 or max_batch < 1 or connect_timeout <= 0:
            raise ConfigError("pool_size must be >= 2, max_batch >= 1, connect_timeout > 0")
        self._dsn = dsn
        self._pool_size = pool_size
        self._max_batch = max_batch
        self._timeout = connect_timeout
        self._cell_size = _common.check_cell_size(cell_size)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._queue: asyncio.Queue[_Deposit | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._accepting = False
        self._transactions = 0
        self._writes = 0

    @property
    def stats(self) -> _common.GroupCommitStats:
        """How many deposits shared each commit so far (group commit at work)."""
        return _common.GroupCommitStats(self._transactions, self._writes, self._queue.qsize())

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect, apply pending migrations, start the writer task."""
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=_configure,
            timeout=self._timeout,
            open=False,
            name="backchannel-relay-store",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
            async with pool.connection() as conn:
                await _apply_migrations(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise translate(exc) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._writer_main(), name="backchannel-pg-writer")
        self._accepting = True

    async def close(self) -> None:
        """Finish every deposit already submitted, then close the connections."""
        pool, writer = self._pool, self._writer
        if pool is None or not self._accepting:
            return
        self._accepting = False  # refuse new calls; the writer still has the pool
        if writer is not None:
            self._queue.put_nowait(None)
            await writer
        self._writer = None
        self._pool = None
        await pool.close()

    # -- plumbing ------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._accepting:
            raise _common.not_open()

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
        while not stop:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                    break
                batch.append(job)
            jobs = [job for job in batch if not job.future.done()]  # skip cancelled callers
            try:
                await self._commit(jobs)
            except Exception as exc:  # a bug: never leave a caller waiting
                _log.error("relay store writer failed: %s", type(exc).__name__)
                _settle(jobs, StoreUnavailable("the relay store's writer failed; retry"))

    async def _commit(self, jobs: list[_Deposit]) -> None:
        jobs.sort(key=lambda job: job.tenant_id)  # one lock order in every process
        try:
            codes = await self._attempt(lambda conn: _deposit_batch(conn, jobs))
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # The server or the connection failed: every deposit in the batch did.
            _settle(jobs, translate(exc))
            return
        except psycopg.Error as exc:
            if len(jobs) == 1:
                _settle(jobs, translate(exc))
                return
            # Something in one deposit failed the whole batch: isolate it.
            for job in jobs:
                await self._commit([job])
            return
        except StoreUnavailable as exc:
            _settle(jobs, exc)
            return
        self._transactions += 1
        self._writes += len(jobs)
        for job, code in zip(jobs, codes, strict=True):
            if job.future.done():
                continue
            if code in (_CREATED, _DUPLICATE):
                job.future.set_result(DepositResult(job.cell_id, created=code == _CREATED))
            else:
                job.future.set_exception(_refusal(code))

    # -- the RelayStore interface -----------------------------------------

    async def create_tenant(
        self, tenant_id: str, credential_hash: bytes, quota_cells: int, now: int
    ) -> TenantRecord:
        _common.check_new_tenant(tenant_id, credential_hash, quota_cells)

        async def work(conn: psycopg.AsyncConnection[Any]) -> bool:
            cur = await conn.execute(
                "INSERT INTO tenants (tenant_id, credential_hash, quota_cells, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id) DO NOTHING",
                (tenant_id, credential_hash, quota_cells, now),
            )
            return cur.rowcount == 1

        if not await self._run(work):
            raise TenantExists("that tenant id is already registered; choose another")
        return TenantRecord(tenant_id, credential_hash, quota_cells, now)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        _common.check_tenant_id(tenant_id)

        async def work(conn: psycopg.AsyncConnection[Any]) -> TenantRecord | None:
            cur = await conn.execute(
                "SELECT credential_hash, quota_cells, created_at FROM tenants WHERE tenant_id = %s",
                (tenant_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            return TenantRecord(tenant_id, bytes(row[0]), int(row[1]), int(row[2]))

        return await self._run(work)

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        _common.check_tenant_id(tenant_id)
        _common.check_slot(slot)
        _common.check_cell(cell, self._cell_size)
        self._require_open()
        future: asyncio.Future[DepositResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(
            _Deposit(tenant_id, slot, _common.cell_id_of(cell), cell, now, future)
        )
        return await future

    async def fetch(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, bytes]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return {}

        async def work(conn: psycopg.AsyncConnection[Any]) -> dict[bytes, bytes]:
            cur = await conn.execute(
                "SELECT slot, cell FROM cells WHERE tenant_id = %s AND slot = ANY(%s)",
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
            cur = await conn.execute(
                "DELETE FROM cells WHERE tenant_id = %s AND slot = ANY(%s)", (tenant_id, wanted)
            )
            return cur.rowcount

        return await self._run(work)

    async def expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        cutoff = now - retention_seconds

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(
                "DELETE FROM cells c USING (SELECT tenant_id, slot FROM cells"
                " WHERE deposited_at <= %s ORDER BY tenant_id LIMIT %s) d"
                " WHERE c.tenant_id = d.tenant_id AND c.slot = d.slot",
                (cutoff, _EXPIRE_CHUNK),
            )
            return cur.rowcount

        removed = 0
        while True:
            count = await self._run(work)
            removed += count
            if count < _EXPIRE_CHUNK:
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


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Per new connection: make commits durable even if the server default is not."""
    cur = await conn.execute("SHOW synchronous_commit")
    row = await cur.fetchone()
    if row is not None and row[0] == "off":
        await conn.execute("SET synchronous_commit = on")


async def _deposit_batch(conn: psycopg.AsyncConnection[Any], jobs: list[_Deposit]) -> list[int]:
    """All ``jobs`` in one transaction, pipelined; their outcome codes, in order."""
    codes: list[int] = []
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(_DEPOSIT_SQL, [job.params() for job in jobs], returning=True)
        while True:
            row = await cur.fetchone()
            if row is None:
                raise StoreUnavailable("the deposit function returned nothing; migrate the schema")
            codes.append(int(row[0]))
            if not cur.nextset():
                break
    if len(codes) != len(jobs):
        raise StoreUnavailable("the database answered a different number of deposits; retry")
    return codes


def _refusal(code: int) -> Exception:
    if code == _CONFLICT:
        return SlotConflict("a different cell already occupies that slot")
    if code == _QUOTA:
        return QuotaExceeded("the tenant's cell quota is used up; fetch and ack, then retry")
    if code == _UNKNOWN:
        return UnknownTenant("no such tenant is registered on this relay")
    return StoreUnavailable("the database answered an unknown deposit outcome; upgrade the relay")


def _settle(jobs: list[_Deposit], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


async def _apply_migrations(conn: psycopg.AsyncConnection[Any]) -> None:
    """Apply pending migrations, each in its own transaction under an advisory lock."""
    migrations = _migrations.load("postgres")
    while True:
        async with conn.transaction():
            # Serialises concurrent openers of the same schema; others wait here.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('backchannel.migrate'),"
                " hashtext(coalesce(current_schema(), '')))"
            )
            cur = await conn.execute(
                "SELECT current_schema(), EXISTS (SELECT 1 FROM pg_tables"
                " WHERE schemaname = current_schema() AND tablename = 'schema_version')"
            )
            row = await cur.fetchone()
            if row is None or row[0] is None:
                raise StoreUnavailable(
                    "the search_path names no existing schema; create the schema or fix the "
                    "DSN options"
                )
            if not row[1]:
                await conn.execute(
                    "CREATE TABLE schema_version (version integer NOT NULL PRIMARY KEY,"
                    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            version_row = await cur.fetchone()
            current = 0 if version_row is None else int(version_row[0])
            if current > len(migrations):
                raise StoreUnavailable(
                    "the relay database was written by a newer Backchannel; upgrade the relay"
                )
            if current == len(migrations):
                return
            migration = migrations[current]
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )

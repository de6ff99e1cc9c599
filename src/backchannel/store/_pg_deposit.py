"""One group commit of the PostgreSQL relay store: deposits, the log append, COMMIT.

The writer task of :class:`~backchannel.store.postgres.PostgresRelayStore`
hands :func:`deposit_batch` the deposits it gathered; everything here runs in
one transaction on one connection, pipelined.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import psycopg

from backchannel.errors import QuotaExceeded, SlotConflict, StoreUnavailable, UnknownTenant
from backchannel.protocol.misbehaviour import LogLeaf, cell_entry
from backchannel.store import _log
from backchannel.store.relay_store import BatchTree, DepositResult

_DEPOSIT_SQL = "SELECT o_code, o_leaf, o_position FROM bc_deposit_logged(%s, %s, %s, %s, %s)"
# Every appender, in every process, queues on this row lock: one log. It also
# tells bc_deposit_logged which leaf the batch will be, so that the lock and
# the deposits travel in one round trip.
_LOCK_HEAD_SQL = (
    "SELECT size, frontier, time, set_config('backchannel.batch_position', '0', true),"
    " set_config('backchannel.batch_leaf', size::text, true)"
    " FROM log_head WHERE id = 1 FOR UPDATE"
)
# The whole append in one statement: nodes, leaf, members and the head row.
_APPEND_SQL = (
    "WITH n AS (INSERT INTO log_nodes (level, idx, hash)"
    " SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])),"
    " l AS (INSERT INTO log_leaves (leaf_index, leaf, time) VALUES (%s, %s, %s)),"
    " m AS (INSERT INTO log_members (leaf_index, hashes) VALUES (%s, %s))"
    " UPDATE log_head SET size = %s, frontier = %s, time = %s,"
    " signed = CASE WHEN %s > signed_size THEN %s::bytea ELSE signed END,"
    " signed_size = greatest(signed_size, %s) WHERE id = 1"
)
CREATED, DUPLICATE, _CONFLICT, _QUOTA, _UNKNOWN = 0, 1, 2, 3, 4


@dataclass(slots=True)
class Deposit:
    tenant_id: str
    slot: bytes
    cell_id: bytes
    cell: bytes
    now: int
    future: asyncio.Future[DepositResult] = field(repr=False)

    def params(self) -> tuple[str, bytes, bytes, bytes, int]:
        return (self.tenant_id, self.slot, self.cell_id, self.cell, self.now)


Row = tuple[int, int | None, int | None]
Appended = tuple[BatchTree, _log.Append]


async def deposit_batch(
    conn: psycopg.AsyncConnection[Any], jobs: list[Deposit], cache: _log.LogCache
) -> tuple[list[Row], Appended | None, dict[int, int]]:
    """All ``jobs`` in one transaction, pipelined, with the batch's log leaf.

    Returns each job's (code, leaf index, batch position), the append (batch
    tree, log step) if the batch stored any cell, and the batch sizes of older
    batches that retries point into.
    """
    rows: list[Row] = []
    appended: Appended | None = None
    sizes: dict[int, int] = {}
    # One pipeline for the whole transaction, two round trips: BEGIN, the log
    # lock and the deposits in the first; the append and COMMIT in the second.
    # (``conn.transaction()`` would cost a round trip for BEGIN and one more
    # at the end.) Any failure rolls back before the connection is reused.
    try:
        async with conn.pipeline(), conn.cursor() as cur, conn.cursor() as lock:
            await conn.execute("BEGIN")
            await lock.execute(_LOCK_HEAD_SQL)
            await cur.executemany(_DEPOSIT_SQL, [job.params() for job in jobs], returning=True)
            head = await lock.fetchone()
            while True:
                row = await cur.fetchone()
                if row is None:
                    raise StoreUnavailable(
                        "the deposit function returned nothing; migrate the schema"
                    )
                rows.append(
                    (
                        int(row[0]),
                        None if row[1] is None else int(row[1]),
                        None if row[2] is None else int(row[2]),
                    )
                )
                if not cur.nextset():
                    break
            if head is None:
                raise StoreUnavailable("the relay log's head row is missing; restore a backup")
            state = _log.HeadState.from_row(int(head[0]), bytes(head[1]), int(head[2]))
            leaf_index = state.size
            if len(rows) != len(jobs):
                raise StoreUnavailable("the database answered a different number of deposits")
            created = sorted(
                (
                    (pos, job)
                    for job, (code, _, pos) in zip(jobs, rows, strict=True)
                    if code == CREATED and pos is not None
                ),
                key=lambda item: item[0],
            )
            older = sorted(
                {leaf for code, leaf, _ in rows if code == DUPLICATE and leaf is not None}
                - {leaf_index}
            )
            if older:
                await cur.execute(
                    "SELECT leaf_index, leaf FROM log_leaves WHERE leaf_index = ANY(%s)",
                    (older,),
                )
                for index, leaf in await cur.fetchall():
                    sizes[int(index)] = LogLeaf.decode(bytes(leaf)).batch_size
            if created:
                tree = BatchTree.of_entries(
                    [cell_entry(job.tenant_id, job.slot, job.cell_id) for _, job in created]
                )
                now = max(job.now for _, job in created)
                step = _log.append_batch(state, tree.root(), len(created), now)
                await _write_append(cur, step, tree, cache)
                appended = (tree, step)
            await conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")
        raise
    return rows, appended, sizes


async def _write_append(
    cur: psycopg.AsyncCursor[Any], step: _log.Append, tree: BatchTree, cache: _log.LogCache
) -> None:
    signed = cache.latest
    signed_size = cache.latest_size if signed is not None else -1
    await cur.execute(
        _APPEND_SQL,
        (
            [n[0] for n in step.nodes],
            [n[1] for n in step.nodes],
            [n[2] for n in step.nodes],
            step.leaf_index,
            step.leaf,
            step.time,
            step.leaf_index,
            b"".join(tree.members),
            step.state.size,
            step.state.frontier_bytes(),
            step.time,
            signed_size,
            signed,
            signed_size,
        ),
    )


def refusal(code: int) -> Exception:
    if code == _CONFLICT:
        return SlotConflict("a different cell already occupies that slot")
    if code == _QUOTA:
        return QuotaExceeded("the tenant's cell quota is used up; fetch and ack, then retry")
    if code == _UNKNOWN:
        return UnknownTenant("no such tenant is registered on this relay")
    return StoreUnavailable("the database answered an unknown deposit outcome; upgrade the relay")


def settle(jobs: list[Deposit], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)

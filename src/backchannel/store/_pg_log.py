"""The PostgreSQL store's log: proofs, heads and leaves read from the database.

A mixin of :class:`~backchannel.store.postgres.PostgresRelayStore`: each
method reads through the store's ``_run`` (a pooled connection, retried on a
serialization failure); the group commit that appends to the log lives in
:mod:`backchannel.store.postgres`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg

from backchannel.errors import StoreUnavailable
from backchannel.protocol import merkle
from backchannel.protocol.merkle import TreeHead
from backchannel.store import _common, _log, _log_proofs
from backchannel.store._calls import PostgresCalls
from backchannel.store.relay_store import BatchTree, CellProof, LoggedCell

T = TypeVar("T")


class PostgresLogReads(_log.LogSigning, PostgresCalls):
    """The log's read side; the store supplies ``_run`` and ``_cache``."""

    _cache: _log.LogCache | None

    # -- the log ----------------------------------------------------------------

    def _need_cache(self) -> _log.LogCache:
        if self._cache is None:
            raise _common.not_open()
        return self._cache

    async def fetch_logged(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, LoggedCell]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return {}

        async def work(conn: psycopg.AsyncConnection[Any]) -> dict[bytes, LoggedCell]:
            cur = await conn.execute(
                "SELECT slot, cell, leaf_index, batch_position FROM cells"
                " WHERE tenant_id = %s AND slot = ANY(%s) AND octet_length(cell) > 0",
                (tenant_id, wanted),
            )
            return {
                bytes(slot): LoggedCell(bytes(cell), leaf, pos)
                for slot, cell, leaf, pos in await cur.fetchall()
            }

        found = await self._run(work)
        return {slot: found[slot] for slot in wanted if slot in found}

    async def fetch_proved(
        self, tenant_id: str, slots: Sequence[bytes]
    ) -> tuple[bytes, dict[bytes, bytes], dict[bytes, CellProof]]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        cache = self._need_cache()

        async def work(
            conn: psycopg.AsyncConnection[Any],
        ) -> tuple[_log.HeadState, dict[bytes, bytes], dict[bytes, CellProof]]:
            # One snapshot: the head and the cells agree.
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                state = await _read_head(conn)
                rows: dict[bytes, tuple[bytes, int | None, int | None]] = {}
                spent: dict[bytes, bytes] = {}
                if wanted:
                    cur = await conn.execute(
                        "SELECT slot, cell, leaf_index, batch_position FROM cells"
                        " WHERE tenant_id = %s AND slot = ANY(%s)",
                        (tenant_id, wanted),
                    )
                    for slot, cell, leaf, pos in await cur.fetchall():
                        if cell:
                            rows[bytes(slot)] = (bytes(cell), leaf, pos)
                        else:
                            spent[bytes(slot)] = b""
                logged = {leaf for _, leaf, _ in rows.values() if leaf is not None}
                members = await _members(conn, sorted(logged)) if logged else {}
                nodes: dict[tuple[int, int], bytes] = {}
                needed = _log_proofs.plan_nodes(
                    state.size,
                    [
                        _log_proofs.inclusion_work(leaf, state.size)
                        for leaf in logged
                        if leaf < state.size
                    ],
                )
                if needed:
                    nodes = (await _nodes(conn, state.size, needed)).nodes
            found, proofs = _log.prove_cells(
                cache,
                state.size,
                rows,
                lambda coords: _log_proofs.DictReader(state.size, nodes),
                lambda leaf: members.get(leaf, []),
            )
            found = {**found, **spent}
            return state, {s: found[s] for s in wanted if s in found}, proofs

        state, cells, proofs = await self._run(work)
        return cache.compact_exact(state.head()), cells, proofs

    async def log_head(self) -> TreeHead:
        return (await self._run(_read_head)).head()

    async def _current_state(self) -> _log.HeadState:
        cache = self._need_cache()

        async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
            cur = await conn.execute(
                "SELECT size, frontier, time, signed_size, signed FROM log_head WHERE id = 1"
            )
            return await cur.fetchone()

        row = await self._run(work)
        if row is None:
            raise StoreUnavailable("the relay log's head row is missing; restore from a backup")
        if row[4] is not None:
            cache.remember(bytes(row[4]), int(row[3]))  # e.g. after a restart
        return _log.HeadState.from_row(int(row[0]), bytes(row[1]), int(row[2]))

    async def log_leaf(self, index: int) -> bytes:
        async def work(conn: psycopg.AsyncConnection[Any]) -> bytes | None:
            cur = await conn.execute("SELECT leaf FROM log_leaves WHERE leaf_index = %s", (index,))
            row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        if not 0 <= index < 1 << 63:
            raise LookupError("no such leaf in the log")
        leaf = await self._run(work)
        if leaf is None:
            raise LookupError("no such leaf in the log")
        return leaf

    async def batch_proof(self, leaf_index: int, position: int) -> list[bytes]:
        if not 0 <= leaf_index < 1 << 63:
            raise LookupError("no such batch in the log")
        members = (await self._run(lambda conn: _members(conn, [leaf_index])))[leaf_index]
        if not 0 <= position < len(members):
            raise LookupError("no such batch member in the log (expired or never stored)")
        return BatchTree(members).proof(position)

    async def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[bytes]:
            _log_proofs.check_leaf(leaf_index, tree_size, (await _read_head(conn)).size)
            wanted = _log_proofs.plan_nodes(
                tree_size, [_log_proofs.inclusion_work(leaf_index, tree_size)]
            )
            reader = await _nodes(conn, tree_size, wanted)
            return merkle.inclusion_proof(reader, leaf_index, tree_size)

        return await self._run(work)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[bytes]:
            _log_proofs.check_sizes(old_size, new_size, (await _read_head(conn)).size)
            wanted = _log_proofs.plan_nodes(
                new_size, [_log_proofs.consistency_work(old_size, new_size)]
            )
            reader = await _nodes(conn, new_size, wanted)
            return merkle.consistency_proof(reader, old_size, new_size)

        return await self._run(work)

    async def cell_proofs(
        self, positions: Sequence[tuple[int, int]], tree_size: int
    ) -> list[CellProof]:
        cached = _log.from_memory(self._need_cache(), positions, tree_size)
        if cached is not None:
            return cached

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[CellProof]:
            current = (await _read_head(conn)).size
            wanted = _log_proofs.plan_cell_proofs(positions, tree_size, current)
            reader = await _nodes(conn, tree_size, wanted)
            self._need_cache().add_nodes(reader.nodes)
            members = await _members(conn, sorted({leaf for leaf, _ in positions}))
            return _log_proofs.cell_proofs(positions, tree_size, reader, lambda i: members[i])

        return await self._run(work)

    def _log_cache(self) -> _log.LogCache:
        return self._need_cache()


async def _read_head(conn: psycopg.AsyncConnection[Any]) -> _log.HeadState:
    cur = await conn.execute("SELECT size, frontier, time FROM log_head WHERE id = 1")
    row = await cur.fetchone()
    if row is None:
        raise StoreUnavailable("the relay log's head row is missing; restore from a backup")
    return _log.HeadState.from_row(int(row[0]), bytes(row[1]), int(row[2]))


async def _nodes(
    conn: psycopg.AsyncConnection[Any], size: int, wanted: set[tuple[int, int]]
) -> _log_proofs.DictReader:
    coords = sorted(wanted)
    found: dict[tuple[int, int], bytes] = {}
    if coords:
        cur = await conn.execute(
            "SELECT n.level, n.idx, n.hash FROM log_nodes n"
            " JOIN unnest(%s::smallint[], %s::bigint[]) AS w(level, idx)"
            " ON n.level = w.level AND n.idx = w.idx",
            ([c[0] for c in coords], [c[1] for c in coords]),
        )
        found = {(int(lv), int(ix)): bytes(h) for lv, ix, h in await cur.fetchall()}
    return _log_proofs.DictReader(size, found)


async def _members(conn: psycopg.AsyncConnection[Any], leaves: list[int]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {leaf: [] for leaf in leaves}
    cur = await conn.execute(
        "SELECT leaf_index, hashes FROM log_members WHERE leaf_index = ANY(%s)", (leaves,)
    )
    for leaf, hashes in await cur.fetchall():
        out[int(leaf)] = _log_proofs.split_hashes(bytes(hashes))
    return out

"""The SQLite store's log: proofs, heads and leaves read from the database.

A mixin of :class:`~backchannel.store.sqlite.SQLiteRelayStore`: every method
here reads in one snapshot (``_read``); the writer that appends to the log
lives in :mod:`backchannel.store._sqlite_writer`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TypeVar

from backchannel.crypto.primitives import HASH_LEN
from backchannel.errors import StoreUnavailable
from backchannel.protocol import merkle
from backchannel.protocol.merkle import TreeHead
from backchannel.store import _common, _log, _log_proofs
from backchannel.store._calls import SQLiteCalls
from backchannel.store.relay_store import BatchTree, CellProof, LoggedCell

T = TypeVar("T")

#: Most slots in one SQL ``IN (...)`` list.
_IN_CHUNK = 500


class SQLiteLogReads(_log.LogSigning, SQLiteCalls):
    """The log's read side, and the cosigned checkpoint every process serves; the
    store supplies ``_read``, ``_write``, ``_logging`` and ``_cache``."""

    _logging: bool
    _cache: _log.LogCache | None

    async def keep_checkpoint(self, size: int, cosignatures: int, note: bytes) -> None:
        _common.check_checkpoint(size, cosignatures, note)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO log_checkpoint (id, size, cosignatures, note) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET size = excluded.size,"
                " cosignatures = excluded.cosignatures, note = excluded.note"
                " WHERE excluded.size > log_checkpoint.size OR (excluded.size = log_checkpoint.size"
                " AND excluded.cosignatures >= log_checkpoint.cosignatures)",
                (size, cosignatures, note),
            )

        await self._write(work, single=True)

    async def kept_checkpoint(self) -> bytes | None:
        def work(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT note FROM log_checkpoint WHERE id = 1").fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(work)

    # -- the log ----------------------------------------------------------------

    def _need_log(self) -> _log.LogCache:
        if not self._logging or self._cache is None:
            raise StoreUnavailable("this relay store keeps no log")
        return self._cache

    async def fetch_logged(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, LoggedCell]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return {}

        def work(conn: sqlite3.Connection) -> dict[bytes, LoggedCell]:
            found: dict[bytes, LoggedCell] = {}
            conn.execute("BEGIN")
            try:
                for chunk in _chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        "SELECT slot, cell, leaf_index, batch_position FROM cells"  # noqa: S608
                        f" WHERE tenant_id = ? AND slot IN ({marks}) AND length(cell) > 0",
                        (tenant_id, *chunk),
                    )
                    for slot, cell, leaf, pos in rows:
                        found[bytes(slot)] = LoggedCell(bytes(cell), leaf, pos)
            finally:
                conn.execute("COMMIT")
            return {slot: found[slot] for slot in wanted if slot in found}

        return await self._read(work)

    async def fetch_proved(
        self, tenant_id: str, slots: Sequence[bytes]
    ) -> tuple[bytes, dict[bytes, bytes], dict[bytes, CellProof]]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        cache = self._need_log()

        def work(
            conn: sqlite3.Connection,
        ) -> tuple[_log.HeadState, dict[bytes, bytes], dict[bytes, CellProof]]:
            rows: dict[bytes, tuple[bytes, int | None, int | None]] = {}
            spent: dict[bytes, bytes] = {}
            conn.execute("BEGIN")  # one snapshot: the head and the cells agree
            try:
                state = _read_head(conn)
                for chunk in _chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    for slot, cell, leaf, pos in conn.execute(
                        "SELECT slot, cell, leaf_index, batch_position FROM cells"  # noqa: S608
                        f" WHERE tenant_id = ? AND slot IN ({marks})",
                        (tenant_id, *chunk),
                    ):
                        if cell:
                            rows[bytes(slot)] = (bytes(cell), leaf, pos)
                        else:
                            spent[bytes(slot)] = b""
                found, proofs = _log.prove_cells(
                    cache,
                    state.size,
                    rows,
                    lambda coords: _nodes(conn, state.size, coords),
                    lambda leaf: _members(conn, leaf),
                )
            finally:
                conn.execute("COMMIT")
            found = {**found, **spent}
            return state, {s: found[s] for s in wanted if s in found}, proofs

        state, cells, proofs = await self._read(work)
        return cache.compact_exact(state.head()), cells, proofs

    async def log_head(self) -> TreeHead:
        self._need_log()
        return (await self._read(_read_head)).head()

    async def _signed_state(self) -> tuple[_log.HeadState, int, bytes | None]:
        def work(conn: sqlite3.Connection) -> tuple[_log.HeadState, int, bytes | None]:
            row = conn.execute(
                "SELECT size, frontier, time, signed_size, signed FROM log_head WHERE id = 1"
            ).fetchone()
            state = _log.HeadState.from_row(int(row[0]), bytes(row[1]), int(row[2]))
            return state, int(row[3]), None if row[4] is None else bytes(row[4])

        return await self._read(work)

    async def _current_state(self) -> _log.HeadState:
        cache = self._need_log()
        state, signed_size, stored = await self._signed_state()
        if stored is not None:
            cache.remember(stored, signed_size)  # e.g. after a restart
        return state

    async def log_leaf(self, index: int) -> bytes:
        self._need_log()

        def work(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(
                "SELECT leaf FROM log_leaves WHERE leaf_index = ?", (index,)
            ).fetchone()
            if row is None:
                raise LookupError("no such leaf in the log")
            return bytes(row[0])

        return await self._read(work)

    async def batch_proof(self, leaf_index: int, position: int) -> list[bytes]:
        self._need_log()
        members = await self._read(lambda conn: _members(conn, leaf_index))
        if not 0 <= position < len(members):
            raise LookupError("no such batch member in the log (expired or never stored)")
        return BatchTree(members).proof(position)

    async def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        self._need_log()

        def work(conn: sqlite3.Connection) -> list[bytes]:
            _log_proofs.check_leaf(leaf_index, tree_size, _read_head(conn).size)
            wanted = _log_proofs.plan_nodes(
                tree_size, [_log_proofs.inclusion_work(leaf_index, tree_size)]
            )
            return merkle.inclusion_proof(_nodes(conn, tree_size, wanted), leaf_index, tree_size)

        return await self._read(work)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        self._need_log()

        def work(conn: sqlite3.Connection) -> list[bytes]:
            _log_proofs.check_sizes(old_size, new_size, _read_head(conn).size)
            wanted = _log_proofs.plan_nodes(
                new_size, [_log_proofs.consistency_work(old_size, new_size)]
            )
            return merkle.consistency_proof(_nodes(conn, new_size, wanted), old_size, new_size)

        return await self._read(work)

    async def cell_proofs(
        self, positions: Sequence[tuple[int, int]], tree_size: int
    ) -> list[CellProof]:
        cache = self._need_log()
        cached = _log.from_memory(cache, positions, tree_size)
        if cached is not None:
            return cached

        def work(conn: sqlite3.Connection) -> list[CellProof]:
            current = _read_head(conn).size
            wanted = _log_proofs.plan_cell_proofs(positions, tree_size, current)
            reader = _nodes(conn, tree_size, wanted)
            cache.add_nodes(reader.nodes)  # immutable: later receipts need no read
            return _log_proofs.cell_proofs(
                positions, tree_size, reader, lambda i: _members(conn, i)
            )

        return await self._read(work)

    def _log_cache(self) -> _log.LogCache:
        return self._need_log()


def _read_head(conn: sqlite3.Connection) -> _log.HeadState:
    row = conn.execute("SELECT size, frontier, time FROM log_head WHERE id = 1").fetchone()
    if row is None:
        raise StoreUnavailable("the relay log's head row is missing; restore from a backup")
    return _log.HeadState.from_row(int(row[0]), bytes(row[1]), int(row[2]))


def _nodes(
    conn: sqlite3.Connection, size: int, wanted: set[tuple[int, int]]
) -> _log_proofs.DictReader:
    """Fetch the planned nodes: one primary-key lookup per leaf row, O(log n) in all.

    Node ``(level, idx)`` is stored in the row of the leaf that completed it,
    ``((idx + 1) << level) - 1``, at offset ``32 * level`` of its ``nodes``.
    """
    rows: dict[int, list[tuple[int, int]]] = {}
    for level, idx in wanted:
        rows.setdefault(((idx + 1) << level) - 1, []).append((level, idx))
    found: dict[tuple[int, int], bytes] = {}
    for leaf_index, coords in rows.items():
        row = conn.execute(
            "SELECT nodes FROM log_leaves WHERE leaf_index = ?", (leaf_index,)
        ).fetchone()
        if row is None:
            continue
        nodes = bytes(row[0])
        for level, idx in coords:
            h = nodes[HASH_LEN * level : HASH_LEN * (level + 1)]
            if len(h) == HASH_LEN:
                found[(level, idx)] = h
    return _log_proofs.DictReader(size, found)


def _members(conn: sqlite3.Connection, leaf_index: int) -> list[bytes]:
    row = conn.execute(
        "SELECT members FROM log_leaves WHERE leaf_index = ?", (leaf_index,)
    ).fetchone()
    return [] if row is None or row[0] is None else _log_proofs.split_hashes(bytes(row[0]))


def _chunks(slots: list[bytes]) -> list[list[bytes]]:
    return [slots[i : i + _IN_CHUNK] for i in range(0, len(slots), _IN_CHUNK)]

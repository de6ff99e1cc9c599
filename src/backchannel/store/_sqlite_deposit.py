"""Deposits on SQLite: one cell, or a batch's cells as one job of the group commit.

Used by :mod:`backchannel.store.sqlite`, which supplies ``_write``, the batch
being committed (``_batch``), the cell size and whether it keeps the log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from backchannel.errors import ConfigError, QuotaExceeded, SlotConflict, UnknownTenant
from backchannel.protocol.misbehaviour import cell_entry
from backchannel.store import _common
from backchannel.store import _sqlite_jobs as _jobs
from backchannel.store._calls import SQLiteCalls
from backchannel.store.relay_store import DepositResult, leaf_hash


class SQLiteDeposits(SQLiteCalls):
    """The deposit calls of the store."""

    _batch: _jobs.Batch | None
    _cell_size: int
    _logging: bool

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        cell_id, member = self._checked(tenant_id, slot, cell)

        def work(conn: sqlite3.Connection) -> DepositResult | _jobs.InBatch:
            return self._deposit_in(conn, tenant_id, slot, cell, cell_id, member, now)

        # One INSERT at most (its trigger included, atomic as a statement):
        # no savepoint needed around it.
        result = await self._write(work, single=True)
        return result.result() if isinstance(result, _jobs.InBatch) else result

    async def deposit_many(
        self, cells: Sequence[tuple[str, bytes, bytes]], now: int
    ) -> list[DepositResult | BaseException]:
        """Each cell as :meth:`deposit` stores it, all of them in one job of the
        next group commit: a batch's cells cost one hand-over to the writer
        thread, not one each."""
        out: list[DepositResult | BaseException | None] = [None] * len(cells)
        todo: list[tuple[int, str, bytes, bytes, bytes, bytes]] = []
        for i, (tenant_id, slot, cell) in enumerate(cells):
            try:
                cell_id, member = self._checked(tenant_id, slot, cell)
            except ConfigError as exc:
                out[i] = exc
            else:
                todo.append((i, tenant_id, slot, cell, cell_id, member))
        refusals = (UnknownTenant, SlotConflict, QuotaExceeded)

        def work(conn: sqlite3.Connection) -> list[DepositResult | _jobs.InBatch | Exception]:
            batch = self._batch
            members = len(batch.members) if batch is not None else 0
            done: list[DepositResult | _jobs.InBatch | Exception] = []
            try:
                for _, tenant_id, slot, cell, cell_id, member in todo:
                    try:
                        done.append(
                            self._deposit_in(conn, tenant_id, slot, cell, cell_id, member, now)
                        )
                    except refusals as exc:  # nothing written for this cell
                        done.append(exc)
            except BaseException:
                # The job's savepoint undoes its rows; its leaves go with them.
                if batch is not None:
                    del batch.members[members:]
                raise
            return done

        if todo:
            try:
                results = await self._write(work)
            except Exception as exc:  # the store failed: every cell of the job with it
                results = [exc] * len(todo)
            for (i, *_), r in zip(todo, results, strict=True):
                out[i] = r.result() if isinstance(r, _jobs.InBatch) else r
        done = [r for r in out if r is not None]
        assert len(done) == len(cells)  # every cell has its result or its error
        return done

    def _checked(self, tenant_id: str, slot: bytes, cell: bytes) -> tuple[bytes, bytes]:
        """A cell's id and its leaf in its batch tree, once its ids and size are checked.

        The leaf is hashed here, on the caller's side, rather than inside the group commit.
        """
        _common.check_tenant_id(tenant_id)
        _common.check_slot(slot)
        _common.check_cell(cell, self._cell_size)
        cell_id = _common.cell_id_of(cell)
        member = leaf_hash(cell_entry(tenant_id, slot, cell_id)) if self._logging else b""
        return cell_id, member

    def _deposit_in(
        self,
        conn: sqlite3.Connection,
        tenant_id: str,
        slot: bytes,
        cell: bytes,
        cell_id: bytes,
        member: bytes,
        now: int,
    ) -> DepositResult | _jobs.InBatch:
        """One cell's deposit inside the group commit: one read, one INSERT at most."""
        # One statement reads the tenant's quota and whatever holds the slot.
        row = conn.execute(
            "SELECT t.quota_cells, t.cell_count, c.cell_id, c.leaf_index, c.batch_position"
            " FROM tenants AS t LEFT JOIN cells AS c ON c.tenant_id = t.tenant_id"
            " AND c.slot = ? WHERE t.tenant_id = ?",
            (slot, tenant_id),
        ).fetchone()
        if row is None:
            raise UnknownTenant("no such tenant is registered on this relay")
        if row[2] is not None:
            if bytes(row[2]) == cell_id:
                return _jobs.retry_result(conn, cell_id, row[3], row[4], self._batch)
            raise SlotConflict("a different cell already occupies that slot")
        if row[1] >= row[0]:
            raise QuotaExceeded("the tenant's cell quota is used up; fetch and ack, then retry")
        batch = self._batch
        if batch is None:
            conn.execute(
                "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (tenant_id, slot, cell_id, cell, now),
            )
            return DepositResult(cell_id, created=True)
        position = len(batch.members)
        conn.execute(
            "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at,"
            " leaf_index, batch_position) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tenant_id, slot, cell_id, cell, now, batch.leaf_index, position),
        )
        batch.members.append(member)
        batch.now = max(batch.now, now)
        return _jobs.InBatch(batch, cell_id, True, position)

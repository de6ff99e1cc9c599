"""The public intake on SQLite (:mod:`backchannel.store._intake`).

Writes join the store's group commit (one ``fsync`` for many); a request's
number is taken from its tenant's row in the same transaction, so numbers
commit in order and a reader that remembers the last one it saw misses none.
The cap's count (``queued``: requests above the mission's fetched mark) is
changed only in the writer's transactions, which SQLite runs one at a time.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from typing import TypeVar

from backchannel.errors import IntakeClosed, QuotaExceeded, UnknownTenant
from backchannel.store import _common
from backchannel.store import _intake as _in
from backchannel.store._calls import SQLiteCalls

T = TypeVar("T")


class SQLiteIntake(SQLiteCalls):
    """The intake's calls; the store supplies ``_write`` and ``_read``."""

    async def intake_set_open(self, tenant_id: str, is_open: bool, now: int) -> None:
        _common.check_tenant_id(tenant_id)

        def work(conn: sqlite3.Connection) -> None:
            if (
                conn.execute("SELECT 1 FROM tenants WHERE tenant_id = ?", (tenant_id,)).fetchone()
                is None
            ):
                raise UnknownTenant("no such tenant is registered on this relay")
            conn.execute(
                "INSERT INTO intake_tenants (tenant_id, open, changed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET open = excluded.open,"
                " changed_at = excluded.changed_at",
                (tenant_id, int(is_open), now),
            )

        await self._write(work)

    async def intake_is_open(self, tenant_id: str) -> bool:
        _common.check_tenant_id(tenant_id)

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT open FROM intake_tenants WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            return row is not None and bool(row[0])

        return await self._read(work)

    async def intake_put(self, tenant_id: str, cell: bytes, cap: int, now: int) -> _in.IntakeStored:
        _common.check_tenant_id(tenant_id)
        _in.check_request(cell)
        _in.check_cap(cap)
        digest = hashlib.sha256(cell).digest()

        def work(conn: sqlite3.Connection) -> _in.IntakeStored:
            row = conn.execute(
                "SELECT open, queued FROM intake_tenants WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            if row is None or not row[0]:
                raise IntakeClosed("this mission does not take requests here")
            seen = conn.execute(
                "SELECT seq FROM intake_requests WHERE tenant_id = ? AND digest = ?",
                (tenant_id, digest),
            ).fetchone()
            if seen is not None:
                return _in.IntakeStored(int(seen[0]), created=False)
            if int(row[1]) >= cap:
                raise QuotaExceeded("this mission's intake is full; try again later")
            seq = conn.execute(
                "UPDATE intake_tenants SET next_seq = next_seq + 1, queued = queued + 1"
                " WHERE tenant_id = ? RETURNING next_seq - 1",
                (tenant_id,),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO intake_requests (tenant_id, seq, digest, cell, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (tenant_id, seq, digest, cell, now),
            )
            return _in.IntakeStored(int(seq), created=True)

        return await self._write(work)

    async def intake_fetch(self, tenant_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        _common.check_tenant_id(tenant_id)
        _in.check_fetch(after, limit)

        def work(conn: sqlite3.Connection) -> tuple[list[tuple[int, bytes]], bool]:
            rows = conn.execute(
                "SELECT seq, cell FROM intake_requests WHERE tenant_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (tenant_id, after, limit),
            ).fetchall()
            state = conn.execute(
                "SELECT fetched_seq, next_seq FROM intake_tenants WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
            found = [(int(seq), bytes(cell)) for seq, cell in rows]
            return found, _in.raised_mark(state, after) is not None

        def passed(conn: sqlite3.Connection) -> None:
            # Decided again in the writer's transaction: the read above only
            # spares a write to the fetches that pass nothing new.
            state = conn.execute(
                "SELECT fetched_seq, next_seq FROM intake_tenants WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
            raised = _in.raised_mark(state, after)
            if raised is None:
                return
            fetched, mark = raised
            conn.execute(
                "UPDATE intake_tenants SET fetched_seq = ?, queued = queued - ("
                "SELECT count(*) FROM intake_requests WHERE tenant_id = ? AND seq > ? AND seq <= ?)"
                " WHERE tenant_id = ?",
                (mark, tenant_id, fetched, mark, tenant_id),
            )

        rows, raises = await self._read(work)
        if raises:
            await self._write(passed, single=True)
        return rows

    async def intake_expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        cutoff = now - retention_seconds

        removed = 0

        def work(conn: sqlite3.Connection) -> bool:
            # In steps, as the cells expire: a large backlog never holds the
            # writer, and deposits go between the steps. Only requests the
            # mission has not fetched past count against the cap.
            nonlocal removed
            rows = conn.execute(
                "SELECT r.tenant_id, r.seq, t.fetched_seq IS NOT NULL AND r.seq > t.fetched_seq"
                " FROM intake_requests r LEFT JOIN intake_tenants t ON t.tenant_id = r.tenant_id"
                " WHERE r.received_at <= ? ORDER BY r.received_at LIMIT ?",
                (cutoff, _common.EXPIRE_STEP_ROWS),
            ).fetchall()
            counted = Counter(tenant_id for tenant_id, _, unfetched in rows if unfetched)
            for tenant_id, count in counted.items():
                conn.execute(
                    "UPDATE intake_tenants SET queued = queued - ? WHERE tenant_id = ?",
                    (count, tenant_id),
                )
            conn.executemany(
                "DELETE FROM intake_requests WHERE tenant_id = ? AND seq = ?",
                [(tenant_id, seq) for tenant_id, seq, _ in rows],
            )
            removed += len(rows)
            return len(rows) == _common.EXPIRE_STEP_ROWS

        await _common.in_steps(lambda: self._write(work))
        return removed

"""The public intake on PostgreSQL (:mod:`backchannel.store._intake`).

A request's number is taken under its tenant's row lock, held until the
transaction commits: requests of one tenant are numbered and committed in the
same order, so a reader that remembers the last number it saw misses none,
across any number of relay processes. (The pool's connections are in
autocommit: each call that needs the lock opens its own transaction.)

The cap's count (``queued``: requests above the mission's fetched mark) is
checked and changed under that same lock by a submission and by a fetch that
raises the mark; expiry changes it in the statement that deletes, comparing
each deleted number with the mark as it is when that statement takes the row.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

import psycopg

from backchannel.errors import IntakeClosed, QuotaExceeded, UnknownTenant
from backchannel.store import _common
from backchannel.store import _intake as _in
from backchannel.store._calls import PostgresCalls

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]


class PostgresIntake(PostgresCalls):
    """The intake's calls; the store supplies ``_run``."""

    async def intake_set_open(self, tenant_id: str, is_open: bool, now: int) -> None:
        _common.check_tenant_id(tenant_id)

        async def work(conn: Conn) -> None:
            cur = await conn.execute("SELECT 1 FROM tenants WHERE tenant_id = %s", (tenant_id,))
            if await cur.fetchone() is None:
                raise UnknownTenant("no such tenant is registered on this relay")
            await conn.execute(
                "INSERT INTO intake_tenants (tenant_id, open, changed_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id) DO UPDATE SET open = excluded.open,"
                " changed_at = excluded.changed_at",
                (tenant_id, is_open, now),
            )

        await self._run(work)

    async def intake_is_open(self, tenant_id: str) -> bool:
        _common.check_tenant_id(tenant_id)

        async def work(conn: Conn) -> bool:
            cur = await conn.execute(
                "SELECT open FROM intake_tenants WHERE tenant_id = %s", (tenant_id,)
            )
            row = await cur.fetchone()
            return row is not None and bool(row[0])

        return await self._run(work)

    async def intake_put(self, tenant_id: str, cell: bytes, cap: int, now: int) -> _in.IntakeStored:
        _common.check_tenant_id(tenant_id)
        _in.check_request(cell)
        _in.check_cap(cap)
        digest = hashlib.sha256(cell).digest()

        async def work(conn: Conn) -> _in.IntakeStored:
            async with conn.transaction():
                return await locked(conn)

        async def locked(conn: Conn) -> _in.IntakeStored:
            # The row lock orders this tenant's requests and its count (see the
            # module's note); later statements see what committed before it.
            cur = await conn.execute(
                "SELECT open, queued FROM intake_tenants WHERE tenant_id = %s FOR UPDATE",
                (tenant_id,),
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                raise IntakeClosed("this mission does not take requests here")
            cur = await conn.execute(
                "SELECT seq FROM intake_requests WHERE tenant_id = %s AND digest = %s",
                (tenant_id, digest),
            )
            seen = await cur.fetchone()
            if seen is not None:
                return _in.IntakeStored(int(seen[0]), created=False)
            if int(row[1]) >= cap:
                raise QuotaExceeded("this mission's intake is full; try again later")
            cur = await conn.execute(
                "UPDATE intake_tenants SET next_seq = next_seq + 1, queued = queued + 1"
                " WHERE tenant_id = %s RETURNING next_seq - 1",
                (tenant_id,),
            )
            taken = await cur.fetchone()
            assert taken is not None
            await conn.execute(
                "INSERT INTO intake_requests (tenant_id, seq, digest, cell, received_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (tenant_id, taken[0], digest, cell, now),
            )
            return _in.IntakeStored(int(taken[0]), created=True)

        return await self._run(work)

    async def intake_fetch(self, tenant_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        _common.check_tenant_id(tenant_id)
        _in.check_fetch(after, limit)

        async def work(conn: Conn) -> list[tuple[int, bytes]]:
            cur = await conn.execute(
                "SELECT seq, cell FROM intake_requests WHERE tenant_id = %s AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (tenant_id, after, limit),
            )
            rows = [(int(seq), bytes(cell)) for seq, cell in await cur.fetchall()]
            cur = await conn.execute(
                "SELECT fetched_seq, next_seq FROM intake_tenants WHERE tenant_id = %s",
                (tenant_id,),
            )
            state = await cur.fetchone()
            # Most fetches pass nothing new and take no lock.
            if _in.raised_mark(state, after) is not None:
                async with conn.transaction():
                    await passed(conn)
            return rows

        async def passed(conn: Conn) -> None:
            # Decided again under the row lock: a submission or another fetch
            # may have committed since the read above.
            cur = await conn.execute(
                "SELECT fetched_seq, next_seq FROM intake_tenants WHERE tenant_id = %s FOR UPDATE",
                (tenant_id,),
            )
            raised = _in.raised_mark(await cur.fetchone(), after)
            if raised is None:
                return
            fetched, mark = raised
            # A new statement, so a new snapshot: it sees every request stored
            # (or expired) before the lock was granted.
            await conn.execute(
                "UPDATE intake_tenants SET fetched_seq = %s, queued = queued - ("
                "SELECT count(*) FROM intake_requests WHERE tenant_id = %s"
                " AND seq > %s AND seq <= %s) WHERE tenant_id = %s",
                (mark, tenant_id, fetched, mark, tenant_id),
            )

        return await self._run(work)

    async def intake_expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        cutoff = now - retention_seconds

        removed = 0

        async def work(conn: Conn) -> bool:
            # In steps, as the cells expire, each one statement. Only the deleted
            # requests above the fetched mark counted. The mark is read from the
            # row as the UPDATE locks it (re-read if a fetch raised it
            # meanwhile), not from the statement's snapshot.
            nonlocal removed
            cur = await conn.execute(
                "WITH due AS (SELECT tenant_id, seq FROM intake_requests"
                " WHERE received_at <= %s ORDER BY received_at LIMIT %s),"
                " gone AS (DELETE FROM intake_requests r USING due"
                " WHERE r.tenant_id = due.tenant_id AND r.seq = due.seq"
                " RETURNING r.tenant_id, r.seq),"
                " counted AS (SELECT tenant_id, array_agg(seq) AS seqs"
                " FROM gone GROUP BY tenant_id),"
                " freed AS (UPDATE intake_tenants t SET queued = t.queued -"
                " (SELECT count(*) FROM unnest(c.seqs) AS s (seq) WHERE s.seq > t.fetched_seq)"
                " FROM counted c WHERE t.tenant_id = c.tenant_id)"
                " SELECT count(*) FROM gone",
                (cutoff, _common.EXPIRE_STEP_ROWS),
            )
            row = await cur.fetchone()
            count = int(row[0]) if row is not None else 0
            removed += count
            return count == _common.EXPIRE_STEP_ROWS

        await _common.in_steps(lambda: self._run(work))
        return removed

"""Tenants on PostgreSQL: registration, the record a relay reads, credential rotation.

Used by :mod:`backchannel.store.postgres`, which supplies ``_run``. A rotation
reads the tenant's row ``FOR UPDATE``: two relay processes taking rotations
of one tenant at once take them one after the other.
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg

from backchannel.errors import TenantExists, UnknownTenant
from backchannel.store import _common
from backchannel.store._calls import PostgresCalls
from backchannel.store.relay_store import TenantRecord

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]


class PostgresTenants(PostgresCalls):
    """The tenant calls of the store."""

    async def create_tenant(
        self, tenant_id: str, credential_hash: bytes, quota_cells: int, now: int
    ) -> TenantRecord:
        _common.check_new_tenant(tenant_id, credential_hash, quota_cells)

        async def work(conn: Conn) -> bool:
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

        async def work(conn: Conn) -> TenantRecord | None:
            cur = await conn.execute(
                "SELECT credential_hash, quota_cells, created_at FROM tenants WHERE tenant_id = %s",
                (tenant_id,),
            )
            return _common.tenant_record(tenant_id, await cur.fetchone())

        return await self._run(work)

    async def rotate_credential(
        self, tenant_id: str, credential_hash: bytes, version: int, seq: int, roster_hash: bytes
    ) -> str:
        _common.check_rotation(tenant_id, credential_hash, version, seq, roster_hash)

        async def work(conn: Conn) -> str:
            # One transaction: the row lock holds from the check to the write
            # (the pool's connections commit each statement on its own), so a
            # rotation another process takes meanwhile waits and is checked
            # against this one: an older one can never overwrite a newer.
            async with conn.transaction():
                return await locked(conn)

        async def locked(conn: Conn) -> str:
            cur = await conn.execute(
                "SELECT credential_hash, rotation_version, rotation_seq, rotation_roster"
                " FROM tenants WHERE tenant_id = %s FOR UPDATE",
                (tenant_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise UnknownTenant("no such tenant is registered on this relay")
            in_force = _common.rotation_in_force(row)
            outcome = _common.rotation_outcome(in_force, credential_hash, version, seq, roster_hash)
            if outcome == _common.ROTATED:
                await conn.execute(
                    "UPDATE tenants SET credential_hash = %s, rotation_version = %s,"
                    " rotation_seq = %s, rotation_roster = %s WHERE tenant_id = %s",
                    (credential_hash, version, seq, roster_hash, tenant_id),
                )
            return outcome

        return await self._run(work)

"""Tenants on SQLite: registration, the record a relay reads, credential rotation.

Used by :mod:`backchannel.store.sqlite`, which supplies ``_write`` and ``_read``.
"""

from __future__ import annotations

import sqlite3
from typing import TypeVar

from backchannel.errors import TenantExists, UnknownTenant
from backchannel.store import _common
from backchannel.store._calls import SQLiteCalls
from backchannel.store.relay_store import TenantRecord

T = TypeVar("T")


class SQLiteTenants(SQLiteCalls):
    """The tenant calls of the store."""

    async def create_tenant(
        self, tenant_id: str, credential_hash: bytes, quota_cells: int, now: int
    ) -> TenantRecord:
        _common.check_new_tenant(tenant_id, credential_hash, quota_cells)

        def work(conn: sqlite3.Connection) -> TenantRecord:
            taken = conn.execute("SELECT 1 FROM tenants WHERE tenant_id = ?", (tenant_id,))
            if taken.fetchone() is not None:
                raise TenantExists("that tenant id is already registered; choose another")
            conn.execute(
                "INSERT INTO tenants (tenant_id, credential_hash, quota_cells, created_at)"
                " VALUES (?, ?, ?, ?)",
                (tenant_id, credential_hash, quota_cells, now),
            )
            return TenantRecord(tenant_id, credential_hash, quota_cells, now)

        return await self._write(work)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        _common.check_tenant_id(tenant_id)

        def work(conn: sqlite3.Connection) -> TenantRecord | None:
            row = conn.execute(
                "SELECT credential_hash, quota_cells, created_at FROM tenants WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
            return _common.tenant_record(tenant_id, row)

        return await self._read(work)

    async def rotate_credential(
        self, tenant_id: str, credential_hash: bytes, version: int, seq: int, roster_hash: bytes
    ) -> str:
        _common.check_rotation(tenant_id, credential_hash, version, seq, roster_hash)

        def work(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT credential_hash, rotation_version, rotation_seq, rotation_roster"
                " FROM tenants WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
            if row is None:
                raise UnknownTenant("no such tenant is registered on this relay")
            in_force = _common.rotation_in_force(row)
            outcome = _common.rotation_outcome(in_force, credential_hash, version, seq, roster_hash)
            if outcome == _common.ROTATED:
                conn.execute(
                    "UPDATE tenants SET credential_hash = ?, rotation_version = ?,"
                    " rotation_seq = ?, rotation_roster = ? WHERE tenant_id = ?",
                    (credential_hash, version, seq, roster_hash, tenant_id),
                )
            return outcome

        return await self._write(work)
